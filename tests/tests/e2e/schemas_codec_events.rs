//! The Avro codec's events: every type round trips, old schemas still decode, records are not
//! mixed up, bad input is refused, and (property-tested) any event encodes and decodes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use apache_avro::Schema;
use apache_avro::writer::datum::GenericDatumWriter;
use proptest::prelude::*;
use schemas::codec::{HEADER_LEN, MARKER};
use schemas::stix::{Timestamp, content_digest};
use schemas::{
    CollectionUpserted, DeadLetter, Error, Event, ObjectVersionAdded, ReleaseMember,
    ReleasePublished, Source, SourceKind, chunk_release, decode_dead_letter, decode_event,
    encode_dead_letter, encode_event, encode_event_into, known_schemas,
};
use serde::Serialize;

/// reference the codec's own writers are checked against.
pub(crate) fn apache_avro_message(file: &str, value: &impl Serialize) -> Vec<u8> {
    let info = known_schemas()
        .unwrap()
        .into_iter()
        .find(|s| s.file == file)
        .unwrap();
    let schema = Schema::parse_str(info.avsc).unwrap();
    let mut bytes = MARKER.to_vec();
    bytes.extend_from_slice(&info.fingerprint);
    GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_ser(&mut bytes, value)
        .unwrap();
    bytes
}

pub(crate) fn source() -> Source {
    Source {
        kind: SourceKind::Bundle,
        uri: "/data/ics-attack-18.1.json".into(),
        sha256: Some("a7c0106492843485340710be9e841c1584d8fc6da8950e7097db0e7b5bc9f164".into()),
        position: Some(17),
    }
}

fn object_version() -> ObjectVersionAdded {
    let json = r#"{"type":"malware","id":"malware--00000000-0000-4000-8000-000000000001","name":"é \"x\""}"#;
    ObjectVersionAdded {
        collection_id: "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09".into(),
        object_id: "malware--00000000-0000-4000-8000-000000000001".into(),
        stix_type: "malware".into(),
        spec_version: "2.1".into(),
        version: "2025-04-15T19:58:01.218Z".into(),
        version_micros: 1_744_747_081_218_000,
        date_added: 1_760_000_000_000_001,
        content_sha256: content_digest(json).unwrap(),
        object_json: json.into(),
        source: source(),
        ingest_run_id: "run-1".into(),
        correction: true,
        supersedes_date_added: Some(1_760_000_000_000_000),
        archival: false,
    }
}

pub(crate) fn all_events() -> Vec<Event> {
    vec![
        Event::Collection(CollectionUpserted {
            collection_id: "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09".into(),
            title: "ICS ATT&CK".into(),
            description: Some("Industrial control systems".into()),
            alias: None,
            media_types: vec!["application/stix+json;version=2.1".into()],
            updated_at: 1_760_000_000_000_000,
            source: Source {
                kind: SourceKind::Workbench,
                uri: "http://workbench/api/collections".into(),
                sha256: None,
                position: None,
            },
            ingest_run_id: "run-1".into(),
            released: true,
        }),
        Event::ObjectVersion(object_version()),
        Event::Release(
            chunk_release(
                "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09",
                "18.1",
                Timestamp::parse("2025-10-28T14:00:00.000Z").unwrap(),
                1_761_000_000_000_000,
                vec![ReleaseMember::new(
                    "malware--00000000-0000-4000-8000-000000000001",
                    Timestamp::from_micros(1_744_747_081_218_000),
                    [7; 32],
                )],
                &source(),
                "run-1",
            )
            .remove(0),
        ),
    ]
}

pub(crate) fn dead_letter() -> DeadLetter {
    DeadLetter {
        stage: "projector".into(),
        reason: "undecodable".into(),
        source: Some(source()),
        original_topic: Some("taxiway.objects".into()),
        original_partition: Some(3),
        original_offset: Some(1234),
        original_key: Some(b"c/o/v".to_vec()),
        payload: Some(vec![0, 1, 2, 0xC3, 0xFF]),
        at: 1_760_000_000_000_000,
    }
}

#[test]
fn every_event_type_round_trips() {
    for event in all_events() {
        let bytes = encode_event(&event).unwrap();
        assert_eq!(bytes[..2], MARKER);
        assert_eq!(decode_event(&bytes).unwrap(), event);
    }
}

#[test]
fn dead_letters_round_trip_with_and_without_optional_fields() {
    let full = dead_letter();
    assert_eq!(
        decode_dead_letter(&encode_dead_letter(&full).unwrap()).unwrap(),
        full
    );
    let empty = DeadLetter {
        stage: "ingest".into(),
        reason: "bad_id".into(),
        source: None,
        original_topic: None,
        original_partition: None,
        original_offset: None,
        original_key: None,
        payload: None,
        at: 0,
    };
    assert_eq!(
        decode_dead_letter(&encode_dead_letter(&empty).unwrap()).unwrap(),
        empty
    );
}

#[test]
fn records_are_not_mixed_up_between_topics() {
    let dl = encode_dead_letter(&dead_letter()).unwrap();
    assert!(matches!(
        decode_event(&dl),
        Err(Error::WrongRecord {
            found: "DeadLetter",
            ..
        })
    ));
    let ev = encode_event(&all_events()[0]).unwrap();
    assert!(matches!(
        decode_dead_letter(&ev),
        Err(Error::WrongRecord { .. })
    ));
}

#[test]
fn encode_into_appends_and_reuses_the_buffer() {
    let events = all_events();
    let mut buf = b"prefix".to_vec();
    encode_event_into(&events[1], &mut buf).unwrap();
    assert_eq!(&buf[..6], b"prefix");
    assert_eq!(decode_event(&buf[6..]).unwrap(), events[1]);
}

/// `ObjectVersionAdded` as schema version 1 wrote it: no `correction`.
#[derive(Serialize)]
struct ObjectVersionAddedV1 {
    collection_id: String,
    object_id: String,
    stix_type: String,
    spec_version: String,
    version: String,
    version_micros: i64,
    date_added: i64,
    #[serde(with = "apache_avro::serde::fixed")]
    content_sha256: [u8; 32],
    object_json: String,
    source: Source,
    ingest_run_id: String,
}

#[test]
fn v1_object_version_decodes_with_correction_false() {
    let current = object_version();
    let v1 = ObjectVersionAddedV1 {
        collection_id: current.collection_id.clone(),
        object_id: current.object_id.clone(),
        stix_type: current.stix_type.clone(),
        spec_version: current.spec_version.clone(),
        version: current.version.clone(),
        version_micros: current.version_micros,
        date_added: current.date_added,
        content_sha256: current.content_sha256,
        object_json: current.object_json.clone(),
        source: current.source.clone(),
        ingest_run_id: current.ingest_run_id.clone(),
    };
    let bytes = apache_avro_message("avro/history/ObjectVersionAdded.v1.avsc", &v1);
    let Event::ObjectVersion(decoded) = decode_event(&bytes).unwrap() else {
        panic!("not an ObjectVersionAdded");
    };
    assert_eq!(
        decoded,
        ObjectVersionAdded {
            correction: false,
            supersedes_date_added: None,
            ..current
        }
    );
}

#[test]
fn v2_object_version_decodes_without_supersedes() {
    /// `ObjectVersionAdded` as schema version 2 wrote it: no `supersedes_date_added`.
    #[derive(Serialize)]
    struct ObjectVersionAddedV2 {
        #[serde(flatten)]
        v1: ObjectVersionAddedV1,
        correction: bool,
    }
    let current = object_version();
    let v2 = ObjectVersionAddedV2 {
        v1: ObjectVersionAddedV1 {
            collection_id: current.collection_id.clone(),
            object_id: current.object_id.clone(),
            stix_type: current.stix_type.clone(),
            spec_version: current.spec_version.clone(),
            version: current.version.clone(),
            version_micros: current.version_micros,
            date_added: current.date_added,
            content_sha256: current.content_sha256,
            object_json: current.object_json.clone(),
            source: current.source.clone(),
            ingest_run_id: current.ingest_run_id.clone(),
        },
        correction: true,
    };
    let bytes = apache_avro_message("avro/history/ObjectVersionAdded.v2.avsc", &v2);
    let Event::ObjectVersion(decoded) = decode_event(&bytes).unwrap() else {
        panic!("not an ObjectVersionAdded");
    };
    assert_eq!(
        decoded,
        ObjectVersionAdded {
            supersedes_date_added: None,
            ..current
        }
    );
}

#[test]
fn every_object_version_schema_has_its_own_fingerprint_and_one_is_current() {
    let schemas = known_schemas().unwrap();
    let ova: Vec<_> = schemas
        .iter()
        .filter(|s| s.record == "ObjectVersionAdded")
        .collect();
    assert_eq!(ova.len(), 4);
    assert_ne!(ova[0].fingerprint, ova[1].fingerprint);
    assert_ne!(ova[1].fingerprint, ova[2].fingerprint);
    assert_ne!(ova[0].fingerprint, ova[2].fingerprint);
    assert_eq!(ova.iter().filter(|s| s.current).count(), 1);
    let mut all: Vec<_> = schemas.iter().map(|s| s.fingerprint).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), schemas.len(), "fingerprints are unique");
}

#[test]
fn bad_messages_are_rejected_with_clear_errors() {
    let good = encode_event(&all_events()[1]).unwrap();

    assert!(matches!(decode_event(&[]), Err(Error::TooShort { len: 0 })));
    assert!(matches!(
        decode_event(&good[..9]),
        Err(Error::TooShort { len: 9 })
    ));

    let mut wrong_marker = good.clone();
    wrong_marker[1] = 0x02;
    let err = decode_event(&wrong_marker).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadMarker {
                found: [0xC3, 0x02]
            }
        ),
        "{err}"
    );

    let mut unknown = good.clone();
    unknown[2..10].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
    let err = decode_event(&unknown).unwrap_err();
    assert!(
        matches!(err, Error::UnknownFingerprint(0x0123_4567_89ab_cdef)),
        "{err}"
    );
    assert!(err.to_string().contains("0123456789abcdef"));

    for cut in [HEADER_LEN, HEADER_LEN + 1, good.len() / 2, good.len() - 1] {
        let err = decode_event(&good[..cut]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Avro {
                    context: "decode",
                    ..
                }
            ),
            "cut at {cut}: {err}"
        );
    }

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        decode_event(&trailing),
        Err(Error::TrailingBytes(1))
    ));

    let garbage: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    assert!(decode_event(&garbage).is_err());
    let mut garbage_body = good[..HEADER_LEN].to_vec();
    garbage_body.extend_from_slice(&[0xFF; 64]);
    assert!(decode_event(&garbage_body).is_err());
}

#[test]
fn huge_length_prefix_fails_without_allocating_it() {
    let mut bytes = encode_event(&all_events()[0]).unwrap()[..HEADER_LEN].to_vec();
    // collection_id: a string whose zig-zag length claims ~2^62 bytes.
    bytes.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    assert!(matches!(decode_event(&bytes), Err(Error::Avro { .. })));
}

fn arb_source() -> impl Strategy<Value = Source> {
    (
        prop_oneof![Just(SourceKind::Bundle), Just(SourceKind::Workbench)],
        ".{0,40}",
        proptest::option::of("[0-9a-f]{64}"),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(kind, uri, sha256, position)| Source {
            kind,
            uri,
            sha256,
            position,
        })
}

fn arb_object_version() -> impl Strategy<Value = ObjectVersionAdded> {
    (
        (
            "[a-z0-9-]{1,60}",
            "[a-z-]{3,20}--[0-9a-f-]{36}",
            "[a-z-]{3,20}",
            "2\\.[01]",
        ),
        (
            any::<i64>(),
            any::<i64>(),
            any::<[u8; 32]>(),
            any::<String>(),
        ),
        (
            arb_source(),
            ".{0,20}",
            any::<bool>(),
            proptest::option::of(any::<i64>()),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (collection_id, object_id, stix_type, spec_version),
                (version_micros, date_added, content_sha256, object_json),
                (source, ingest_run_id, correction, supersedes_date_added, archival),
            )| ObjectVersionAdded {
                collection_id,
                object_id,
                stix_type,
                spec_version,
                version: Timestamp::from_micros(version_micros).to_string(),
                version_micros,
                date_added,
                content_sha256,
                object_json,
                source,
                ingest_run_id,
                correction,
                supersedes_date_added,
                archival,
            },
        )
}

fn arb_release() -> impl Strategy<Value = ReleasePublished> {
    (
        (
            ".{0,60}",
            ".{0,12}",
            any::<i64>(),
            any::<i32>(),
            any::<i32>(),
            any::<i64>(),
        ),
        proptest::collection::vec(
            (
                ".{0,60}",
                any::<i64>(),
                proptest::option::of(any::<[u8; 32]>()),
            )
                .prop_map(|(object_id, micros, content_sha256)| ReleaseMember {
                    object_id,
                    version: Timestamp::from_micros(micros).to_string(),
                    version_micros: micros,
                    content_sha256,
                }),
            0..40,
        ),
        (arb_source(), ".{0,20}"),
    )
        .prop_map(
            |(
                (collection_id, label, release_timestamp, chunk_index, chunk_count, member_count),
                members,
                (source, ingest_run_id),
            )| ReleasePublished {
                collection_id,
                label,
                release_timestamp,
                release_version: Timestamp::from_micros(release_timestamp).to_string(),
                chunk_index,
                chunk_count,
                member_count,
                members,
                source,
                ingest_run_id,
                date_added: release_timestamp.saturating_add(1),
            },
        )
}

proptest! {
    #[test]
    fn generated_object_versions_round_trip(event in arb_object_version()) {
        let event = Event::ObjectVersion(event);
        prop_assert_eq!(decode_event(&encode_event(&event).unwrap()).unwrap(), event);
    }

    #[test]
    fn version_writer_writes_what_apache_avro_writes(event in arb_object_version()) {
        let mut ours = Vec::new();
        encode_event_into(&Event::ObjectVersion(event.clone()), &mut ours).unwrap();
        prop_assert_eq!(ours, apache_avro_message("avro/ObjectVersionAdded.avsc", &event));
    }

    #[test]
    fn generated_releases_round_trip(event in arb_release()) {
        let event = Event::Release(event);
        prop_assert_eq!(decode_event(&encode_event(&event).unwrap()).unwrap(), event);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_event(&bytes);
        let _ = decode_dead_letter(&bytes);
    }

    #[test]
    fn corrupted_bodies_never_panic_the_decoder(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        record in 0usize..5,
    ) {
        let known = known_schemas().unwrap();
        let mut bytes = MARKER.to_vec();
        bytes.extend_from_slice(&known[record].fingerprint);
        bytes.extend_from_slice(&body);
        let _ = decode_event(&bytes);
        let _ = decode_dead_letter(&bytes);
    }
}
