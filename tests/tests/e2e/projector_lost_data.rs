//! Lost projections: a generation keyspace dropped while the projector is stopped, running, or
//! idle is noticed and replayed from the topic, never served with a silent gap.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ingest::config::ImportConfig;
use projector::config::Command;
use scylla::client::session::Session;
use taxiway_tests::Deadline;
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection::{self, Running};

const FIRST: &str = "ics-attack-17.1.json.zst";
const SECOND: &str = "ics-attack-18.0.json.zst";

/// How long a projector may take to notice the loss and replay a release or two.
const RECOVERY: Duration = Duration::from_secs(120);

async fn import(topics: &Topics, file: &str) {
    let path = fixtures::path(file);
    topics.ingest(ImportConfig::new([&path])).await.unwrap();
}

/// Waits until the active generation has every collection at the revision the topic's events
/// lead to; returns its keyspace.
async fn wait_for_topic(
    session: &Session,
    topics: &Topics,
    control: &str,
    within: Duration,
) -> String {
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    projection::wait_for_revisions(session, control, &expected, Deadline::after(within))
        .await
        .unwrap()
}

/// Drops a generation's keyspace as an operator's mistake would.
async fn drop_keyspace(session: &Session, keyspace: &str) {
    let mut statement = scylla::statement::Statement::new(format!("DROP KEYSPACE {keyspace}"));
    statement.set_request_timeout(Some(Duration::from_secs(120)));
    session.query_unpaged(statement, ()).await.unwrap();
    session.await_schema_agreement().await.unwrap();
}

/// Every `(object id, version)` of the files, from the files.
fn versions_of(files: &[&str]) -> BTreeSet<(String, String)> {
    files
        .iter()
        .flat_map(|f| Release::load(f).unwrap().versions())
        .collect()
}

/// The projected versions of `keyspace` equal those of `files`, and each file's release is
/// complete with exactly its members.
async fn assert_holds(session: &Session, keyspace: &str, files: &[&str]) {
    let stored = projection::object_versions(session, keyspace)
        .await
        .unwrap();
    let stored_keys: BTreeSet<(String, String)> = stored.keys().cloned().collect();
    let expected = versions_of(files);
    let missing = expected.difference(&stored_keys).count();
    let extra = stored_keys.difference(&expected).count();
    assert!(
        missing == 0 && extra == 0,
        "{keyspace}: {missing} versions of {files:?} missing, {extra} not in them ({} stored)",
        stored.len()
    );
    for file in files {
        let release = Release::load(file).unwrap();
        let stored_releases = projection::releases(session, keyspace, &release.collection_id())
            .await
            .unwrap();
        let label = release.collection().unwrap()["x_mitre_version"]
            .as_str()
            .unwrap()
            .to_owned();
        let found = stored_releases
            .iter()
            .find(|r| r.label == label)
            .unwrap_or_else(|| panic!("{file}: release {label} not projected"));
        assert!(found.complete, "{file}: release {label} complete");
        assert_eq!(found.members, release.versions(), "{file}: members");
    }
}

/// Every object of the file is projected with its content.
async fn assert_content(session: &Session, keyspace: &str, file: &str) {
    let release = Release::load(file).unwrap();
    let stored = projection::object_versions(session, keyspace)
        .await
        .unwrap();
    for (key, object) in release.by_version() {
        let json = stored
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} not projected"));
        let projected: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(&projected, object, "{key:?}");
    }
}

/// `projector run` that checks the active generation (and, idle, its record) only hourly.
fn start_polling_hourly(topics: &Topics, control: &str) -> Running {
    let mut settings = projection::settings(topics, control, Command::Run);
    settings.generation_poll = Duration::from_secs(3600);
    projection::start_with(settings).unwrap()
}

fn lost_and_gaps(running: &Running) -> (u64, u64) {
    (
        running.metrics.projections_lost.get(),
        running.metrics.gaps.get(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_projector_replays_a_generation_dropped_while_it_was_stopped() {
    let topics = Topics::new("proj_lost_stopped");
    import(&topics, FIRST).await;
    let control = projection::control_keyspace("proj_lost_stopped");
    let session = projection::session().await.unwrap();
    let first = projection::start(&topics, &control, Command::Run).unwrap();
    let keyspace = wait_for_topic(&session, &topics, &control, Duration::from_secs(180)).await;
    first.stop().await.unwrap();

    drop_keyspace(&session, &keyspace).await;
    // Restarted, the projector recreates the keyspace; the group's commits say everything was
    // applied, but the generation's record is gone with it: everything is replayed.
    let second = projection::start(&topics, &control, Command::Run).unwrap();
    let again = wait_for_topic(&session, &topics, &control, RECOVERY).await;
    assert_eq!(again, keyspace, "the same generation, recreated");
    assert_holds(&session, &keyspace, &[FIRST]).await;
    assert_content(&session, &keyspace, FIRST).await;
    let (_, gaps) = lost_and_gaps(&second);
    assert!(gaps > 0, "the gap was detected and counted");
    second.stop().await.unwrap();
}

/// The write path: with no idle check before the next batch, it is the failing writes of the
/// second release that reveal the dropped keyspace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_projector_recovers_when_its_writes_find_the_generation_dropped() {
    let topics = Topics::new("proj_lost_running");
    import(&topics, FIRST).await;
    let control = projection::control_keyspace("proj_lost_running");
    let session = projection::session().await.unwrap();
    let running = start_polling_hourly(&topics, &control);
    let keyspace = wait_for_topic(&session, &topics, &control, Duration::from_secs(180)).await;

    drop_keyspace(&session, &keyspace).await;
    import(&topics, SECOND).await;
    let again = wait_for_topic(&session, &topics, &control, RECOVERY).await;
    assert_eq!(again, keyspace);
    assert_holds(&session, &keyspace, &[FIRST, SECOND]).await;
    let (lost, gaps) = lost_and_gaps(&running);
    assert!(lost >= 1 && gaps >= 1, "lost {lost}, gaps {gaps}");
    running.stop().await.unwrap();
}

/// The idle path: nothing is published after the drop, yet the projections come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_projector_replays_a_generation_dropped_under_it() {
    let topics = Topics::new("proj_lost_idle");
    import(&topics, FIRST).await;
    let control = projection::control_keyspace("proj_lost_idle");
    let session = projection::session().await.unwrap();
    let running = projection::start(&topics, &control, Command::Run).unwrap();
    let keyspace = wait_for_topic(&session, &topics, &control, Duration::from_secs(180)).await;

    drop_keyspace(&session, &keyspace).await;
    let again = wait_for_topic(&session, &topics, &control, RECOVERY).await;
    assert_eq!(again, keyspace);
    assert_holds(&session, &keyspace, &[FIRST]).await;
    let (lost, gaps) = lost_and_gaps(&running);
    assert!(lost >= 1 && gaps >= 1, "lost {lost}, gaps {gaps}");
    running.stop().await.unwrap();
}

/// The offsets a generation records are those of the topic's end once it caught up, so they can
/// vouch for exactly what the group committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_generation_records_the_end_of_every_partition() {
    let topics = Topics::new("proj_lost_record");
    import(&topics, FIRST).await;
    let control = projection::control_keyspace("proj_lost_record");
    let session = projection::session().await.unwrap();
    let running = projection::start(&topics, &control, Command::Run).unwrap();
    let keyspace = wait_for_topic(&session, &topics, &control, Duration::from_secs(180)).await;
    running.stop().await.unwrap();

    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for record in topics.object_records().await.unwrap() {
        let slot = ends.entry(record.partition).or_default();
        *slot = (*slot).max(record.offset + 1);
    }
    let rows = session
        .query_unpaged(
            format!(
                "SELECT partition, next_offset FROM {keyspace}.applied_offsets WHERE topic = ?"
            ),
            (topics.objects.as_str(),),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let recorded: BTreeMap<i32, i64> = rows
        .rows::<(i32, i64)>()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(recorded, ends);
}
