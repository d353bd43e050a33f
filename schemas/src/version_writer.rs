//! The Avro body of an `ObjectVersionAdded` event, written field by field in the order of
//! `avro/ObjectVersionAdded.avsc`.
//!
//! Why not apache-avro's writer for this one record: ingest encodes one of these per object on
//! its single ordered publishing stream (an Enterprise import: ~25k in a row), and the
//! schema-aware serializer looks every field up by name in a hashed map and checks it against
//! the schema, which was more than half of the encoding time in profiles (the rest: copying
//! the object's JSON). Every other record, and all decoding, still goes through apache-avro.
//!
//! The bytes are the same as apache-avro's for the current schema: the tests compare both on
//! generated events and on every object of a real bundle, so a change to the `.avsc` that is
//! not made here too fails them.

use crate::event::{ObjectVersionAdded, Source, SourceKind};

/// Appends the Avro binary encoding of `event` (current `ObjectVersionAdded` schema) to `out`.
pub(crate) fn write_object_version(event: &ObjectVersionAdded, out: &mut Vec<u8>) {
    out.reserve(event.object_json.len() + 256);
    write_str(out, &event.collection_id);
    write_str(out, &event.object_id);
    write_str(out, &event.stix_type);
    write_str(out, &event.spec_version);
    write_str(out, &event.version);
    write_long(out, event.version_micros);
    write_long(out, event.date_added);
    // `fixed` Sha256: the 32 bytes, no length.
    out.extend_from_slice(&event.content_sha256);
    write_str(out, &event.object_json);
    write_source(out, &event.source);
    write_str(out, &event.ingest_run_id);
    out.push(u8::from(event.correction));
    // Union ["null", long]: branch index, then the value.
    match event.supersedes_date_added {
        None => write_long(out, 0),
        Some(date_added) => {
            write_long(out, 1);
            write_long(out, date_added);
        }
    }
    out.push(u8::from(event.archival));
}

fn write_source(out: &mut Vec<u8>, source: &Source) {
    // Enum SourceKind: the symbol's index, as an int.
    write_long(
        out,
        match source.kind {
            SourceKind::Bundle => 0,
            SourceKind::Workbench => 1,
        },
    );
    write_str(out, &source.uri);
    match &source.sha256 {
        None => write_long(out, 0),
        Some(sha256) => {
            write_long(out, 1);
            write_str(out, sha256);
        }
    }
    match source.position {
        None => write_long(out, 0),
        Some(position) => {
            write_long(out, 1);
            write_long(out, position);
        }
    }
}

/// A string: its byte length as a long, then its UTF-8 bytes.
fn write_str(out: &mut Vec<u8>, text: &str) {
    write_long(out, i64::try_from(text.len()).unwrap_or(i64::MAX));
    out.extend_from_slice(text.as_bytes());
}

/// A long (or int): zig-zag encoded, then as a little-endian base-128 varint.
fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}
