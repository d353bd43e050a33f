//! Poison on the objects topic, one message of every kind the projector can meet, between two
//! real imports in the collection's partition: each is dead-lettered once with a reason naming
//! its problem and counted by kind, the projector keeps going, and the release imported after
//! the poison is served exactly as its file holds it.
//!
//! The kinds follow the projector's two gates: `schemas::decode_event` (header, fingerprint,
//! Avro body, record kind) and `projector::check` (object JSON against the event's fields,
//! a release chunk's fields). One more message is valid but names versions nobody published:
//! it is kept, never served as objects, and changes nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ingest::config::ImportConfig;
use projector::config::Command;
use rdkafka::producer::FutureRecord;
use reqwest::StatusCode;
use schemas::codec::HEADER_LEN;
use schemas::{
    CollectionUpserted, DeadLetter, Event, ObjectVersionAdded, ReleaseMember, ReleasePublished,
    Timestamp,
};
use serde_json::Value;
use taxiway_tests::api::{Api, Expected, check_objects};
use taxiway_tests::fixtures::Release;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::{Deadline, projection};

/// What the projector must do with a message.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Dead-lettered as `undecodable`, the reason containing this.
    Undecodable(&'static str),
    /// Dead-lettered as `invalid`, the reason containing this.
    Invalid(&'static str),
    /// Applied.
    Applied,
}

/// One message to publish: a name (its key is `poison/<name>`), its payload (`None`: a
/// tombstone), and what must happen.
struct Poison {
    name: &'static str,
    payload: Option<Vec<u8>>,
    expect: Expect,
}

fn encode(event: impl Into<Event>) -> Vec<u8> {
    schemas::encode_event(&event.into()).unwrap()
}

/// The header and the first half of the body: every field after the cut is missing.
fn truncated(bytes: &[u8]) -> Vec<u8> {
    bytes[..HEADER_LEN + (bytes.len() - HEADER_LEN) / 2].to_vec()
}

/// `json` with `field` set to `value`.
fn with_field(json: &str, field: &str, value: Value) -> String {
    let mut object: Value = serde_json::from_str(json).unwrap();
    object[field] = value;
    object.to_string()
}

/// Every kind of poison, made from a valid version, collection and release chunk of the topic.
fn poisons(
    version: &ObjectVersionAdded,
    collection: &CollectionUpserted,
    release: &ReleasePublished,
) -> Vec<Poison> {
    use Expect::{Applied, Invalid, Undecodable};
    let good = encode(version.clone());
    let object = |f: &dyn Fn(&mut ObjectVersionAdded)| {
        let mut v = version.clone();
        f(&mut v);
        Some(encode(v))
    };
    // Each broken release gets its own label, so one wrongly applied shows as its own release.
    let chunk = |label: &str, f: &dyn Fn(&mut ReleasePublished)| {
        let mut r = release.clone();
        r.label = format!("poison-{label}");
        f(&mut r);
        Some(encode(r))
    };
    let other_uuid = "attack-pattern--00000000-0000-4000-8000-0000000000aa";
    let dead_letter = schemas::encode_dead_letter(&DeadLetter {
        stage: "ingest".into(),
        reason: "a dead letter published to the wrong topic".into(),
        source: None,
        original_topic: None,
        original_partition: None,
        original_offset: None,
        original_key: None,
        payload: None,
        at: 0,
    })
    .unwrap();
    let mut unknown_fingerprint = good.clone();
    unknown_fingerprint[2..HEADER_LEN].copy_from_slice(&[0xff; 8]);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"tail");
    // The ObjectVersionAdded header, then a string length of ~2^34: a corrupt length prefix
    // must not make the decoder reserve it.
    let mut huge_length = good[..HEADER_LEN].to_vec();
    huge_length.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x7f]);
    let phantom_at = Timestamp::from_micros(release.release_timestamp - 86_400_000_000 * 365);
    let phantom = {
        let mut r = release.clone();
        r.label = "0.1-phantom".into();
        r.release_timestamp = phantom_at.as_micros();
        r.release_version = phantom_at.to_string();
        r.chunk_index = 0;
        r.chunk_count = 1;
        r.member_count = 1;
        r.members = vec![ReleaseMember::new(other_uuid, phantom_at, [7; 32])];
        r
    };
    vec![
        // Not an event at all.
        Poison {
            name: "empty-payload",
            payload: Some(Vec::new()),
            expect: Undecodable("too short"),
        },
        Poison {
            name: "tombstone",
            payload: None,
            expect: Undecodable("too short"),
        },
        Poison {
            name: "garbage",
            // JSON produced to the topic by mistake: neither framing.
            payload: Some(br#"{"definitely": "not avro"}"#.to_vec()),
            expect: Undecodable("neither an Avro single-object message"),
        },
        Poison {
            name: "unknown-fingerprint",
            payload: Some(unknown_fingerprint),
            expect: Undecodable("unknown writer schema fingerprint ffffffffffffffff"),
        },
        Poison {
            name: "header-without-body",
            payload: Some(good[..HEADER_LEN].to_vec()),
            expect: Undecodable("Avro decode"),
        },
        Poison {
            name: "huge-length-prefix",
            payload: Some(huge_length),
            expect: Undecodable("Avro decode"),
        },
        Poison {
            name: "truncated-object-version",
            payload: Some(truncated(&good)),
            expect: Undecodable("Avro decode"),
        },
        Poison {
            name: "truncated-collection",
            payload: Some(truncated(&encode(collection.clone()))),
            expect: Undecodable("Avro decode"),
        },
        Poison {
            name: "truncated-release",
            payload: Some(truncated(&encode(release.clone()))),
            expect: Undecodable("Avro decode"),
        },
        Poison {
            name: "trailing-bytes",
            payload: Some(trailing),
            expect: Undecodable("4 trailing bytes"),
        },
        Poison {
            name: "dead-letter-record",
            payload: Some(dead_letter),
            expect: Undecodable("expected an objects-topic event"),
        },
        // Decodes, but its object is not what the event says, or not STIX.
        Poison {
            name: "object-json-not-json",
            payload: object(&|v| v.object_json = "{\"type\": \"attack-pattern\",".into()),
            expect: Invalid("object_json is not valid STIX: not valid JSON"),
        },
        Poison {
            name: "object-json-an-array",
            payload: object(&|v| v.object_json = "[1, 2, 3]".into()),
            expect: Invalid("not a JSON object but an array"),
        },
        Poison {
            name: "object-json-not-stix",
            payload: object(&|v| v.object_json = r#"{"hello": "world"}"#.into()),
            expect: Invalid("object_json is not valid STIX: type: missing"),
        },
        Poison {
            name: "bad-id",
            payload: object(&|v| {
                v.object_id = "attack-pattern--not-a-uuid".into();
                v.object_json =
                    with_field(&v.object_json, "id", "attack-pattern--not-a-uuid".into());
            }),
            expect: Invalid("not a UUID"),
        },
        Poison {
            name: "bad-type",
            payload: object(&|v| v.object_json = with_field(&v.object_json, "type", "AP".into())),
            expect: Invalid("must be 3 to 250 characters long"),
        },
        Poison {
            name: "duplicate-field",
            payload: object(&|v| {
                v.object_json = format!(r#"{{"id": "{other_uuid}", {}"#, &v.object_json[1..]);
            }),
            expect: Invalid("id: appears more than once"),
        },
        Poison {
            name: "bad-timestamp",
            payload: object(&|v| {
                v.object_json = with_field(&v.object_json, "modified", "yesterday".into());
            }),
            expect: Invalid("modified \"yesterday\""),
        },
        Poison {
            name: "id-mismatch",
            payload: object(&|v| v.object_id = other_uuid.into()),
            expect: Invalid("≠ object_id"),
        },
        Poison {
            name: "type-mismatch",
            payload: object(&|v| v.stix_type = "malware".into()),
            expect: Invalid("≠ stix_type"),
        },
        Poison {
            name: "spec-version-mismatch",
            payload: object(&|v| v.spec_version = "2.0".into()),
            expect: Invalid("≠ event spec_version \"2.0\""),
        },
        Poison {
            name: "version-mismatch",
            payload: object(&|v| {
                let later = Timestamp::from_micros(v.version_micros + 1_000);
                v.version = later.to_string();
                v.version_micros = later.as_micros();
            }),
            expect: Invalid("≠ event version"),
        },
        Poison {
            name: "version-micros-mismatch",
            payload: object(&|v| v.version_micros += 1),
            expect: Invalid("≠ event version"),
        },
        Poison {
            name: "object-without-collection",
            payload: object(&|v| v.collection_id.clear()),
            expect: Invalid("collection_id is empty"),
        },
        Poison {
            name: "collection-id-over-64-kib",
            payload: object(&|v| v.collection_id = "c".repeat(70_000)),
            expect: Invalid("collection_id of 70000 bytes"),
        },
        Poison {
            name: "collection-without-id",
            payload: Some(encode(CollectionUpserted {
                collection_id: String::new(),
                ..collection.clone()
            })),
            expect: Invalid("collection_id is empty"),
        },
        // Release chunks whose fields do not hold together.
        Poison {
            name: "release-zero-chunks",
            payload: chunk("zero-chunks", &|r| r.chunk_count = 0),
            expect: Invalid("chunk_index 0 is not within chunk_count 0"),
        },
        Poison {
            name: "release-chunk-past-count",
            payload: chunk("past-count", &|r| r.chunk_index = r.chunk_count),
            expect: Invalid("is not within chunk_count"),
        },
        Poison {
            name: "release-negative-chunk",
            payload: chunk("negative", &|r| r.chunk_index = -1),
            expect: Invalid("chunk_index -1"),
        },
        Poison {
            name: "release-member-count-short",
            payload: chunk("member-count", &|r| r.member_count = 1),
            expect: Invalid("member_count 1 is less than"),
        },
        Poison {
            name: "release-version-mismatch",
            payload: chunk("version", &|r| {
                r.release_version = "2020-01-01T00:00:00.000Z".into()
            }),
            expect: Invalid("release_version \"2020-01-01T00:00:00.000Z\""),
        },
        Poison {
            name: "release-without-label",
            payload: chunk("", &|r| r.label.clear()),
            expect: Invalid("label is empty"),
        },
        Poison {
            name: "release-label-over-64-kib",
            payload: chunk("", &|r| r.label = "l".repeat(70_000)),
            expect: Invalid("label of 70000 bytes"),
        },
        Poison {
            name: "release-member-bad-id",
            payload: chunk("member-id", &|r| r.members[0].object_id = "nope".into()),
            expect: Invalid("member id \"nope\""),
        },
        Poison {
            name: "release-member-version-mismatch",
            payload: chunk("member-version", &|r| r.members[0].version_micros += 1),
            expect: Invalid("≠ version_micros"),
        },
        // Valid, naming a version nobody published: kept (its members may come later, events
        // arrive in any order), never served as an object.
        Poison {
            name: "release-of-unknown-versions",
            payload: Some(encode(phantom)),
            expect: Applied,
        },
    ]
}

fn key_of(name: &str) -> Vec<u8> {
    format!("poison/{name}").into_bytes()
}

/// Objects served by `path` (no limit: one page), 200 expected.
async fn served(api: &Api, path: &str) -> Vec<Value> {
    api.page(path, "objects").await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_of_every_kind_is_dead_lettered_with_its_reason_and_later_releases_served() {
    let deadline = Deadline::after(Duration::from_secs(420));
    let topics = Topics::new("proj_poison_kinds");
    let before = Release::load("ics-attack-17.1.json.zst").unwrap();
    let after = Release::load("ics-attack-18.0.json.zst").unwrap();
    let path = taxiway_tests::fixtures::path("ics-attack-17.1.json.zst");
    topics.ingest(ImportConfig::new([&path])).await.unwrap();
    let events = topics.events().await.unwrap();
    let partition = events[0].0.partition;
    let version = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::ObjectVersion(v) if v.stix_type == "attack-pattern" => Some(v.clone()),
            _ => None,
        })
        .unwrap();
    let collection = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Collection(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    let release = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Release(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert!(events.iter().all(|(r, _)| r.partition == partition));

    let poisons = poisons(&version, &collection, &release);
    let producer = taxiway_tests::topic::producer().unwrap();
    for p in &poisons {
        let key = key_of(p.name);
        let mut record = FutureRecord::to(&topics.objects)
            .partition(partition)
            .key(&key);
        if let Some(payload) = &p.payload {
            record = record.payload(payload);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let path = taxiway_tests::fixtures::path("ics-attack-18.0.json.zst");
    topics.ingest(ImportConfig::new([&path])).await.unwrap();
    let records = topics.object_records().await.unwrap();
    let real: Vec<Event> = records
        .iter()
        .filter(|r| !r.key.starts_with(b"poison/"))
        .map(|r| schemas::decode_event(&r.payload).unwrap())
        .collect();
    assert_eq!(records.len(), real.len() + poisons.len());

    let control = projection::control_keyspace("proj_poison_kinds");
    let running = projection::start(&topics, &control, Command::Run).unwrap();
    projection::wait_for_applied(&running, records.len() as u64, deadline)
        .await
        .unwrap();
    assert!(!running.task.is_finished(), "the projector stopped");

    // Counted by kind, and nothing else dead-lettered or lost.
    let count = |f: fn(&Expect) -> bool| poisons.iter().filter(|p| f(&p.expect)).count() as u64;
    let undecodable = count(|e| matches!(e, Expect::Undecodable(_)));
    let invalid = count(|e| matches!(e, Expect::Invalid(_)));
    let dead = |reason: &str| {
        running
            .metrics
            .dead_letters
            .with_label_values(&[reason])
            .get()
    };
    assert_eq!(
        (dead("undecodable"), dead("invalid")),
        (undecodable, invalid)
    );
    assert_eq!(
        running.applied(),
        records.len() as u64 - undecodable - invalid
    );

    // One dead letter per poison message, with the reason, the raw message and where it was.
    let letters = topics.dead_letters().await.unwrap();
    let ours: Vec<&DeadLetter> = letters.iter().filter(|l| l.stage == "projector").collect();
    assert_eq!(ours.len() as u64, undecodable + invalid, "{ours:#?}");
    let offset_of: BTreeMap<Vec<u8>, i64> =
        records.iter().map(|r| (r.key.clone(), r.offset)).collect();
    for p in &poisons {
        let key = key_of(p.name);
        let found: Vec<&&DeadLetter> = ours
            .iter()
            .filter(|l| l.original_key.as_deref() == Some(&key[..]))
            .collect();
        let wanted = match p.expect {
            Expect::Applied => {
                assert!(found.is_empty(), "{}: dead-lettered: {found:?}", p.name);
                continue;
            }
            Expect::Undecodable(reason) => ("undecodable: ", reason),
            Expect::Invalid(reason) => ("", reason),
        };
        assert_eq!(found.len(), 1, "{}: {found:?}", p.name);
        let letter = found[0];
        assert!(
            letter.reason.starts_with(wanted.0) && letter.reason.contains(wanted.1),
            "{}: {wanted:?} in {:?}",
            p.name,
            letter.reason
        );
        assert_eq!(
            letter.payload.as_deref(),
            Some(p.payload.as_deref().unwrap_or_default()),
            "{}",
            p.name
        );
        assert_eq!(
            letter.original_topic.as_deref(),
            Some(topics.objects.as_str())
        );
        assert_eq!(letter.original_partition, Some(partition));
        assert_eq!(letter.original_offset, offset_of.get(&key).copied());
        println!("{:<32} → {}", p.name, letter.reason);
    }

    // What is stored: the real releases complete with their files' members, the release of
    // unknown versions kept as sent, no broken chunk's release at all.
    let session = projection::session().await.unwrap();
    let (_, keyspace) = projection::active(&session, &control)
        .await
        .unwrap()
        .unwrap();
    let ics = before.collection_id();
    let stored = projection::releases(&session, &keyspace, &ics)
        .await
        .unwrap();
    let labels: Vec<&str> = stored.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["18.0", "17.1", "0.1-phantom"], "{stored:?}");
    assert!(stored.iter().all(|r| r.complete));
    assert_eq!(stored[0].members, after.versions());
    assert_eq!(stored[1].members, before.versions());
    assert_eq!(stored[2].members.len(), 1);

    // What is served, against the files: the default root is 18.0, each pinned root its file,
    // the history root both; the release of unknown versions serves no object.
    let expected = projection::final_revisions(&real);
    let api = Api::start(&control).await.unwrap();
    api.wait_for_revisions(&expected, deadline).await.unwrap();
    let history = Expected::new(vec![&before, &after]).history();
    for (path, release) in [
        (format!("/api/v21/collections/{ics}/objects/"), &after),
        (
            format!("/api/v21/attack-18.0/collections/{ics}/objects/"),
            &after,
        ),
        (
            format!("/api/v21/attack-17.1/collections/{ics}/objects/"),
            &before,
        ),
    ] {
        let objects = served(&api, &path).await;
        check_objects(&path, &objects, &release.versions(), &release.by_version()).unwrap();
    }
    let path = format!("/api/v21/history/collections/{ics}/objects/?match[version]=all");
    let keys: BTreeSet<_> = history.keys().cloned().collect();
    check_objects(&path, &served(&api, &path).await, &keys, &history).unwrap();
    let path = format!("/api/v21/attack-0.1-phantom/collections/{ics}/objects/");
    let reply = api.get(&path).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["objects"].as_array().map(Vec::len), Some(0));
    let discovery = api.get("/taxii2/").await.unwrap().json();
    let roots: BTreeSet<&str> = discovery["api_roots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        roots.iter().all(|r| !r.contains("poison")),
        "a broken chunk made a root: {roots:?}"
    );
    println!(
        "{} poison messages: {undecodable} undecodable and {invalid} invalid dead-lettered, 1 \
         valid release of unknown versions kept; 18.0 served exactly after them",
        poisons.len()
    );

    api.stop().await.unwrap();
    running.stop().await.unwrap();
    projection::drop_keyspaces(&session, &control)
        .await
        .unwrap();
    topics.delete().await.unwrap();
}
