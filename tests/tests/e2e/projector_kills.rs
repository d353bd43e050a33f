//! Crashes: a projector SIGKILLed at random points, again and again, ends with the projections
//! of a clean run; with static membership a restarted one takes its partitions back at once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ingest::config::ImportConfig;
use projector::config::Command;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::{Deadline, child, fixtures, kafka_brokers, projection};

const FILES: [&str; 3] = [
    "ics-attack-17.1.json.zst",
    "ics-attack-18.0.json.zst",
    "mobile-attack-17.1.json.zst",
];

const ENTRY: &str = "child_process::projector_entry";

/// Long enough that a restart waiting out the dead member's session is plain to see.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// xorshift: kill points and republished events reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn log_path(name: &str) -> PathBuf {
    fixtures::repo_root()
        .join("target/e2e-logs")
        .join(format!("{name}.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_at_random_points_ends_with_a_clean_runs_projections() {
    let topics = Topics::new("proj_kills");
    for file in FILES {
        let path = fixtures::path(file);
        topics.ingest(ImportConfig::new([&path])).await.unwrap();
    }
    let events = topics.events().await.unwrap();
    let records = topics.object_records().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    let session = projection::session().await.unwrap();

    // The reference: one uninterrupted in-process run over the same topic.
    let clean_control = projection::control_keyspace("proj_kills_clean");
    let clean = projection::start(&topics, &clean_control, Command::Run).unwrap();
    projection::wait_for_applied(
        &clean,
        events.len() as u64,
        Deadline::after(Duration::from_secs(300)),
    )
    .await
    .unwrap();
    assert_eq!(clean.dead_lettered(), 0);
    clean.stop().await.unwrap();
    let (_, clean_keyspace) = projection::active(&session, &clean_control)
        .await
        .unwrap()
        .unwrap();
    let reference = projection::dump(&session, &clean_keyspace).await.unwrap();

    let seed = std::env::var("TAXIWAY_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    let kills = if std::env::var("CI").is_ok_and(|v| v == "true") {
        10
    } else {
        5
    };
    println!("projector_kills: seed {seed} (TAXIWAY_KILL_SEED), {kills} kills");
    let mut rng = Rng(seed);

    let control = projection::control_keyspace("proj_kills");
    let mut settings = projection::settings(&topics, &control, Command::Run);
    settings.membership.instance_id = Some(format!("{control}-0"));
    settings.membership.session_timeout = SESSION_TIMEOUT;
    settings.membership.heartbeat_interval = Duration::from_secs(3);
    // Small batches, few writes in flight: the run lasts long enough to be killed mid-way.
    settings.batch.batch_size = 200;
    settings.batch.concurrency = 16;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("message.max.bytes", "16777216")
        .create()
        .unwrap();
    let log = log_path(&control);
    println!("projector_kills: child logs in {}", log.display());

    let mut latencies = Vec::new();
    for round in 0..=kills {
        let projector = child::spawn(&settings, ENTRY, &log).unwrap();
        let latency = projector
            .wait_first_applied(Duration::from_secs(120))
            .await
            .unwrap();
        if round > 0 {
            println!(
                "projector_kills: restart {round}: first event applied {latency:?} after the start"
            );
            latencies.push(latency);
        }
        if round == kills {
            // The last one runs to the end.
            projection::wait_for_revisions(
                &session,
                &control,
                &expected,
                Deadline::after(Duration::from_secs(300)),
            )
            .await
            .unwrap();
            projector.kill().await.unwrap();
            break;
        }
        let delay = Duration::from_millis(100 + rng.below(3000));
        tokio::time::sleep(delay).await;
        projector.kill().await.unwrap();
        println!("projector_kills: killed {round} {delay:?} after its first event");
        // Every restart finds work: some events published again, in their partitions with
        // their keys (idempotent, as projector_replay shows), so the first batch measures it.
        for _ in 0..50 {
            let record = &records[rng.below(records.len() as u64) as usize];
            producer
                .send(
                    FutureRecord::to(&topics.objects)
                        .partition(record.partition)
                        .key(&record.key)
                        .payload(&record.payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }

    let (_, keyspace) = projection::active(&session, &control)
        .await
        .unwrap()
        .unwrap();
    let killed = projection::dump(&session, &keyspace).await.unwrap();
    projection::assert_same_rows(&reference, &killed);
    let letters = topics.dead_letters().await.unwrap();
    assert!(letters.is_empty(), "dead-lettered: {letters:?}");
    println!("projector_kills: restart latencies with static membership: {latencies:?}");
    for latency in &latencies {
        // A behaviour check, not a benchmark: waiting out the dead member's session would take
        // SESSION_TIMEOUT; the start-up (CQL connection, migrations) takes a few seconds.
        assert!(
            *latency < SESSION_TIMEOUT * 2 / 3,
            "a restart took {latency:?}: it waited for the dead member's session"
        );
    }
    assert_eq!(latencies.len(), kills);

    let started = Instant::now();
    projection::drop_keyspaces(&session, &clean_control)
        .await
        .unwrap();
    projection::drop_keyspaces(&session, &control)
        .await
        .unwrap();
    topics.delete().await.unwrap();
    println!("projector_kills: cleaned up in {:?}", started.elapsed());
}

/// The other side of the choice: without an instance id, a restarted projector waits until the
/// coordinator drops the killed member at the end of its session, then rebalances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_static_membership_a_restart_waits_out_the_dead_members_session() {
    let topics = Topics::new("proj_kills_dyn");
    let path = fixtures::path(FILES[0]);
    topics.ingest(ImportConfig::new([&path])).await.unwrap();
    let records = topics.object_records().await.unwrap();
    let session = projection::session().await.unwrap();
    let control = projection::control_keyspace("proj_kills_dyn");
    let mut settings = projection::settings(&topics, &control, Command::Run);
    // The default: 10 s.
    let session_timeout = settings.membership.session_timeout;
    assert_eq!(settings.membership.instance_id, None);
    settings.batch.batch_size = 200;
    settings.batch.concurrency = 16;
    let log = log_path(&control);

    let first = child::spawn(&settings, ENTRY, &log).unwrap();
    first
        .wait_first_applied(Duration::from_secs(120))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill().await.unwrap();
    // Work for the restarted one, whatever the first had applied.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("message.max.bytes", "16777216")
        .create()
        .unwrap();
    for record in records.iter().take(50) {
        producer
            .send(
                FutureRecord::to(&topics.objects)
                    .partition(record.partition)
                    .key(&record.key)
                    .payload(&record.payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let second = child::spawn(&settings, ENTRY, &log).unwrap();
    let latency = second
        .wait_first_applied(session_timeout * 6)
        .await
        .unwrap();
    second.kill().await.unwrap();
    println!(
        "projector_kills: restart without static membership: first event applied {latency:?} \
         after the start (session timeout {session_timeout:?})"
    );
    // A behaviour check: the partitions were the dead member's until its session ended.
    assert!(
        latency >= session_timeout / 2,
        "a dynamic member's restart took only {latency:?}"
    );

    projection::drop_keyspaces(&session, &control)
        .await
        .unwrap();
    topics.delete().await.unwrap();
}
