//! Generations: idempotent migrations, `rebuild` beside a live `run`, the atomic switch, and dropping old generations.

use std::time::Duration;

use ingest::config::ImportConfig;
use projector::config::Command;
use taxiway_tests::Deadline;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

async fn schema_of(session: &scylla::client::session::Session, keyspace: &str) -> Vec<String> {
    let rows = session
        .query_unpaged(
            "SELECT table_name, column_name, type, kind, clustering_order FROM system_schema.columns \
             WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut out: Vec<String> = rows
        .rows::<(String, String, String, String, String)>()
        .unwrap()
        .map(|r| format!("{:?}", r.unwrap()))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_twice_is_a_no_op() {
    let topics = Topics::new("proj_migrate");
    let control = projection::control_keyspace("proj_migrate");
    projection::command(&topics, &control, Command::Migrate)
        .await
        .unwrap();
    let session = projection::session().await.unwrap();
    let (generation, keyspace) = projection::active(&session, &control)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(generation, 1);
    let before = (
        schema_of(&session, &control).await,
        schema_of(&session, &keyspace).await,
    );
    assert!(
        before.1.len() > 30,
        "generation tables exist: {:?}",
        before.1
    );

    projection::command(&topics, &control, Command::Migrate)
        .await
        .unwrap();
    // And the raw files once more, statement by statement, as an operator could.
    for m in schemas::cql::CONTROL {
        for s in m.statements(&control, schemas::cql::DEFAULT_REPLICATION) {
            session.query_unpaged(s, ()).await.unwrap();
        }
    }
    for m in schemas::cql::GENERATION {
        for s in m.statements(&keyspace, schemas::cql::DEFAULT_REPLICATION) {
            session.query_unpaged(s, ()).await.unwrap();
        }
    }
    let after = (
        schema_of(&session, &control).await,
        schema_of(&session, &keyspace).await,
    );
    assert_eq!(before, after);
    assert_eq!(
        projection::active(&session, &control).await.unwrap(),
        Some((1, keyspace))
    );
    let generations = projection::generations(&session, &control).await.unwrap();
    assert_eq!(
        generations.into_iter().collect::<Vec<_>>(),
        [(1, "active".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_beside_a_live_run_switches_to_an_identical_generation() {
    let topics = Topics::new("proj_rebuild");
    let path = taxiway_tests::fixtures::path("ics-attack-17.1.json.zst");
    topics.ingest(ImportConfig::new([&path])).await.unwrap();
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));

    let control = projection::control_keyspace("proj_rebuild");
    let live = projection::start(&topics, &control, Command::Run).unwrap();
    let session = projection::session().await.unwrap();
    let old = projection::wait_for_revisions(
        &session,
        &control,
        &expected,
        Deadline::after(Duration::from_secs(180)),
    )
    .await
    .unwrap();

    // The rebuild runs while `run` keeps consuming (and serving generation 1).
    projection::command(&topics, &control, Command::Rebuild)
        .await
        .unwrap();
    let (generation, new) = projection::active(&session, &control)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(generation, 2);
    assert_ne!(new, old);
    let (old_dump, new_dump) = (
        projection::dump(&session, &old).await.unwrap(),
        projection::dump(&session, &new).await.unwrap(),
    );
    projection::assert_same_rows(&new_dump, &old_dump);

    // `run` notices the switch, then projects new events into generation 2 only.
    let deadline = Deadline::after(Duration::from_secs(60));
    while live.metrics.active_generation.get() != 2 {
        assert!(!deadline.passed(), "run did not follow the switch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let path = taxiway_tests::fixtures::path("ics-attack-18.0.json.zst");
    topics.ingest(ImportConfig::new([&path])).await.unwrap();
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    projection::wait_for_revisions(
        &session,
        &control,
        &expected,
        Deadline::after(Duration::from_secs(180)),
    )
    .await
    .unwrap();
    let collection = expected.keys().next().unwrap();
    let releases = projection::releases(&session, &new, collection)
        .await
        .unwrap();
    assert_eq!(releases[0].label, "18.0");
    assert!(releases[0].complete);
    let file = taxiway_tests::fixtures::Release::load("ics-attack-18.0.json.zst").unwrap();
    assert_eq!(releases[0].members, file.versions());
    let old_releases = projection::releases(&session, &old, collection)
        .await
        .unwrap();
    assert_eq!(old_releases.len(), 1, "generation 1 no longer written");
    live.stop().await.unwrap();

    // The active generation cannot be dropped; the old one can.
    assert!(
        projection::command(&topics, &control, Command::DropGeneration { generation: 2 })
            .await
            .is_err()
    );
    projection::command(&topics, &control, Command::DropGeneration { generation: 1 })
        .await
        .unwrap();
    let states = projection::generations(&session, &control).await.unwrap();
    assert_eq!(states[&1], "retired");
    assert_eq!(states[&2], "active");
    assert!(
        !projection::keyspace_exists(&session, &old).await.unwrap(),
        "old keyspace dropped"
    );
}

/// A keyspace with one table, created over `session`; DROP KEYSPACE then has work to do.
async fn keyspace_with_a_table(session: &scylla::client::session::Session, keyspace: &str) {
    for statement in [
        format!(
            "CREATE KEYSPACE {keyspace} WITH replication = {}",
            schemas::cql::DEFAULT_REPLICATION
        ),
        format!("CREATE TABLE {keyspace}.t (k int PRIMARY KEY, v text)"),
    ] {
        session.query_unpaged(statement, ()).await.unwrap();
    }
    session.await_schema_agreement().await.unwrap();
}

/// Schema changes have their own timeout: a DROP KEYSPACE outlives a request timeout too short
/// for any round trip, and fails when the schema timeout itself is that short. (A CI node once
/// took over 10 s, the request timeout, to drop a generation.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_wait_for_their_own_timeout() {
    let topics = Topics::new("proj_ddl_timeout");
    let control = projection::control_keyspace("proj_ddl_timeout");
    let session = projection::session().await.unwrap();
    let store_with = |request: Duration, ddl: Duration| {
        let mut settings = projection::settings(&topics, &control, Command::Status);
        settings.cql.request_timeout = request;
        settings.store.ddl_timeout = ddl;
        async move {
            projector::store::Store::connect(&settings.cql, &settings.store)
                .await
                .unwrap()
        }
    };

    let patient = format!("{control}_patient");
    keyspace_with_a_table(&session, &patient).await;
    store_with(Duration::from_millis(1), Duration::from_secs(120))
        .await
        .drop_keyspace(&patient)
        .await
        .unwrap();
    assert!(
        !projection::keyspace_exists(&session, &patient)
            .await
            .unwrap()
    );

    let hasty = format!("{control}_hasty");
    keyspace_with_a_table(&session, &hasty).await;
    let err = store_with(Duration::from_secs(120), Duration::from_millis(1))
        .await
        .drop_keyspace(&hasty)
        .await
        .expect_err("a 1 ms schema timeout is too short for DROP KEYSPACE");
    assert!(
        format!("{err:#}").contains("timeout"),
        "the error names the timeout: {err:#}"
    );
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {hasty}"), ())
        .await
        .unwrap();
}
