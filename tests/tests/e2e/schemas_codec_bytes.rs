//! The codec's bytes: the header fingerprint is CRC-64-AVRO of the canonical form (and the docs
//! list every one), the version writer writes what apache-avro writes, and registry framing
//! carries the same body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use taxiway_tests::fixtures;

use crate::schemas_codec_events::{all_events, apache_avro_message, dead_letter};
use apache_avro::Schema;
use schemas::codec::HEADER_LEN;
use schemas::stix::validate_object;
use schemas::{
    Error, Event, ObjectVersionAdded, Source, SourceKind, decode_event, encode_dead_letter,
    encode_event, encode_event_into, known_schemas,
};

/// CRC-64-AVRO exactly as the Avro specification's "Schema Fingerprints" section gives it,
/// written here again so the test does not depend on the code under test.
fn rabin_fingerprint(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let mut table = [0u64; 256];
    for (i, entry) in table.iter_mut().enumerate() {
        let mut fp = i as u64;
        for _ in 0..8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
        }
        *entry = fp;
    }
    bytes.iter().fold(EMPTY, |fp, &b| {
        (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize]
    })
}

#[test]
fn rabin_reference_matches_the_specification_test_data() {
    // The Avro project's share/test/data/schema-tests.txt.
    assert_eq!(
        rabin_fingerprint(br#""null""#) as i64,
        7_195_948_357_588_979_594
    );
    assert_eq!(
        rabin_fingerprint(br#""long""#) as i64,
        -3_434_872_931_120_570_953
    );
}

/// The Parsing Canonical Form of `CollectionUpserted.avsc`, written out by hand from the
/// specification's rules (logicalType stripped, `{"type":"long"}` reduced to `"long"`).
const COLLECTION_UPSERTED_PCF: &str = concat!(
    r#"{"name":"io.taxiway.events.CollectionUpserted","type":"record","fields":["#,
    r#"{"name":"collection_id","type":"string"},{"name":"title","type":"string"},"#,
    r#"{"name":"description","type":["null","string"]},{"name":"alias","type":["null","string"]},"#,
    r#"{"name":"media_types","type":{"type":"array","items":"string"}},"#,
    r#"{"name":"updated_at","type":"long"},"#,
    r#"{"name":"source","type":{"name":"io.taxiway.events.Source","type":"record","fields":["#,
    r#"{"name":"kind","type":{"name":"io.taxiway.events.SourceKind","type":"enum","symbols":["BUNDLE","WORKBENCH"]}},"#,
    r#"{"name":"uri","type":"string"},{"name":"sha256","type":["null","string"]},"#,
    r#"{"name":"position","type":["null","long"]}]}},"#,
    r#"{"name":"ingest_run_id","type":"string"},"#,
    r#"{"name":"released","type":"boolean"}]}"#,
);

#[test]
fn header_fingerprint_is_crc64_avro_of_the_canonical_form() {
    let mut messages: Vec<(&str, Vec<u8>)> = all_events()
        .iter()
        .map(|e| {
            let name = match e {
                Event::Collection(_) => "CollectionUpserted",
                Event::ObjectVersion(_) => "ObjectVersionAdded",
                Event::Release(_) => "ReleasePublished",
            };
            (name, encode_event(e).unwrap())
        })
        .collect();
    messages.push(("DeadLetter", encode_dead_letter(&dead_letter()).unwrap()));
    for (record, bytes) in messages {
        let info = known_schemas()
            .unwrap()
            .into_iter()
            .find(|s| s.current && s.record == record)
            .unwrap();
        // apache-avro's canonical form, corrected for its one known deviation from the
        // specification (it keeps logical types as `{"type":"long"}`).
        let pcf = Schema::parse_str(info.avsc)
            .unwrap()
            .canonical_form()
            .replace(r#"{"type":"long"}"#, r#""long""#);
        assert_eq!(info.canonical_form, pcf, "{record}");
        if record == "CollectionUpserted" {
            assert_eq!(pcf, COLLECTION_UPSERTED_PCF);
        }
        let expected = rabin_fingerprint(pcf.as_bytes()).to_le_bytes();
        assert_eq!(bytes[2..10], expected, "{record}: {pcf}");
    }
}

/// Prints the fingerprint table of docs/events.md:
/// `cargo test -p taxiway-tests --test e2e print_fingerprints -- --nocapture`.
#[test]
fn print_fingerprints() {
    for s in known_schemas().unwrap() {
        let header: String = s.fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        println!(
            "| `{}` | {} | `{header}` | `0x{:016x}` |",
            s.file,
            if s.current { "current" } else { "history" },
            s.fingerprint_u64()
        );
    }
}

#[test]
fn docs_list_every_fingerprint() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md");
    let docs = std::fs::read_to_string(path).unwrap();
    for s in known_schemas().unwrap() {
        let header: String = s.fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        let row = format!("`{}` |", s.file);
        let line = docs
            .lines()
            .find(|l| l.contains(&row))
            .unwrap_or_else(|| panic!("docs/events.md has no row for {}", s.file));
        assert!(
            line.contains(&header),
            "docs/events.md: stale fingerprint for {}",
            s.file
        );
    }
}

/// Every object of real bundles, as the events ingest publishes (with and without a
/// correction, from a file and from a Workbench): the version writer's bytes are
/// apache-avro's.
#[test]
fn version_writer_writes_what_apache_avro_writes_for_real_objects() {
    for (name, (bundle_spec_version, objects)) in [
        (
            "ics-attack-18.1.json.zst",
            fixtures::attack_bundle("ics-attack-18.1.json.zst"),
        ),
        ("ICS 18.1 as STIX 2.0", fixtures::ics_stix_2_0()),
    ] {
        let mut ours = Vec::new();
        for (position, raw) in objects.iter().enumerate() {
            let meta = validate_object(raw, bundle_spec_version.as_deref()).unwrap();
            let workbench = position % 2 == 1;
            let event = ObjectVersionAdded {
                collection_id: "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09"
                    .to_owned(),
                object_id: meta.id,
                stix_type: meta.stix_type,
                spec_version: meta.spec_version.as_str().to_owned(),
                version: meta.version.to_string(),
                version_micros: meta.version.as_micros(),
                date_added: 1_763_942_400_000_000 + position as i64,
                content_sha256: meta.content_sha256,
                object_json: raw.clone(),
                source: Source {
                    kind: if workbench {
                        SourceKind::Workbench
                    } else {
                        SourceKind::Bundle
                    },
                    uri: name.to_owned(),
                    sha256: (!workbench).then(|| "ab".repeat(32)),
                    position: (!workbench).then_some(position as i64),
                },
                ingest_run_id: "run".to_owned(),
                correction: position % 3 == 0,
                supersedes_date_added: (position % 3 == 0).then_some(position as i64),
                archival: position % 5 == 0,
            };
            ours.clear();
            encode_event_into(&Event::ObjectVersion(event.clone()), &mut ours).unwrap();
            let avro = apache_avro_message("avro/ObjectVersionAdded.avsc", &event);
            assert_eq!(ours, avro, "{name}: {}", event.object_id);
        }
    }
}
/// The ids a registry would give the current schemas (any distinct numbers do).
fn registry_ids() -> schemas::registry::SchemaIds {
    let mut ids = schemas::registry::SchemaIds::default();
    for (n, schema) in schemas::registry::current_schemas().iter().enumerate() {
        ids.write_with(schema.full_name, 100 + n as u32, schema.avsc)
            .unwrap();
    }
    ids
}

#[test]
fn registry_framing_carries_the_same_body_after_a_five_byte_header() {
    let ids = registry_ids();
    let framing = schemas::codec::Framing::Registry(ids.clone());
    for event in all_events() {
        let single = encode_event(&event).unwrap();
        let mut framed = Vec::new();
        schemas::encode_event_framed(&event, &framing, &mut framed).unwrap();
        assert_eq!(framed[0], schemas::codec::REGISTRY_MAGIC);
        assert_eq!(framed[5..], single[HEADER_LEN..], "same Avro body");
        let id = schemas::codec::schema_id(&framed).unwrap();
        assert!((100..104).contains(&id));
        assert_eq!(schemas::decode_event_with(&framed, &ids).unwrap(), event);
        // The same reader takes the single-object message too.
        assert_eq!(schemas::decode_event_with(&single, &ids).unwrap(), event);
        // Without the ids the message names the id it could not resolve.
        assert!(matches!(
            decode_event(&framed),
            Err(Error::UnknownSchemaId(i)) if i == id
        ));
    }
    let letter = dead_letter();
    let mut framed = Vec::new();
    schemas::encode_dead_letter_framed(&letter, &framing, &mut framed).unwrap();
    assert_eq!(
        schemas::decode_dead_letter_with(&framed, &ids).unwrap(),
        letter
    );
    // A dead letter is not an objects-topic event, whatever its framing.
    assert!(matches!(
        schemas::decode_event_with(&framed, &ids),
        Err(Error::WrongRecord { .. })
    ));
}

#[test]
fn an_id_the_registry_gave_another_schema_is_refused() {
    let mut ids = registry_ids();
    let other = r#"{"type":"record","name":"Other","namespace":"elsewhere","fields":[{"name":"a","type":"long"}]}"#;
    assert!(ids.learn(7, other).is_err());
    let mut message = vec![schemas::codec::REGISTRY_MAGIC];
    message.extend_from_slice(&7u32.to_be_bytes());
    message.push(2);
    let error = schemas::decode_event_with(&message, &ids).unwrap_err();
    assert!(
        matches!(error, Error::RefusedSchemaId { id: 7, .. }),
        "{error}"
    );
}
