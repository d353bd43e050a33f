//! The Kafka headers every message carries, so consumers route and pick a decoder without decoding the payload.
//!
//! Kafka Connect's `HasHeaderKey` predicate, ksqlDB's `HEADER('…')` columns and kcat's `%h`
//! read these; the payload stays the single-object Avro message the header names. Documented in
//! `docs/events.md` ("Message headers").

use crate::Event;
use crate::codec::{HEADER_LEN, MARKER};
use crate::registry::{self, NAMESPACE};

/// The Avro record's full name, e.g. `io.taxiway.events.ObjectVersionAdded`.
pub const EVENT_TYPE: &str = "taxiway-event-type";
/// The writer schema's CRC-64-AVRO fingerprint as 16 lowercase hex digits of the payload's
/// header bytes 2..10 (the form `docs/events.md` tabulates and fastavro prints); single-object
/// framing only.
pub const SCHEMA_FINGERPRINT: &str = "taxiway-schema-fingerprint";
/// The registry's schema id in decimal; schema-registry framing only.
pub const SCHEMA_ID: &str = "taxiway-schema-id";
/// [`AVRO_SINGLE_OBJECT`] or [`AVRO_REGISTRY`].
pub const CONTENT_TYPE: &str = "content-type";
/// The TAXII collection id; absent on a dead letter whose source names no collection.
pub const COLLECTION_ID: &str = "taxiway-collection-id";

/// The payload's media type: Avro's binary encoding in its single-object framing.
pub const AVRO_SINGLE_OBJECT: &str = "application/avro; encoding=single-object";
/// The payload's media type: Avro's binary encoding in the schema-registry wire format.
pub const AVRO_REGISTRY: &str = "application/avro; encoding=schema-registry";

/// One message's headers, in the order they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(&'static str, String)>,
}

impl Headers {
    /// `(name, value)` pairs, values UTF-8.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.pairs.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The value of `name`, if the message has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// The headers of an objects-topic message; `payload` is the event as encoded for it.
pub fn event_headers(event: &Event, payload: &[u8]) -> Headers {
    let record = match event {
        Event::Collection(_) => "CollectionUpserted",
        Event::ObjectVersion(_) => "ObjectVersionAdded",
        Event::Release(_) => "ReleasePublished",
    };
    headers(record, payload, Some(event.collection_id()))
}

/// The headers of a dead-letter message; `payload` is the letter as encoded for it.
pub fn dead_letter_headers(payload: &[u8]) -> Headers {
    headers("DeadLetter", payload, None)
}

fn headers(record: &str, payload: &[u8], collection_id: Option<&str>) -> Headers {
    let mut pairs = Vec::with_capacity(4);
    pairs.push((EVENT_TYPE, format!("{NAMESPACE}.{record}")));
    if let Some(id) = registry::schema_id(payload) {
        pairs.push((SCHEMA_ID, id.to_string()));
        pairs.push((CONTENT_TYPE, AVRO_REGISTRY.to_owned()));
    } else {
        if payload.len() >= HEADER_LEN && payload[..2] == MARKER {
            pairs.push((SCHEMA_FINGERPRINT, hex(&payload[2..HEADER_LEN])));
        }
        pairs.push((CONTENT_TYPE, AVRO_SINGLE_OBJECT.to_owned()));
    }
    if let Some(id) = collection_id {
        pairs.push((COLLECTION_ID, id.to_owned()));
    }
    Headers { pairs }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(16), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}
