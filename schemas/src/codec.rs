//! Avro encoding of the events: single-object framing (`C3 01`, the writer schema's CRC-64-AVRO fingerprint, the Avro body) or the schema-registry wire format.
//!
//! Both framings carry the same Avro body written with the same schemas; a reader tells them
//! apart by the first byte (`C3` or `00`), so a topic can hold both. A registry-framed message's
//! schema id is looked up in the ids the registry gave ([`crate::registry::SchemaIds`]).
//!
//! Every schema this build has ever written (the current `.avsc` files and those kept under
//! `avro/history/`) is known by fingerprint, so old messages on the compacted topic keep decoding:
//! a message written with the current schema is deserialized straight from its bytes; one written
//! with an older schema is decoded with it and resolved to the current one by Avro's rules.

use std::sync::LazyLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{CollectionUpserted, DeadLetter, Event, ObjectVersionAdded, ReleasePublished};
use crate::records::{self, Known, Record};
use crate::registry::SchemaIds;
use crate::version_writer;
use crate::{Error, Result};

/// The two marker bytes that start every single-object encoded message.
pub const MARKER: [u8; 2] = [0xC3, 0x01];

/// Marker plus 8-byte fingerprint.
pub const HEADER_LEN: usize = 10;

/// The first byte of a registry-framed message (Confluent's "magic byte").
pub const REGISTRY_MAGIC: u8 = 0;

/// Magic byte plus 4-byte schema id.
pub const REGISTRY_HEADER_LEN: usize = 5;

/// How messages are framed when written.
#[derive(Debug, Clone, Default)]
pub enum Framing {
    /// Avro single-object encoding: `C3 01` and the schema fingerprint; needs no registry.
    #[default]
    SingleObject,
    /// The schema-registry wire format, with the ids the registry gave the current schemas.
    Registry(SchemaIds),
}

/// The schema id of a registry-framed message, or `None` for any other framing.
pub fn schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [REGISTRY_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

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
    let known: &'static [Known] = records::known()?;
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

/// Appends the framing's header for `record`'s current schema.
fn write_header(record: Record, framing: &Framing, out: &mut Vec<u8>) -> Result<()> {
    match framing {
        Framing::SingleObject => {
            let (fingerprint, _) = writer_of(record)?;
            out.extend_from_slice(&MARKER);
            out.extend_from_slice(&fingerprint);
        }
        Framing::Registry(ids) => {
            out.push(REGISTRY_MAGIC);
            out.extend_from_slice(&ids.writer_id(record)?.to_be_bytes());
        }
    }
    Ok(())
}

fn write<T: Serialize>(
    record: Record,
    value: &T,
    framing: &Framing,
    out: &mut Vec<u8>,
) -> Result<()> {
    let (_, writer) = writer_of(record)?;
    let start = out.len();
    write_header(record, framing, out)?;
    writer.write_ser(out, value).map_err(|e| {
        out.truncate(start);
        avro_error("encode")(e)
    })?;
    Ok(())
}

/// Splits off the header and finds the writer schema; a registry-framed message is looked up in
/// `ids`.
fn header<'a>(bytes: &'a [u8], ids: Option<&SchemaIds>) -> Result<(&'static Codec, &'a [u8])> {
    if let Some(id) = schema_id(bytes) {
        let fingerprint = match ids {
            Some(ids) => ids.fingerprint_of(id)?,
            None => return Err(Error::UnknownSchemaId(id)),
        };
        let codec = codecs()?
            .iter()
            .find(|c| c.fingerprint == fingerprint)
            .ok_or(Error::UnknownSchemaId(id))?;
        return Ok((codec, &bytes[REGISTRY_HEADER_LEN..]));
    }
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
    encode_event_framed(event, &Framing::SingleObject, out)
}

/// Appends the event to `out` in `framing`; on error `out` is left as it was.
pub fn encode_event_framed(event: &Event, framing: &Framing, out: &mut Vec<u8>) -> Result<()> {
    match event {
        Event::Collection(e) => write(Record::CollectionUpserted, e, framing, out),
        Event::ObjectVersion(e) => write_object_version(e, framing, out),
        Event::Release(e) => write(Record::ReleasePublished, e, framing, out),
    }
}

/// Version events are written by [`version_writer`] (the hot path of an import), after the
/// same header apache-avro's path writes.
fn write_object_version(
    event: &ObjectVersionAdded,
    framing: &Framing,
    out: &mut Vec<u8>,
) -> Result<()> {
    write_header(Record::ObjectVersionAdded, framing, out)?;
    version_writer::write_object_version(event, out);
    Ok(())
}

/// Decodes an objects-topic message written with any known schema in single-object framing; a
/// registry-framed one fails with [`Error::UnknownSchemaId`] (see [`decode_event_with`]).
pub fn decode_event(bytes: &[u8]) -> Result<Event> {
    decode(bytes, None)
}

/// Decodes an objects-topic message in either framing, registry ids looked up in `ids`.
pub fn decode_event_with(bytes: &[u8], ids: &SchemaIds) -> Result<Event> {
    decode(bytes, Some(ids))
}

fn decode(bytes: &[u8], ids: Option<&SchemaIds>) -> Result<Event> {
    let (codec, body) = header(bytes, ids)?;
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
    encode_dead_letter_framed(dead_letter, &Framing::SingleObject, out)
}

/// Appends the dead letter to `out` in `framing`; on error `out` is left as it was.
pub fn encode_dead_letter_framed(
    dead_letter: &DeadLetter,
    framing: &Framing,
    out: &mut Vec<u8>,
) -> Result<()> {
    write(Record::DeadLetter, dead_letter, framing, out)
}

/// Decodes a single-object dead-letter-topic message.
pub fn decode_dead_letter(bytes: &[u8]) -> Result<DeadLetter> {
    decode_dead_letter_with(bytes, &SchemaIds::default())
}

/// Decodes a dead-letter-topic message in either framing, registry ids looked up in `ids`.
pub fn decode_dead_letter_with(bytes: &[u8], ids: &SchemaIds) -> Result<DeadLetter> {
    let (codec, body) = header(bytes, Some(ids))?;
    if codec.record != Record::DeadLetter {
        return Err(Error::WrongRecord {
            found: codec.record.name(),
            expected: Record::DeadLetter.name(),
        });
    }
    read(codec, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_id_is_read_big_endian_after_the_magic_byte() {
        assert_eq!(schema_id(&[0, 0, 0, 1, 2, 9, 9]), Some(258));
        assert_eq!(schema_id(&[0, 0, 0, 1]), None);
        assert_eq!(schema_id(&[0xC3, 0x01, 0, 0, 0, 0]), None);
    }
}
