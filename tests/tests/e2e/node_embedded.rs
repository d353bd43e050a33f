//! The embedded backends of a node against Kafka and CQL: ingest writes the same messages to the
//! embedded log as to the topic, and the API over the node's in-memory projection of a log
//! answers every root, collection, listing page and object with the bytes the API over the CQL
//! projection of the same messages answers.

use std::sync::Arc;
use std::time::Duration;

use eventlog::{EmbeddedLog, Record};
use ingest::config::ImportConfig;
use projector::metrics::Metrics;
use schemas::{Event, OBJECTS_TOPIC};
use service::Secret;
use tokio_util::sync::CancellationToken;

use node::{Projection, project};
use taxiway_tests::Deadline;
use taxiway_tests::api::{Api, serve_projected_signed};
use taxiway_tests::crawl::crawl;
use taxiway_tests::fixtures;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_projection_serves_the_same_bytes_as_the_cql_projection() {
    let topics = Topics::new("node_projection");
    let files: Vec<_> = fixtures::SHIPPED_RELEASES
        .iter()
        .map(|f| fixtures::path(f))
        .collect();
    topics.ingest(ImportConfig::new(&files)).await.unwrap();
    let events: Vec<Event> = topics
        .object_records()
        .await
        .unwrap()
        .iter()
        .map(|r| schemas::decode_event(&r.payload).unwrap())
        .collect();
    assert!(!events.is_empty());
    let expected = projection::final_revisions(&events);

    // The distributed path: the projector into Cassandra, an API over it.
    let cursor_key = uuid::Uuid::new_v4().to_string();
    let (_, projector, cql) =
        serve_projected_signed(&topics, "node_projection", &expected, Some(&cursor_key))
            .await
            .unwrap();
    let mut server = Api::config("").server;
    server.cursor_key = Some(Secret(cursor_key));

    // The node's path: the same messages in an embedded log, projected by the node's task.
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("log.sqlite")).unwrap();
    let records: Vec<Record> = topics
        .object_records()
        .await
        .unwrap()
        .into_iter()
        .map(Record::from)
        .collect();
    log.append(OBJECTS_TOPIC, &records).unwrap();
    let memory = Projection::new();
    let (progress, mut applied) = tokio::sync::watch::channel(0);
    let stop_node = CancellationToken::new();
    let projecting = tokio::spawn(project(
        log.clone(),
        memory.clone(),
        Metrics::new().unwrap(),
        progress,
        stop_node.clone(),
    ));
    applied
        .wait_for(|n| *n >= records.len() as i64)
        .await
        .unwrap();
    let node = Api::serve_store(server, Arc::new(memory)).await.unwrap();

    node.wait_for_revisions(&expected, Deadline::after(Duration::from_secs(120)))
        .await
        .unwrap();
    let from_cql = crawl(&cql.client, &cql.base).await.unwrap();
    let from_node = crawl(&node.client, &node.base).await.unwrap();
    assert!(from_cql.len() > 50, "{} answers", from_cql.len());
    assert_eq!(
        from_cql.keys().collect::<Vec<_>>(),
        from_node.keys().collect::<Vec<_>>()
    );
    for (path, answer) in &from_cql {
        assert_eq!(answer.0, 200, "{path}: {}", answer.2);
        assert_eq!(&from_node[path], answer, "{path}");
    }

    node.stop().await.unwrap();
    stop_node.cancel();
    projecting.await.unwrap().unwrap();
    cql.stop().await.unwrap();
    projector.stop().await.unwrap();
}

/// An event with what differs between two runs of the same import cleared: the run id and the
/// clock's date_added (and what names one).
fn without_run(event: Event) -> Event {
    match event {
        Event::Collection(mut c) => {
            c.ingest_run_id.clear();
            c.updated_at = 0;
            Event::Collection(c)
        }
        Event::ObjectVersion(mut v) => {
            v.ingest_run_id.clear();
            v.date_added = 0;
            v.supersedes_date_added = v.supersedes_date_added.map(|_| 0);
            Event::ObjectVersion(v)
        }
        Event::Release(mut r) => {
            r.ingest_run_id.clear();
            r.date_added = 0;
            Event::Release(r)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_appends_to_the_embedded_log_the_messages_it_publishes_to_kafka() {
    let files: Vec<_> = fixtures::SHIPPED_RELEASES
        .iter()
        .map(|f| fixtures::path(f))
        .collect();
    let topics = Topics::new("node_ingest");
    topics.ingest(ImportConfig::new(&files)).await.unwrap();
    let mut kafka = topics.object_records().await.unwrap();
    // One partition per collection on Kafka, one order in the log: compare per collection.
    kafka.sort_by_key(|r| (r.header("taxiway-collection-id"), r.partition, r.offset));

    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("log.sqlite")).unwrap();
    let mut settings = topics.settings(ImportConfig::new(&files));
    settings.embedded = Some(log.clone());
    ingest::run(settings, CancellationToken::new())
        .await
        .unwrap();
    let mut embedded: Vec<(usize, Record)> = log
        .read(OBJECTS_TOPIC, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|s| s.record)
        .enumerate()
        .collect();
    let collection = |headers: &[(String, Vec<u8>)]| {
        headers
            .iter()
            .find(|(n, _)| n == "taxiway-collection-id")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    embedded.sort_by_key(|(i, r)| (collection(&r.headers), *i));

    assert_eq!(embedded.len(), kafka.len());
    for ((_, ours), theirs) in embedded.iter().zip(&kafka) {
        assert_eq!(ours.key, theirs.key, "{}", theirs.key_str());
        let names = |h: &[(String, Vec<u8>)]| h.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&ours.headers), names(&theirs.headers));
        let payload = ours.payload.as_ref().unwrap();
        assert_eq!(
            without_run(schemas::decode_event(payload).unwrap()),
            without_run(schemas::decode_event(&theirs.payload).unwrap()),
            "{}",
            theirs.key_str()
        );
    }
    assert!(
        log.read(schemas::DEAD_LETTER_TOPIC, 0, 10)
            .unwrap()
            .is_empty()
    );

    // The checkpoint rebuilt from the log: importing the same files again adds nothing.
    let before = log.high_water(OBJECTS_TOPIC).unwrap();
    let mut settings = topics.settings(ImportConfig::new(&files));
    settings.embedded = Some(log.clone());
    ingest::run(settings, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(log.high_water(OBJECTS_TOPIC).unwrap(), before);
}
