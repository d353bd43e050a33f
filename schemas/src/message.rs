//! How an event travels as a Kafka message: its topic, key, partition and headers.
//!
//! Keys are identities for log compaction, never parsed back: consumers read the fields from the
//! event body. The headers let consumers route and pick a decoder without decoding the payload:
//! Kafka Connect's `HasHeaderKey` predicate, ksqlDB's `HEADER('…')` columns and kcat's `%h` read
//! them; the payload stays the Avro message the headers name. Documented in `docs/events.md`
//! ("Message headers").

use crate::Event;
use crate::codec::{self, HEADER_LEN, MARKER};
use crate::registry::NAMESPACE;

/// The compacted topic of [`crate::Event`]s.
pub const OBJECTS_TOPIC: &str = "taxiway.objects";

/// The dead-letter topic of [`crate::DeadLetter`]s (delete retention policy).
pub const DEAD_LETTER_TOPIC: &str = "taxiway.dead-letter";

impl Event {
    /// The event's Kafka message key.
    pub fn key(&self) -> String {
        match self {
            Event::Collection(e) => collection_key(&e.collection_id),
            Event::ObjectVersion(e) if e.correction || e.archival => object_content_key(
                &e.collection_id,
                &e.object_id,
                &e.version,
                &e.content_sha256,
            ),
            Event::ObjectVersion(e) => {
                object_version_key(&e.collection_id, &e.object_id, &e.version)
            }
            Event::Release(e) => release_chunk_key(
                &e.collection_id,
                &e.label,
                &e.release_version,
                e.chunk_index,
            ),
        }
    }
}

/// Key of a `CollectionUpserted`: the collection id.
pub fn collection_key(collection_id: &str) -> String {
    collection_id.to_owned()
}

/// Key of an `ObjectVersionAdded`: `{collection_id}/{object_id}/{version}`, where `version` is
/// the canonical timestamp text. Every version has its own key, so compaction keeps them all.
pub fn object_version_key(collection_id: &str, object_id: &str, version: &str) -> String {
    let mut key = String::with_capacity(collection_id.len() + object_id.len() + version.len() + 2);
    key.push_str(collection_id);
    key.push('/');
    key.push_str(object_id);
    key.push('/');
    key.push_str(version);
    key
}

/// Key of an `ObjectVersionAdded` that delivers further content of an already published
/// (object, version) — a correction or an older release's content: the version's key, `/`, and
/// the lower-case hex `content_sha256`. Each content keeps its own key, so compaction keeps every
/// content a release may still name, not only the newest.
pub fn object_content_key(
    collection_id: &str,
    object_id: &str,
    version: &str,
    content_sha256: &[u8; 32],
) -> String {
    let mut key = object_version_key(collection_id, object_id, version);
    key.push('/');
    push_hex(&mut key, content_sha256);
    key
}

/// Key of a `ReleasePublished` chunk:
/// `{collection_id}/release/{label}/{release_version}/{chunk_index}`.
///
/// Each chunk has its own key so compaction keeps every chunk; the release timestamp is part of it
/// because two versions of a collection may carry the same label.
pub fn release_chunk_key(
    collection_id: &str,
    label: &str,
    release_version: &str,
    chunk_index: i32,
) -> String {
    format!("{collection_id}/release/{label}/{release_version}/{chunk_index}")
}

/// The partition of every event of a collection, as Kafka's Java default partitioner would
/// choose it for a message whose key is the collection id:
/// `(murmur2(collection_id) & 0x7fffffff) % partitions`.
///
/// Partitioning by collection rather than by message key keeps all of a collection's events in
/// one partition, in the order ingest assigned their `date_added`. A non-positive `partitions`
/// (which Kafka never reports) is treated as 1.
pub fn partition_for(collection_id: &str, partitions: i32) -> i32 {
    let positive = murmur2(collection_id.as_bytes()) & 0x7fff_ffff;
    positive % partitions.max(1)
}

/// Kafka's `org.apache.kafka.common.utils.Utils.murmur2`: 32-bit MurmurHash2 with seed
/// `0x9747b28c`, reading little-endian 4-byte blocks, returned as a Java `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka uses the length as a Java int; a key of 4 GiB is not a Kafka key.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in blocks.by_ref() {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

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
    if let Some(id) = codec::schema_id(payload) {
        pairs.push((SCHEMA_ID, id.to_string()));
        pairs.push((CONTENT_TYPE, AVRO_REGISTRY.to_owned()));
    } else {
        if payload.len() >= HEADER_LEN && payload[..2] == MARKER {
            let mut fingerprint = String::with_capacity(16);
            push_hex(&mut fingerprint, &payload[2..HEADER_LEN]);
            pairs.push((SCHEMA_FINGERPRINT, fingerprint));
        }
        pairs.push((CONTENT_TYPE, AVRO_SINGLE_OBJECT.to_owned()));
    }
    if let Some(id) = collection_id {
        pairs.push((COLLECTION_ID, id.to_owned()));
    }
    Headers { pairs }
}

/// Appends `bytes` as lower-case hex digits.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own `UtilsTest.testMurmur2` (clients/src/test/java/org/apache/
    /// kafka/common/utils/UtilsTest.java).
    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo_partitions() {
        // murmur2("21") = -973932308 → & 0x7fffffff = 1173551340.
        assert_eq!(partition_for("21", 1), 0);
        assert_eq!(partition_for("21", 7), 1_173_551_340 % 7);
        assert_eq!(partition_for("21", 0), 0);
        for partitions in 1..50 {
            let p = partition_for(
                "x-mitre-collection--1f5f1533-f617-4ca8-9ab4-6a02367fa019",
                partitions,
            );
            assert!((0..partitions).contains(&p));
        }
    }

    #[test]
    fn keys_have_the_documented_shape() {
        let c = "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09";
        assert_eq!(collection_key(c), c);
        assert_eq!(
            object_version_key(c, "malware--1", "2025-04-15T19:58:01.218Z"),
            format!("{c}/malware--1/2025-04-15T19:58:01.218Z")
        );
        assert_eq!(
            release_chunk_key(c, "18.1", "2025-10-28T14:00:00.000Z", 2),
            format!("{c}/release/18.1/2025-10-28T14:00:00.000Z/2")
        );
    }
}
