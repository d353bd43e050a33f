//! Avro single-object encoding of the events: `C3 01`, the writer schema's CRC-64-AVRO fingerprint, the Avro body.
//!
//! Every schema this build has ever written (the current `.avsc` files and those kept under
//! `avro/history/`) is known by fingerprint, so old messages on the compacted topic keep decoding:
//! a message written with the current schema is deserialized straight from its bytes; one written
//! with an older schema is decoded with it and resolved to the current one by Avro's rules.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{CollectionUpserted, DeadLetter, Event, ObjectVersionAdded, ReleasePublished};
use crate::fingerprint;
use crate::version_writer;
use crate::{Error, Result};

/// The two marker bytes that start every single-object encoded message.
pub const MARKER: [u8; 2] = [0xC3, 0x01];

/// Marker plus 8-byte fingerprint.
pub const HEADER_LEN: usize = 10;

/// Upper bound for one allocation while decoding, so that a corrupt length prefix in a poison
/// message cannot make the decoder reserve gigabytes. Far above any real event (Kafka's default
/// message limit is 1 MB). Process-wide setting of apache-avro, set on first use of this module.
const MAX_ALLOCATION_BYTES: usize = 64 << 20;

/// The record types on Taxiway's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    CollectionUpserted,
    ObjectVersionAdded,
    ReleasePublished,
    DeadLetter,
}

impl Record {
    fn name(self) -> &'static str {
        match self {
            Record::CollectionUpserted => "CollectionUpserted",
            Record::ObjectVersionAdded => "ObjectVersionAdded",
            Record::ReleasePublished => "ReleasePublished",
            Record::DeadLetter => "DeadLetter",
        }
    }
}

/// `(record, path under schemas/, text, current?)` of every schema ever written.
const SCHEMA_FILES: [(Record, &str, &str, bool); 6] = [
    (
        Record::CollectionUpserted,
        "avro/CollectionUpserted.avsc",
        include_str!("../avro/CollectionUpserted.avsc"),
        true,
    ),
    (
        Record::ObjectVersionAdded,
        "avro/ObjectVersionAdded.avsc",
        include_str!("../avro/ObjectVersionAdded.avsc"),
        true,
    ),
    (
        Record::ObjectVersionAdded,
        "avro/history/ObjectVersionAdded.v2.avsc",
        include_str!("../avro/history/ObjectVersionAdded.v2.avsc"),
        false,
    ),
    (
        Record::ObjectVersionAdded,
        "avro/history/ObjectVersionAdded.v1.avsc",
        include_str!("../avro/history/ObjectVersionAdded.v1.avsc"),
        false,
    ),
    (
        Record::ReleasePublished,
        "avro/ReleasePublished.avsc",
        include_str!("../avro/ReleasePublished.avsc"),
        true,
    ),
    (
        Record::DeadLetter,
        "avro/DeadLetter.avsc",
        include_str!("../avro/DeadLetter.avsc"),
        true,
    ),
];

/// One known writer schema, for documentation, tooling and outside consumers.
#[derive(Debug, Clone)]
pub struct SchemaInfo {
    /// Record name without namespace, e.g. `ObjectVersionAdded`.
    pub record: &'static str,
    /// Path of the `.avsc` file under `schemas/`.
    pub file: &'static str,
    /// The `.avsc` text.
    pub avsc: &'static str,
    /// Whether this build writes with it (else it is a historical schema it still reads).
    pub current: bool,
    /// The Parsing Canonical Form the fingerprint is computed over.
    pub canonical_form: String,
    /// CRC-64-AVRO of the canonical form, as the 8 little-endian bytes of the message header.
    pub fingerprint: [u8; 8],
}

impl SchemaInfo {
    /// The fingerprint as a 64-bit number (the header holds it little-endian).
    pub fn fingerprint_u64(&self) -> u64 {
        u64::from_le_bytes(self.fingerprint)
    }
}

struct Known {
    info: SchemaInfo,
    record: Record,
    schema: Schema,
}

static SCHEMAS: LazyLock<Result<Vec<Known>, String>> = LazyLock::new(|| {
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
    SCHEMA_FILES
        .iter()
        .map(|&(record, file, avsc, current)| {
            let schema = Schema::parse_str(avsc).map_err(|e| format!("{file}: {e}"))?;
            // Not `schema.fingerprint::<Rabin>()`: see the `fingerprint` module for why.
            let canonical_form =
                fingerprint::parsing_canonical_form(avsc).map_err(|e| format!("{file}: {e}"))?;
            let info = SchemaInfo {
                record: record.name(),
                file,
                avsc,
                current,
                fingerprint: fingerprint::crc64_avro(canonical_form.as_bytes()).to_le_bytes(),
                canonical_form,
            };
            Ok(Known {
                info,
                record,
                schema,
            })
        })
        .collect()
});

/// How to read and (for current schemas) write one known schema.
struct Codec {
    record: Record,
    fingerprint: [u8; 8],
    /// Present for current schemas only.
    writer: Option<GenericDatumWriter<'static>>,
    reader: GenericDatumReader<'static>,
    /// Whether `reader` resolves to a different (current) reader schema.
    resolving: bool,
}

static CODECS: LazyLock<Result<Vec<Codec>, String>> = LazyLock::new(|| {
    let known: &'static [Known] = SCHEMAS.as_ref().map_err(Clone::clone)?;
    let avro = |file: &'static str| move |e: apache_avro::Error| format!("{file}: {e}");
    known
        .iter()
        .map(|k| {
            let file = k.info.file;
            let current = known
                .iter()
                .find(|c| c.record == k.record && c.info.current)
                .ok_or_else(|| format!("{file}: no current schema for {}", k.info.record))?;
            let (writer, reader, resolving) = if k.info.current {
                let writer = GenericDatumWriter::builder(&k.schema)
                    .build()
                    .map_err(avro(file))?;
                let reader = GenericDatumReader::builder(&k.schema)
                    .build()
                    .map_err(avro(file))?;
                (Some(writer), reader, false)
            } else {
                let reader = GenericDatumReader::builder(&k.schema)
                    .reader_schema(&current.schema)
                    .build()
                    .map_err(avro(file))?;
                (None, reader, true)
            };
            Ok(Codec {
                record: k.record,
                fingerprint: k.info.fingerprint,
                writer,
                reader,
                resolving,
            })
        })
        .collect()
});

fn codecs() -> Result<&'static [Codec]> {
    CODECS.as_deref().map_err(|e| Error::Schemas(e.clone()))
}

/// Every schema this build knows: current ones first in file order, history after its record.
pub fn known_schemas() -> Result<Vec<SchemaInfo>> {
    let known = SCHEMAS.as_ref().map_err(|e| Error::Schemas(e.clone()))?;
    Ok(known.iter().map(|k| k.info.clone()).collect())
}

fn avro_error(context: &'static str) -> impl FnOnce(apache_avro::Error) -> Error {
    move |source| Error::Avro {
        context,
        source: Box::new(source),
    }
}

/// The current schema's fingerprint and writer for `record`.
fn writer_of(record: Record) -> Result<([u8; 8], &'static GenericDatumWriter<'static>)> {
    codecs()?
        .iter()
        .find_map(|c| match &c.writer {
            Some(writer) if c.record == record => Some((c.fingerprint, writer)),
            _ => None,
        })
        .ok_or_else(|| Error::Schemas(format!("no writer for {}", record.name())))
}

fn write<T: Serialize>(record: Record, value: &T, out: &mut Vec<u8>) -> Result<()> {
    let (fingerprint, writer) = writer_of(record)?;
    let start = out.len();
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&fingerprint);
    writer.write_ser(out, value).map_err(|e| {
        out.truncate(start);
        avro_error("encode")(e)
    })?;
    Ok(())
}

/// Splits off the header and finds the writer schema.
fn header(bytes: &[u8]) -> Result<(&'static Codec, &[u8])> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::TooShort { len: bytes.len() });
    }
    let (head, body) = bytes.split_at(HEADER_LEN);
    if head[..2] != MARKER {
        return Err(Error::BadMarker {
            found: [head[0], head[1]],
        });
    }
    let codec = codecs()?
        .iter()
        .find(|c| c.fingerprint[..] == head[2..])
        .ok_or_else(|| {
            let mut fingerprint = [0u8; 8];
            fingerprint.copy_from_slice(&head[2..]);
            Error::UnknownFingerprint(u64::from_le_bytes(fingerprint))
        })?;
    Ok((codec, body))
}

fn read<T: DeserializeOwned>(codec: &Codec, body: &[u8]) -> Result<T> {
    let mut rest = body;
    let value = if codec.resolving {
        let value = codec
            .reader
            .read_value(&mut rest)
            .map_err(avro_error("decode"))?;
        apache_avro::from_value(&value).map_err(avro_error("decode"))?
    } else {
        codec
            .reader
            .read_deser(&mut rest)
            .map_err(avro_error("decode"))?
    };
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Encodes an objects-topic event as one single-object Avro message.
pub fn encode_event(event: &Event) -> Result<Vec<u8>> {
    let body_hint = match event {
        Event::ObjectVersion(e) => e.object_json.len() + 512,
        Event::Release(e) => e.members.len() * 100 + 512,
        Event::Collection(_) => 512,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body_hint);
    encode_event_into(event, &mut out)?;
    Ok(out)
}

/// Appends the encoded event to `out` (which a caller may reuse across events); on error `out`
/// is left as it was.
pub fn encode_event_into(event: &Event, out: &mut Vec<u8>) -> Result<()> {
    match event {
        Event::Collection(e) => write(Record::CollectionUpserted, e, out),
        Event::ObjectVersion(e) => write_object_version(e, out),
        Event::Release(e) => write(Record::ReleasePublished, e, out),
    }
}

/// Appends the encoded version event, given as a borrowed view, to `out`: the same bytes as
/// [`encode_event_into`] gives for its owned copy, without making that copy.
pub fn encode_object_version_into(
    event: &ObjectVersionAdded<&str>,
    out: &mut Vec<u8>,
) -> Result<()> {
    write_object_version(event, out)
}

/// Version events are written by [`version_writer`] (the hot path of an import), after the
/// same header apache-avro's path writes.
fn write_object_version<S: AsRef<str>>(
    event: &ObjectVersionAdded<S>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let (fingerprint, _) = writer_of(Record::ObjectVersionAdded)?;
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&fingerprint);
    version_writer::write_object_version(event, out);
    Ok(())
}

/// Decodes an objects-topic message written with any known schema.
pub fn decode_event(bytes: &[u8]) -> Result<Event> {
    let (codec, body) = header(bytes)?;
    Ok(match codec.record {
        Record::CollectionUpserted => Event::Collection(read::<CollectionUpserted>(codec, body)?),
        Record::ObjectVersionAdded => {
            Event::ObjectVersion(read::<ObjectVersionAdded>(codec, body)?)
        }
        Record::ReleasePublished => Event::Release(read::<ReleasePublished>(codec, body)?),
        Record::DeadLetter => {
            return Err(Error::WrongRecord {
                found: Record::DeadLetter.name(),
                expected: "an objects-topic event",
            });
        }
    })
}

/// Encodes a dead letter as one single-object Avro message.
pub fn encode_dead_letter(dead_letter: &DeadLetter) -> Result<Vec<u8>> {
    let payload = dead_letter.payload.as_ref().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(HEADER_LEN + payload + dead_letter.reason.len() + 512);
    encode_dead_letter_into(dead_letter, &mut out)?;
    Ok(out)
}

/// Appends the encoded dead letter to `out`; on error `out` is left as it was.
pub fn encode_dead_letter_into(dead_letter: &DeadLetter, out: &mut Vec<u8>) -> Result<()> {
    write(Record::DeadLetter, dead_letter, out)
}

/// Decodes a dead-letter-topic message.
pub fn decode_dead_letter(bytes: &[u8]) -> Result<DeadLetter> {
    let (codec, body) = header(bytes)?;
    if codec.record != Record::DeadLetter {
        return Err(Error::WrongRecord {
            found: codec.record.name(),
            expected: Record::DeadLetter.name(),
        });
    }
    read(codec, body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::{ReleaseMember, Source, SourceKind, chunk_release};
    use crate::stix::{Timestamp, content_digest};
    use proptest::prelude::*;

    fn source() -> Source {
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
        }
    }

    fn all_events() -> Vec<Event> {
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
                    )],
                    &source(),
                    "run-1",
                )
                .remove(0),
            ),
        ]
    }

    fn dead_letter() -> DeadLetter {
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

    fn v1_known() -> &'static Known {
        SCHEMAS
            .as_ref()
            .unwrap()
            .iter()
            .find(|k| k.info.file.contains("history/ObjectVersionAdded.v1"))
            .unwrap()
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
        let known = v1_known();
        let mut bytes = MARKER.to_vec();
        bytes.extend_from_slice(&known.info.fingerprint);
        GenericDatumWriter::builder(&known.schema)
            .build()
            .unwrap()
            .write_ser(&mut bytes, &v1)
            .unwrap();
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
        let known = SCHEMAS
            .as_ref()
            .unwrap()
            .iter()
            .find(|k| k.info.file.contains("history/ObjectVersionAdded.v2"))
            .unwrap();
        let mut bytes = MARKER.to_vec();
        bytes.extend_from_slice(&known.info.fingerprint);
        GenericDatumWriter::builder(&known.schema)
            .build()
            .unwrap()
            .write_ser(&mut bytes, &v2)
            .unwrap();
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
    fn v1_and_v2_fingerprints_differ_and_v2_is_current() {
        let schemas = known_schemas().unwrap();
        let ova: Vec<_> = schemas
            .iter()
            .filter(|s| s.record == "ObjectVersionAdded")
            .collect();
        assert_eq!(ova.len(), 3);
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
        r#"{"name":"ingest_run_id","type":"string"}]}"#,
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
            let known = SCHEMAS
                .as_ref()
                .unwrap()
                .iter()
                .find(|k| k.info.current && k.info.record == record)
                .unwrap();
            // apache-avro's canonical form, corrected for its one known deviation from the
            // specification (it keeps logical types as `{"type":"long"}`).
            let pcf = known
                .schema
                .canonical_form()
                .replace(r#"{"type":"long"}"#, r#""long""#);
            assert_eq!(known.info.canonical_form, pcf, "{record}");
            if record == "CollectionUpserted" {
                assert_eq!(pcf, COLLECTION_UPSERTED_PCF);
            }
            let expected = rabin_fingerprint(pcf.as_bytes()).to_le_bytes();
            assert_eq!(bytes[2..10], expected, "{record}: {pcf}");
        }
    }

    /// Prints the fingerprint table of docs/events.md:
    /// `cargo test -p taxiway-schemas print_fingerprints -- --nocapture`.
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
        for name in [
            "ics-attack-18.1.json.zst",
            "stix-2.0/ics-attack-18.1.json.zst",
        ] {
            let (bundle_spec_version, objects) = crate::stix::tests::attack_bundle(name);
            let (mut ours, mut avro) = (Vec::new(), Vec::new());
            for (position, raw) in objects.iter().enumerate() {
                let (meta, digest) =
                    crate::stix::validate_and_digest(raw, bundle_spec_version.as_deref()).unwrap();
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
                    content_sha256: digest,
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
                };
                ours.clear();
                avro.clear();
                encode_object_version_into(&event.view(), &mut ours).unwrap();
                write(Record::ObjectVersionAdded, &event, &mut avro).unwrap();
                assert_eq!(ours, avro, "{name}: {}", event.object_id);
            }
        }
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
            ),
        )
            .prop_map(
                |(
                    (collection_id, object_id, stix_type, spec_version),
                    (version_micros, date_added, content_sha256, object_json),
                    (source, ingest_run_id, correction, supersedes_date_added),
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
                (".{0,60}", any::<i64>()).prop_map(|(object_id, micros)| ReleaseMember {
                    object_id,
                    version: Timestamp::from_micros(micros).to_string(),
                    version_micros: micros,
                }),
                0..40,
            ),
            (arb_source(), ".{0,20}"),
        )
            .prop_map(
                |(
                    (
                        collection_id,
                        label,
                        release_timestamp,
                        chunk_index,
                        chunk_count,
                        member_count,
                    ),
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
        fn borrowed_views_encode_like_their_owned_events(event in arb_object_version()) {
            let view = event.view();
            let mut borrowed = Vec::new();
            encode_object_version_into(&view, &mut borrowed).unwrap();
            prop_assert_eq!(view.key(), Event::ObjectVersion(event.clone()).key());
            prop_assert_eq!(view.to_owned_event(), event.clone());
            prop_assert_eq!(borrowed, encode_event(&Event::ObjectVersion(event)).unwrap());
        }

        #[test]
        fn version_writer_writes_what_apache_avro_writes(event in arb_object_version()) {
            let mut ours = Vec::new();
            encode_event_into(&Event::ObjectVersion(event.clone()), &mut ours).unwrap();
            let mut avro = Vec::new();
            write(Record::ObjectVersionAdded, &event, &mut avro).unwrap();
            prop_assert_eq!(ours, avro);
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
}
