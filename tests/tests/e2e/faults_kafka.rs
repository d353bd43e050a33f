//! A Kafka broker SIGKILLed while ingest publishes, then restarted: once the import is rerun, the
//! topic holds every event the files define exactly once, and the projections serve all of it.
//!
//! The interrupted run either gives up (a short `--timeout`) or rides out the restart (its
//! idempotent producer resends); a test for each. The broker is a private one
//! (`taxiway_tests::engines`), so the other suites keep theirs; the projections are on the
//! shared Cassandra.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ingest::config::ImportConfig;
use projector::config::Command;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use schemas::Event;
use serde_json::Value;
use taxiway_tests::engines::{Engine, Engines};
use taxiway_tests::fixtures::{self, Release, id_of, version_of};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::topic::{Record, read_all};
use taxiway_tests::{Deadline, projection};
use tokio_util::sync::CancellationToken;

/// Imported in this order, in one run: the kill lands while the first ones publish, with the
/// rest still to come.
const FILES: [&str; 5] = taxiway_tests::fixtures::SHIPPED_RELEASES;

/// How the interrupted import run is made to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstRun {
    /// A short `--timeout`, and the broker kept down until the run gave up: it fails, and
    /// the rerun publishes what the topic lacks (the checkpoint rebuilt from the topic).
    GivesUp,
    /// A `--timeout` longer than the restart, which comes at once: the run's idempotent
    /// producer resends what the dead broker did not acknowledge, and the run completes.
    RidesOut,
}

impl FirstRun {
    fn timeout(self) -> Duration {
        match self {
            FirstRun::GivesUp => Duration::from_secs(5),
            FirstRun::RidesOut => Duration::from_secs(150),
        }
    }
}

fn paths() -> Vec<PathBuf> {
    FILES.iter().map(|f| fixtures::path(f)).collect()
}

fn import_settings(topics: &Topics, brokers: &str, timeout: Duration) -> ingest::Settings {
    let mut settings = topics.settings(ImportConfig::new(paths()));
    settings.kafka.brokers = brokers.to_owned();
    settings.kafka.timeout = timeout;
    settings
}

/// Messages on `topic` now (sum of the partitions' high watermarks); 0 while it does not exist.
fn messages_on(consumer: &BaseConsumer, topic: &str) -> i64 {
    let timeout = Duration::from_secs(2);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
        return 0;
    };
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter_map(|p| consumer.fetch_watermarks(topic, p.id(), timeout).ok())
        .map(|(_, high)| high)
        .sum()
}

/// Waits until `topic` on `brokers` holds a message; returns how many it held then.
async fn wait_for_first_events(brokers: &str, topic: &str, within: Duration) -> i64 {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            // Asking for the topic's metadata must not create it before ingest does.
            .set("allow.auto.create.topics", "false")
            .create()
            .unwrap();
        let deadline = Instant::now() + within;
        loop {
            let n = messages_on(&consumer, &topic);
            if n > 0 {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "nothing published within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap()
}

fn decode(records: Vec<Record>) -> Vec<(Record, Event)> {
    records
        .into_iter()
        .map(|r| {
            let event = schemas::decode_event(&r.payload).unwrap();
            (r, event)
        })
        .collect()
}

/// An event without what differs between two runs importing the same files (when it was
/// published, the run's id, the `date_added` a correction supersedes), with its partition.
fn normalized(partition: i32, event: &Event) -> String {
    match event {
        Event::Collection(c) => format!(
            "{partition} collection {} {:?} {:?} {:?} {:?} released={}",
            c.collection_id, c.title, c.description, c.alias, c.media_types, c.released
        ),
        Event::ObjectVersion(v) => format!(
            "{partition} version {} {} {} {} correction={} archival={} {}",
            v.collection_id,
            v.object_id,
            v.version,
            v.stix_type,
            v.correction,
            v.archival,
            v.object_json
        ),
        Event::Release(r) => format!(
            "{partition} release {} {} {} {} chunk {}/{} of {} members {:?}",
            r.collection_id,
            r.label,
            r.release_version,
            r.release_timestamp,
            r.chunk_index,
            r.chunk_count,
            r.member_count,
            r.members
                .iter()
                .map(|m| (&m.object_id, &m.version))
                .collect::<Vec<_>>()
        ),
    }
}

fn normalized_all(events: &[(Record, Event)]) -> Vec<String> {
    let mut out: Vec<String> = events
        .iter()
        .map(|(r, e)| normalized(r.partition, e))
        .collect();
    out.sort();
    out
}

/// A version of an object in one collection (ATT&CK's domains share some objects).
type Key = (String, String, String);

/// The truth from the files, imported in order: per (collection, object, version), the contents
/// published in order — the first occurrence, then each later one whose content differs from
/// the one before it (a correction).
fn expected_contents(files: &[Release]) -> BTreeMap<Key, Vec<&Value>> {
    let mut out: BTreeMap<Key, Vec<&Value>> = BTreeMap::new();
    for file in files {
        let collection = file.collection_id();
        for object in &file.objects {
            let key = (collection.clone(), id_of(object), version_of(object));
            let contents = out.entry(key).or_default();
            if contents.last() != Some(&object) {
                contents.push(object);
            }
        }
    }
    out
}

/// Every file's release on the topic, each chunk exactly once, with the file's versions as its
/// members; keyed by (collection, label).
fn assert_releases(events: &[(Record, Event)], files: &[Release]) {
    let mut chunks: BTreeMap<(String, String), Vec<&schemas::ReleasePublished>> = BTreeMap::new();
    for (_, e) in events {
        if let Event::Release(r) = e {
            chunks
                .entry((r.collection_id.clone(), r.label.clone()))
                .or_default()
                .push(r);
        }
    }
    assert_eq!(chunks.len(), files.len(), "one release per file");
    for file in files {
        let label = file.collection().unwrap()["x_mitre_version"]
            .as_str()
            .unwrap()
            .to_owned();
        let parts = &chunks[&(file.collection_id(), label.clone())];
        let count = parts[0].chunk_count as usize;
        let mut indexes: Vec<i32> = parts.iter().map(|p| p.chunk_index).collect();
        indexes.sort_unstable();
        assert_eq!(
            indexes,
            (0..count as i32).collect::<Vec<_>>(),
            "{}: every chunk of release {label} exactly once",
            file.name
        );
        let members: std::collections::BTreeSet<(String, String)> = parts
            .iter()
            .flat_map(|p| p.members.iter())
            .map(|m| (m.object_id.clone(), m.version.clone()))
            .collect();
        assert_eq!(members, file.versions(), "{}: release members", file.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_gave_up_on_a_killed_broker_is_rerun_without_loss_or_duplicates() {
    broker_killed_mid_import("faults_kafka_gives_up", FirstRun::GivesUp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_rides_out_a_broker_killed_and_restarted_under_it_without_loss_or_duplicates() {
    broker_killed_mid_import("faults_kafka_rides_out", FirstRun::RidesOut).await;
}

/// Kills the broker once the import's first events are on the topic, restarts it, reruns the
/// import, and checks the topic against the files and a clean run, and what is projected from it
/// against the files.
async fn broker_killed_mid_import(name: &str, how: FirstRun) {
    let files: Vec<Release> = FILES.iter().map(|f| Release::load(f).unwrap()).collect();
    let engines = Engines::start(&[Engine::Kafka], false).await.unwrap();
    let brokers = engines.kafka_brokers();
    let topics = Topics::new(name);

    let mut first = tokio::spawn(ingest::run(
        import_settings(&topics, &brokers, how.timeout()),
        CancellationToken::new(),
    ));
    let seen = wait_for_first_events(&brokers, &topics.objects, Duration::from_secs(120)).await;
    let still_importing = !first.is_finished();
    engines.kill(Engine::Kafka).await.unwrap();
    let killed = Instant::now();
    assert!(
        still_importing,
        "the import ended before the broker could be killed mid-way"
    );
    println!("{name}: broker SIGKILLed with {seen} message(s) on the topic");
    let mut ended = None;
    if how == FirstRun::GivesUp {
        // Bounded by --timeout: librdkafka reports every message within message.timeout.ms.
        ended = Some(
            tokio::time::timeout(how.timeout() * 6, &mut first)
                .await
                .expect("the import gives up within its timeout")
                .unwrap(),
        );
        println!(
            "{name}: the import gave up {:?} after the kill",
            killed.elapsed()
        );
    }
    let restart = engines.restart().await.unwrap();
    println!(
        "{name}: broker restarted, answering {restart:?} after `dev/services start` \
         ({:?} after the kill)",
        killed.elapsed()
    );
    let first = match ended {
        Some(result) => result,
        None => tokio::time::timeout(Duration::from_secs(240), first)
            .await
            .expect("the interrupted import ends within its timeout")
            .unwrap(),
    };
    match (how, &first) {
        (FirstRun::RidesOut, Ok(summary)) => {
            assert_eq!(summary.outcome(), ingest::Outcome::Complete);
            println!("{name}: the interrupted run completed: {summary}");
        }
        (FirstRun::GivesUp, Err(e)) => {
            let text = e.to_string();
            assert!(text.starts_with("kafka: "), "a clear Kafka error: {text}");
            println!("{name}: the interrupted run failed: {text}");
        }
        (_, outcome) => panic!("{how:?}: the interrupted run ended with {outcome:?}"),
    }

    let rerun = tokio::time::timeout(
        Duration::from_secs(180),
        ingest::run(
            import_settings(&topics, &brokers, Duration::from_secs(30)),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the rerun ends")
    .unwrap();
    assert_eq!(rerun.outcome(), ingest::Outcome::Complete);
    println!("{name}: rerun: {rerun}");

    let events = decode(read_all(&brokers, &topics.objects).await.unwrap());
    // Versions: exactly the files' contents, each once, in publication order.
    let mut published: BTreeMap<Key, Vec<Value>> = BTreeMap::new();
    for (_, e) in &events {
        if let Event::ObjectVersion(v) = e {
            published
                .entry((
                    v.collection_id.clone(),
                    v.object_id.clone(),
                    v.version.clone(),
                ))
                .or_default()
                .push(serde_json::from_str(&v.object_json).unwrap());
        }
    }
    let expected = expected_contents(&files);
    let (mut lost, mut duplicated) = (0, 0);
    for (key, contents) in &expected {
        let on_topic = published.get(key).map_or(0, Vec::len);
        lost += contents.len().saturating_sub(on_topic);
        duplicated += on_topic.saturating_sub(contents.len());
    }
    println!(
        "{name}: {} events on the topic; {lost} versions lost, {duplicated} duplicated",
        events.len()
    );
    assert_eq!(lost, 0, "versions lost");
    assert_eq!(duplicated, 0, "versions duplicated");
    assert_eq!(published.len(), expected.len(), "no version the files lack");
    for (key, contents) in &expected {
        let on_topic: Vec<&Value> = published[key].iter().collect();
        assert_eq!(&on_topic, contents, "contents of {key:?}, in order");
    }
    assert_releases(&events, &files);

    // The same events as a clean import of the same files (on the shared broker).
    let clean = Topics::new(&format!("{name}_clean"));
    assert_eq!(
        clean.ingest(ImportConfig::new(paths())).await.unwrap(),
        ingest::Outcome::Complete
    );
    let reference = clean.events().await.unwrap();
    assert_eq!(
        normalized_all(&events),
        normalized_all(&reference),
        "the topic's events equal a clean run's"
    );

    // What is served from them: projected by a projector reading the private broker.
    let control = projection::control_keyspace(name);
    let mut settings = projection::settings(&topics, &control, Command::Run);
    settings.kafka.brokers = brokers.clone();
    let running = projection::start_with(settings).unwrap();
    let session = projection::session().await.unwrap();
    let revisions = projection::final_revisions(events.iter().map(|(_, e)| e));
    let keyspace = projection::wait_for_revisions(
        &session,
        &control,
        &revisions,
        Deadline::after(Duration::from_secs(240)),
    )
    .await
    .unwrap();
    assert_eq!(running.dead_lettered(), 0);
    projection::check_serves(&session, &keyspace, &files)
        .await
        .unwrap();
    running.stop().await.unwrap();

    projection::drop_keyspaces(&session, &control)
        .await
        .unwrap();
    clean.delete().await.unwrap();
    drop(engines);
}
