//! Cassandra SIGKILLed under a running projector and restarted, its schema flushed as in
//! production: the same projector resumes by itself, and its projections serve every version of
//! the files, as a clean run's do.
//!
//! The Cassandra is a private one (`taxiway_tests::engines`), so the other suites keep theirs;
//! the topic is on the shared broker.

use std::time::{Duration, Instant};

use ingest::config::ImportConfig;
use projector::config::Command;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use taxiway_tests::engines::{Engine, Engines};
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::{Deadline, projection};

const FILES: [&str; 5] = taxiway_tests::fixtures::SHIPPED_RELEASES;

/// How long the projector may take, once Cassandra answers again, to finish the topic.
const CATCH_UP: Duration = Duration::from_secs(240);

async fn session_on(nodes: Vec<String>) -> Session {
    SessionBuilder::new()
        .known_nodes(nodes)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_resumes_by_itself_after_cassandra_is_killed_mid_projection_and_restarted() {
    let files: Vec<Release> = FILES.iter().map(|f| Release::load(f).unwrap()).collect();
    let engines = Engines::start(&[Engine::Cassandra], true).await.unwrap();
    let command = engines.command_line(Engine::Cassandra).unwrap();
    assert!(
        command.contains("CassandraDaemon") && !command.contains("flush_local_schema_changes"),
        "Cassandra flushes schema changes, as in production: {command}"
    );
    let topics = Topics::new("faults_cql");
    let paths: Vec<_> = FILES.iter().map(|f| fixtures::path(f)).collect();
    assert_eq!(
        topics.ingest(ImportConfig::new(paths)).await.unwrap(),
        ingest::Outcome::Complete
    );
    let events = topics.events().await.unwrap();
    let total = events.len() as u64;
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));

    let control = projection::control_keyspace("faults_cql");
    let mut settings = projection::settings(&topics, &control, Command::Run);
    settings.cql.nodes = engines.cql_nodes();
    // Small batches, few writes in flight: the kill lands with most of the topic still to apply.
    settings.batch.batch_size = 200;
    settings.batch.concurrency = 16;
    let running = projection::start_with(settings).unwrap();
    let deadline = Deadline::after(Duration::from_secs(180));
    while running.applied() == 0 {
        assert!(!deadline.passed(), "the projector applied nothing");
        assert!(!running.task.is_finished(), "the projector exited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engines.kill(Engine::Cassandra).await.unwrap();
    let applied_at_kill = running.applied();
    assert!(
        applied_at_kill < total,
        "the projection ended before Cassandra could be killed mid-way"
    );
    println!("faults_cassandra: Cassandra SIGKILLed after {applied_at_kill} of {total} events");
    let down = Instant::now();
    let restart = engines.restart().await.unwrap();
    let back = Instant::now();
    println!(
        "faults_cassandra: Cassandra answering again {restart:?} after `dev/services start` \
         ({:?} after the kill); the projector retried {} CQL requests meanwhile",
        down.elapsed(),
        running.metrics.cql_retries.get()
    );
    assert!(
        !running.task.is_finished(),
        "the projector exited while Cassandra was down"
    );

    let deadline = Deadline::after(CATCH_UP);
    while running.applied() == applied_at_kill {
        assert!(
            !deadline.passed(),
            "the projector applied nothing within {CATCH_UP:?} of Cassandra's return"
        );
        assert!(!running.task.is_finished(), "the projector exited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resumed = back.elapsed();
    let session = session_on(engines.cql_nodes()).await;
    let keyspace = projection::wait_for_revisions(&session, &control, &expected, deadline)
        .await
        .unwrap();
    let caught_up = back.elapsed();
    println!(
        "faults_cassandra: Cassandra back → first event applied {resumed:?}, → caught up with \
         the topic {caught_up:?}; lost projections noticed {}, gaps {}",
        running.metrics.projections_lost.get(),
        running.metrics.gaps.get()
    );
    assert!(!running.task.is_finished(), "the projector exited");
    assert_eq!(running.dead_lettered(), 0);
    projection::check_serves(&session, &keyspace, &files)
        .await
        .unwrap();
    let killed = projection::dump(&session, &keyspace).await.unwrap();
    running.stop().await.unwrap();
    drop(session);
    drop(engines);

    // The reference: one uninterrupted run over the same topic, on the shared Cassandra.
    let clean_control = projection::control_keyspace("faults_cql_clean");
    let clean_started = Instant::now();
    let clean = projection::start(&topics, &clean_control, Command::Run).unwrap();
    projection::wait_for_applied(&clean, total, Deadline::after(Duration::from_secs(300)))
        .await
        .unwrap();
    println!(
        "faults_cassandra: for comparison, a clean run applied the topic in {:?}",
        clean_started.elapsed()
    );
    clean.stop().await.unwrap();
    let shared = projection::session().await.unwrap();
    let (_, clean_keyspace) = projection::active(&shared, &clean_control)
        .await
        .unwrap()
        .unwrap();
    let reference = projection::dump(&shared, &clean_keyspace).await.unwrap();
    projection::assert_same_rows(&reference, &killed);

    projection::drop_keyspaces(&shared, &clean_control)
        .await
        .unwrap();
    topics.delete().await.unwrap();
}
