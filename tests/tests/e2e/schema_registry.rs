//! Schema-registry framing against a real Confluent-compatible registry (Apicurio Registry's
//! `ccompat` API, run by `dev/services`): ingest registers the event schemas and writes the
//! registry wire format; a topic holding both framings is read by ingest's checkpoint and by the
//! projector, which serves exactly the files; the registry accepts our schema history as
//! compatible evolution and refuses an incompatible change; and confluent-kafka's own
//! `AvroDeserializer` reads every version equal to the bundle file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ingest::config::ImportConfig;
use projector::config::Command;
use schemas::message::{self, AVRO_REGISTRY};
use schemas::registry;
use schemas::{Event, SchemaInfo, known_schemas};
use serde_json::Value;
use service::{RegistryArgs, SchemaRegistry, SchemaResolver};
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::topic::Record;
use taxiway_tests::{Deadline, kafka_brokers, projection, python, schema_registry_url};
use tokio_util::sync::CancellationToken;

const ICS_17_1: &str = "ics-attack-17.1.json.zst";
const ICS_18_0: &str = "ics-attack-18.0.json.zst";

fn registry_args() -> RegistryArgs {
    RegistryArgs {
        url: Some(schema_registry_url()),
        ..RegistryArgs::default()
    }
}

fn registry() -> SchemaRegistry {
    registry_args()
        .client()
        .unwrap()
        .expect("a registry URL is set")
}

/// The registry's JSON answer to `GET path` (a path of its Confluent API).
async fn registry_get<T: serde::de::DeserializeOwned>(path: &str) -> T {
    reqwest::get(format!("{}{path}", schema_registry_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Imports `file` on `topics`, framed for the registry when `framed`.
async fn import(topics: &Topics, file: &str, framed: bool) {
    let mut settings = topics.settings(ImportConfig::new([fixtures::path(file)]));
    if framed {
        settings.kafka.registry = registry_args();
    }
    ingest::run(settings, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("importing {file}: {e}"));
}

/// Every record decoded in either framing, ids looked up in the registry as a reader does.
async fn decode_all(records: &[Record]) -> Vec<Event> {
    let mut resolver = SchemaResolver::new(Some(registry()));
    let pending = resolver.pending(records.iter().map(|r| r.payload.as_slice()));
    resolver.resolve(&pending).await.unwrap();
    records
        .iter()
        .map(|r| {
            schemas::decode_event_with(&r.payload, resolver.ids())
                .unwrap_or_else(|e| panic!("{}@{}: {e}", r.partition, r.offset))
        })
        .collect()
}

fn versions_of<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeSet<(String, String)> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::ObjectVersion(v) => Some((v.object_id.clone(), v.version.clone())),
            _ => None,
        })
        .collect()
}

/// The current schema of the record a message's `taxiway-event-type` header names.
fn current_schema(event_type: &str) -> SchemaInfo {
    known_schemas()
        .unwrap()
        .into_iter()
        .find(|s| s.current && event_type == format!("{}.{}", registry::NAMESPACE, s.record))
        .unwrap_or_else(|| panic!("no current schema for {event_type}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_holding_both_framings_is_read_by_the_checkpoint_and_projected_exactly() {
    let deadline = Deadline::after(Duration::from_secs(300));
    let older = Release::load(ICS_17_1).unwrap();
    let newer = Release::load(ICS_18_0).unwrap();
    let topics = Topics::new("registry_mixed");

    import(&topics, ICS_17_1, false).await;
    let single_object = topics.object_records().await.unwrap().len();
    import(&topics, ICS_18_0, true).await;
    let records = topics.object_records().await.unwrap();

    // What the registry run wrote: every message in the wire format, with an id the registry
    // holds for the current schema of the record its header names.
    let registry = registry();
    let framed: Vec<&Record> = records
        .iter()
        .filter(|r| schemas::codec::schema_id(&r.payload).is_some())
        .collect();
    assert_eq!(
        records.len() - framed.len(),
        single_object,
        "the single-object messages are the first import's"
    );
    assert!(
        !framed.is_empty(),
        "the second import wrote no framed message"
    );
    let mut schema_of_id: BTreeMap<u32, String> = BTreeMap::new();
    for record in &framed {
        let id = schemas::codec::schema_id(&record.payload).unwrap();
        assert_eq!(
            record.header(message::SCHEMA_ID),
            Some(id.to_string()),
            "{}@{}",
            record.partition,
            record.offset
        );
        assert_eq!(
            record.header(message::CONTENT_TYPE).as_deref(),
            Some(AVRO_REGISTRY)
        );
        let event_type = record.header(message::EVENT_TYPE).unwrap();
        let avsc = match schema_of_id.get(&id) {
            Some(avsc) => avsc.clone(),
            None => {
                let avsc = registry
                    .schema(id)
                    .await
                    .unwrap()
                    .expect("id in the registry");
                schema_of_id.insert(id, avsc.clone());
                avsc
            }
        };
        assert_eq!(
            schemas::fingerprint::schema_fingerprint(&avsc).unwrap(),
            current_schema(&event_type).fingerprint,
            "schema id {id} is not the current schema of {event_type}"
        );
    }

    // Decoded, the topic holds every version of both files, and the framed messages exactly
    // what the newer file adds: versions the older lacks, and versions it re-issues with other
    // content (published again as corrections).
    let events = decode_all(&records).await;
    let mut both = older.versions();
    both.extend(newer.versions());
    assert_eq!(versions_of(&events), both);
    let framed_events = decode_all(&framed.iter().map(|r| (*r).clone()).collect::<Vec<_>>()).await;
    let known = older.by_version();
    let added: BTreeSet<(String, String)> = newer
        .by_version()
        .into_iter()
        .filter(|(key, object)| known.get(key).is_none_or(|k| k != object))
        .map(|(key, _)| key)
        .collect();
    assert!(
        added.len() > newer.versions().difference(&older.versions()).count(),
        "the newer file re-issues some versions with other content"
    );
    assert_eq!(versions_of(&framed_events), added);

    // Ingest's checkpoint reads both framings: importing the newer file again adds nothing.
    import(&topics, ICS_18_0, true).await;
    assert_eq!(topics.object_records().await.unwrap().len(), records.len());

    // The projector, told of the registry, serves both files exactly.
    let control = projection::control_keyspace("registry_mixed");
    let mut settings = projection::settings(&topics, &control, Command::Run);
    settings.kafka.registry = registry_args();
    let running = projection::start_with(settings).unwrap();
    projection::wait_for_applied(&running, records.len() as u64, deadline)
        .await
        .unwrap();
    assert_eq!(running.dead_lettered(), 0);
    running.stop().await.unwrap();
    let session = projection::session().await.unwrap();
    let (_, keyspace) = projection::active(&session, &control)
        .await
        .unwrap()
        .unwrap();
    projection::check_serves(&session, &keyspace, &[older, newer])
        .await
        .unwrap();
    projection::drop_keyspaces(&session, &control)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_registry_a_framed_message_is_dead_lettered_with_the_reason() {
    let deadline = Deadline::after(Duration::from_secs(300));
    let topics = Topics::new("registry_unset");
    import(&topics, ICS_17_1, true).await;
    let records = topics.object_records().await.unwrap();
    let control = projection::control_keyspace("registry_unset");
    let running = projection::start(&topics, &control, Command::Run).unwrap();
    let letters = loop {
        let letters = topics.dead_letters().await.unwrap();
        if letters.len() >= records.len() || deadline.passed() {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    running.stop().await.unwrap();
    assert_eq!(letters.len(), records.len(), "one dead letter per message");
    for letter in &letters {
        assert!(
            letter.reason.contains("no --schema-registry"),
            "{}",
            letter.reason
        );
    }
    let session = projection::session().await.unwrap();
    projection::drop_keyspaces(&session, &control)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_schema_history_registers_as_compatible_versions_and_an_incompatible_change_is_refused()
{
    let registry = registry();
    let topic = taxiway_tests::unique_name("registry_evolution");
    let record = "ObjectVersionAdded";
    let subject = registry::subject(&topic, &format!("{}.{record}", registry::NAMESPACE));
    let http = reqwest::Client::new();
    let answer = http
        .put(format!("{}/config/{subject}", schema_registry_url()))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"compatibility":"BACKWARD"}"#)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);

    // Oldest first, as they were written over time: history files by their version number.
    let mut history: Vec<SchemaInfo> = known_schemas()
        .unwrap()
        .into_iter()
        .filter(|s| s.record == record)
        .collect();
    history.sort_by_key(|s| (s.current, s.file));
    assert!(history.len() >= 2, "{record} has a history");
    let mut ids = Vec::new();
    for schema in &history {
        let id = registry
            .register(&subject, schema.avsc)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", schema.file));
        ids.push(id);
    }
    let distinct: BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), history.len(), "one id per schema: {ids:?}");
    let versions: Vec<u32> = registry_get(&format!("/subjects/{subject}/versions")).await;
    assert_eq!(versions.len(), history.len(), "{versions:?}");
    // Registering the current schema again is a no-op with the same id.
    let current = history.last().unwrap();
    assert_eq!(
        registry.register(&subject, current.avsc).await.unwrap(),
        *ids.last().unwrap()
    );

    // A new field without a default cannot read the old messages: refused, naming the subject.
    let mut incompatible: Value = serde_json::from_str(current.avsc).unwrap();
    incompatible["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "added_without_default", "type": "string"}));
    let error = registry
        .register(&subject, &incompatible.to_string())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&subject), "{error}");
    assert!(error.contains("409"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafkas_avro_deserializer_reads_every_version_equal_to_the_file() {
    let file = Release::load(ICS_17_1).unwrap();
    let topics = Topics::new("registry_outside");
    import(&topics, ICS_17_1, true).await;
    let messages = topics.object_records().await.unwrap().len();

    let out = tempfile::NamedTempFile::new().unwrap();
    let out_path = out.path().display().to_string();
    let output = python::run(
        "python",
        &[
            "tests/python/registry_consumer.py",
            &kafka_brokers(),
            &topics.objects,
            &schema_registry_url(),
            &out_path,
        ],
        &[],
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    assert!(output.success, "{}: {}", output.status, output.text);

    let lines: Vec<Value> = std::fs::read_to_string(out.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), messages, "one line per message");
    assert!(
        lines.iter().all(|l| l["schema_id"].is_u64()),
        "every message is registry-framed"
    );
    let read: BTreeMap<(String, String), &Value> = lines
        .iter()
        .filter(|l| !l["object"].is_null())
        .map(|l| {
            let record = &l["record"];
            let key = (
                record["object_id"].as_str().unwrap().to_owned(),
                record["version"].as_str().unwrap().to_owned(),
            );
            (key, &l["object"])
        })
        .collect();
    let expected = file.by_version();
    assert_eq!(
        read.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, object) in &expected {
        assert_eq!(read[key], *object, "{key:?}");
    }
}

/// Several ingest processes starting at once on fresh topics register the same schema texts
/// under different subjects at the same moment, which Apicurio's storage races (500, or 409
/// "already exists"): every registration still answers the id the subject holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_schema_under_fresh_subjects_all_succeed() {
    let registry = registry();
    let schema = registry::current_schemas()
        .into_iter()
        .find(|s| !s.dead_letter)
        .expect("an event schema");
    let subjects: Vec<String> = (0..12)
        .map(|i| {
            registry::subject(
                &taxiway_tests::unique_name(&format!("concurrent_{i}")),
                schema.full_name,
            )
        })
        .collect();
    let ids = futures::future::join_all(
        subjects
            .iter()
            .map(|subject| registry.register(subject, schema.avsc)),
    )
    .await;
    for (subject, id) in subjects.iter().zip(ids) {
        let id = id.unwrap_or_else(|e| panic!("{subject}: {e}"));
        let latest: Value = registry_get(&format!("/subjects/{subject}/versions/latest")).await;
        assert_eq!(latest["id"], id, "{subject}: {latest}");
    }
}
