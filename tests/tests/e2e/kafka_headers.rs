//! Every message Taxiway writes to Kafka carries headers that name its record, its writer
//! schema, its media type and its collection, so consumers route and pick a decoder without
//! decoding it. The expected names and fingerprints come from the `.avsc` files themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ingest::config::ImportConfig;
use projector::config::Command;
use rdkafka::producer::FutureRecord;
use schemas::Event;
use serde_json::Value;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::topic::{Record, read_all};
use taxiway_tests::{Deadline, fixtures, kafka_brokers, projection};

const EVENT_TYPE: &str = "taxiway-event-type";
const FINGERPRINT: &str = "taxiway-schema-fingerprint";
const CONTENT_TYPE: &str = "content-type";
const COLLECTION_ID: &str = "taxiway-collection-id";
/// As `docs/events.md` documents it.
const AVRO_SINGLE_OBJECT: &str = "application/avro; encoding=single-object";

/// Full record name (`namespace.name`) by the hex CRC-64-AVRO fingerprint of each schema file
/// this build writes with (`schemas/avro/*.avsc`, history aside).
fn writer_schemas() -> BTreeMap<String, String> {
    let dir = fixtures::repo_root().join("schemas/avro");
    let mut by_fingerprint = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("avsc") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        let name = format!(
            "{}.{}",
            schema["namespace"].as_str().unwrap(),
            schema["name"].as_str().unwrap()
        );
        let fingerprint = schemas::fingerprint::schema_fingerprint(&text).unwrap();
        by_fingerprint.insert(hex(&fingerprint), name);
    }
    assert_eq!(by_fingerprint.len(), 4, "{by_fingerprint:?}");
    by_fingerprint
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the headers every message has; returns its record's full name.
fn check_common(record: &Record, writers: &BTreeMap<String, String>) -> String {
    let at = format!("{}@{}", record.partition, record.offset);
    let fingerprint = record.header(FINGERPRINT).expect(&at);
    assert_eq!(fingerprint, hex(&record.payload[2..10]), "{at}");
    let name = writers.get(&fingerprint).expect("a current writer schema");
    assert_eq!(record.header(EVENT_TYPE).as_ref(), Some(name), "{at}");
    assert_eq!(
        record.header(CONTENT_TYPE).as_deref(),
        Some(AVRO_SINGLE_OBJECT),
        "{at}"
    );
    name.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_names_its_record_schema_media_type_and_collection() {
    let writers = writer_schemas();
    let topics = Topics::new("headers");
    let file = fixtures::path("ics-attack-17.1.json.zst");
    topics.ingest(ImportConfig::new([&file])).await.unwrap();
    // One invalid object: ingest's own dead letter.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(
        &bundle,
        r#"{"type":"bundle","id":"bundle--6b3ead4e-6d47-4ccb-854c-a6a4f9d96b22","objects":[
            {"type":"malware","spec_version":"2.1","id":"malware--1a3ead4e-6d47-4ccb-854c-a6a4f9d96b22","created":"2020-01-01T00:00:00.000Z","modified":"yesterday"}]}"#,
    )
    .unwrap();
    topics
        .ingest(ImportConfig::new([&bundle]).collection("mine", "Mine"))
        .await
        .unwrap();

    let events = topics.events().await.unwrap();
    let mut kinds = BTreeMap::<String, usize>::new();
    for (record, event) in &events {
        let name = check_common(record, &writers);
        let expected = match event {
            Event::Collection(_) => "CollectionUpserted",
            Event::ObjectVersion(_) => "ObjectVersionAdded",
            Event::Release(_) => "ReleasePublished",
        };
        assert!(name.ends_with(&format!(".{expected}")), "{name}");
        assert_eq!(
            record.header(COLLECTION_ID).as_deref(),
            Some(event.collection_id())
        );
        *kinds.entry(expected.to_owned()).or_default() += 1;
    }
    // Every version of the file, and the collection and release events, have them.
    let release = fixtures::Release::load("ics-attack-17.1.json.zst").unwrap();
    assert_eq!(kinds["ObjectVersionAdded"], release.versions().len());
    assert!(kinds["CollectionUpserted"] >= 1 && kinds["ReleasePublished"] >= 1);

    // Poison in the collection's partition: the projector's dead letter has them too.
    let partition = events[0].0.partition;
    taxiway_tests::topic::producer()
        .unwrap()
        .send(
            FutureRecord::to(&topics.objects)
                .partition(partition)
                .key("poison")
                .payload(&b"not avro"[..]),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let control = projection::control_keyspace("headers");
    let running = projection::start(&topics, &control, Command::Run).unwrap();
    let total = topics.object_records().await.unwrap().len() as u64;
    projection::wait_for_applied(&running, total, Deadline::after(Duration::from_secs(240)))
        .await
        .unwrap();
    running.stop().await.unwrap();

    let letters = read_all(&kafka_brokers(), &topics.dead_letter)
        .await
        .unwrap();
    let stages: BTreeSet<String> = letters
        .iter()
        .map(|record| {
            let name = check_common(record, &writers);
            assert!(name.ends_with(".DeadLetter"), "{name}");
            assert_eq!(record.header(COLLECTION_ID), None);
            schemas::decode_dead_letter(&record.payload).unwrap().stage
        })
        .collect();
    assert_eq!(
        stages,
        ["ingest", "projector"]
            .map(str::to_owned)
            .into_iter()
            .collect()
    );
}
