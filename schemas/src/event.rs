//! The events on Taxiway's topics, as Rust types matching the Avro schemas in `schemas/avro/`.
//!
//! Field order and names follow the `.avsc` files exactly; timestamps are `i64` microseconds since
//! the Unix epoch (Avro `long` with logical type `timestamp-micros`).

use serde::{Deserialize, Serialize};

use crate::stix::Timestamp;

/// Where an event's content came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub kind: SourceKind,
    /// Bundle file path or Workbench URL.
    pub uri: String,
    /// Lower-case hex SHA-256 of the bundle file.
    pub sha256: Option<String>,
    /// Index of the object in the bundle's `objects` array.
    pub position: Option<i64>,
}

/// The kind of [`Source`]; Avro enum `SourceKind` with symbols `BUNDLE`, `WORKBENCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceKind {
    Bundle,
    Workbench,
}

/// A TAXII collection's metadata. Key: [`crate::message::collection_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionUpserted {
    pub collection_id: String,
    pub title: String,
    pub description: Option<String>,
    pub alias: Option<String>,
    pub media_types: Vec<String>,
    /// Microseconds since the epoch.
    pub updated_at: i64,
    pub source: Source,
    pub ingest_run_id: String,
    /// True once the collection is delivered as releases: a reader serving releases shows it
    /// only once one is complete, never half-imported. Added in schema version 2 (default
    /// `false`).
    pub released: bool,
}

/// One version of one STIX object in one collection. Key: [`crate::message::object_version_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersionAdded {
    pub collection_id: String,
    pub object_id: String,
    pub stix_type: String,
    /// `"2.0"` or `"2.1"`, per [`crate::stix::spec_version`].
    pub spec_version: String,
    /// Canonical text of the version ([`Timestamp`]'s `Display`), per [`crate::stix::object_version`].
    pub version: String,
    pub version_micros: i64,
    /// Microseconds since the epoch; assigned once by ingest, strictly increasing per collection.
    pub date_added: i64,
    /// [`crate::stix::content_digest`] of `object_json`; Avro `fixed` `Sha256` of 32 bytes.
    #[serde(with = "apache_avro::serde::fixed")]
    pub content_sha256: [u8; 32],
    /// The STIX object's JSON text exactly as received.
    pub object_json: String,
    pub source: Source,
    pub ingest_run_id: String,
    /// True when this re-publishes an already published (object, version) with different content.
    /// Added in schema version 2 with default `false`.
    pub correction: bool,
    /// On a correction: the `date_added` of the content it replaces (microseconds). Added in
    /// schema version 3; `None` in older events and on first publications.
    pub supersedes_date_added: Option<i64>,
    /// True when this is the content an older release shipped, published after newer content
    /// of the same (object, version): kept for that release, never served as the newest.
    /// Added in schema version 4 with default `false`.
    pub archival: bool,
}

/// One member of a release: an object version, and the content the release shipped for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReleaseMember {
    pub object_id: String,
    /// Canonical text of the version.
    pub version: String,
    pub version_micros: i64,
    /// The `content_sha256` of the member's content in this release. Added in schema version 2;
    /// `None` in older events, whose members mean "the newest content of the version".
    #[serde(with = "apache_avro::serde::fixed_opt")]
    pub content_sha256: Option<[u8; 32]>,
}

impl ReleaseMember {
    pub fn new(object_id: impl Into<String>, version: Timestamp, content_sha256: [u8; 32]) -> Self {
        ReleaseMember {
            object_id: object_id.into(),
            version: version.to_string(),
            version_micros: version.as_micros(),
            content_sha256: Some(content_sha256),
        }
    }
}

/// One chunk of a release of a collection. Key: [`crate::message::release_chunk_key`].
///
/// A release is complete once all `chunk_count` chunks with the same collection, label and
/// release version have been seen; see [`chunk_release`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePublished {
    pub collection_id: String,
    pub label: String,
    /// Microseconds since the epoch.
    pub release_timestamp: i64,
    /// Canonical text of `release_timestamp`.
    pub release_version: String,
    /// 0-based.
    pub chunk_index: i32,
    pub chunk_count: i32,
    /// Members over all chunks of the release.
    pub member_count: i64,
    pub members: Vec<ReleaseMember>,
    pub source: Source,
    pub ingest_run_id: String,
    /// Microseconds since the epoch; from the collection's `date_added` sequence, shared by
    /// every chunk of the release.
    pub date_added: i64,
}

/// Members per [`ReleasePublished`] chunk. A member is about 135 bytes of Avro (ids are ~60
/// characters, the content digest 33), so a chunk stays near 700 KB, under Kafka's default 1 MB
/// message limit.
pub const RELEASE_CHUNK_MAX_MEMBERS: usize = 5_000;

/// Splits a release into chunks of at most [`RELEASE_CHUNK_MAX_MEMBERS`] members.
///
/// Members are sorted and exact duplicates dropped first, so the same release always yields the
/// same chunks (same keys, same content) whatever order its bundle lists objects in: a re-run of
/// ingest then only re-sends identical messages. A release with no members still yields one
/// (empty) chunk, so that it exists.
pub fn chunk_release(
    collection_id: &str,
    label: &str,
    release_timestamp: Timestamp,
    date_added: i64,
    mut members: Vec<ReleaseMember>,
    source: &Source,
    ingest_run_id: &str,
) -> Vec<ReleasePublished> {
    members.sort_unstable();
    members.dedup();
    let member_count = members.len();
    let chunk_count = member_count.div_ceil(RELEASE_CHUNK_MAX_MEMBERS).max(1);
    let release_version = release_timestamp.to_string();
    let mut chunks = Vec::with_capacity(chunk_count);
    let mut rest = members.into_iter();
    for chunk_index in 0..chunk_count {
        chunks.push(ReleasePublished {
            collection_id: collection_id.to_owned(),
            label: label.to_owned(),
            release_timestamp: release_timestamp.as_micros(),
            release_version: release_version.clone(),
            // Both fit: chunk_count ≤ member_count / 5000 + 1 and a Vec holds < 2^63 elements.
            chunk_index: i32::try_from(chunk_index).unwrap_or(i32::MAX),
            chunk_count: i32::try_from(chunk_count).unwrap_or(i32::MAX),
            member_count: i64::try_from(member_count).unwrap_or(i64::MAX),
            members: rest.by_ref().take(RELEASE_CHUNK_MAX_MEMBERS).collect(),
            source: source.clone(),
            ingest_run_id: ingest_run_id.to_owned(),
            date_added,
        });
    }
    chunks
}

/// Something a stage rejected, on the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// `"ingest"` or `"projector"`.
    pub stage: String,
    pub reason: String,
    pub source: Option<Source>,
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_key: Option<Vec<u8>>,
    /// The rejected object's JSON, or the raw bytes of the rejected message.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub payload: Option<Vec<u8>>,
    /// Microseconds since the epoch.
    pub at: i64,
}

/// An event on the objects topic ([`crate::message::OBJECTS_TOPIC`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Collection(CollectionUpserted),
    ObjectVersion(ObjectVersionAdded),
    Release(ReleasePublished),
}

impl Event {
    /// The collection the event belongs to, which decides its partition ([`crate::message::partition_for`]).
    pub fn collection_id(&self) -> &str {
        match self {
            Event::Collection(e) => &e.collection_id,
            Event::ObjectVersion(e) => &e.collection_id,
            Event::Release(e) => &e.collection_id,
        }
    }
}

impl From<CollectionUpserted> for Event {
    fn from(e: CollectionUpserted) -> Self {
        Event::Collection(e)
    }
}

impl From<ObjectVersionAdded> for Event {
    fn from(e: ObjectVersionAdded) -> Self {
        Event::ObjectVersion(e)
    }
}

impl From<ReleasePublished> for Event {
    fn from(e: ReleasePublished) -> Self {
        Event::Release(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            kind: SourceKind::Bundle,
            uri: "ics-attack-18.1.json".into(),
            sha256: None,
            position: None,
        }
    }

    fn members(n: usize) -> Vec<ReleaseMember> {
        (0..n)
            .rev()
            .map(|i| {
                ReleaseMember::new(
                    format!("attack-pattern--00000000-0000-4000-8000-{i:012}"),
                    Timestamp::from_micros(1_000 * i as i64),
                    [0; 32],
                )
            })
            .collect()
    }

    #[test]
    fn release_is_split_into_full_chunks_and_a_remainder() {
        let at = Timestamp::parse("2025-10-28T14:00:00.000Z").unwrap();
        let chunks = chunk_release("c", "18.1", at, 0, members(12_345), &source(), "run");
        assert_eq!(chunks.len(), 3);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.members.len()).collect();
        assert_eq!(sizes, [5_000, 5_000, 2_345]);
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.chunk_index, i as i32);
            assert_eq!(chunk.chunk_count, 3);
            assert_eq!(chunk.member_count, 12_345);
            assert_eq!(chunk.release_version, "2025-10-28T14:00:00.000Z");
            assert_eq!(chunk.release_timestamp, at.as_micros());
        }
        let all: Vec<_> = chunks.iter().flat_map(|c| c.members.iter()).collect();
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "members sorted across chunks"
        );
    }

    #[test]
    fn chunks_do_not_depend_on_member_order_or_duplicates() {
        let at = Timestamp::EPOCH;
        let mut shuffled = members(7_000);
        shuffled.reverse();
        shuffled.extend(members(10));
        let a = chunk_release("c", "1.0", at, 0, members(7_000), &source(), "run");
        let b = chunk_release("c", "1.0", at, 0, shuffled, &source(), "run");
        assert_eq!(a, b);
    }

    #[test]
    fn empty_release_still_has_one_chunk() {
        let chunks = chunk_release("c", "1.0", Timestamp::EPOCH, 0, vec![], &source(), "run");
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].chunk_count, chunks[0].member_count), (1, 0));
    }

    #[test]
    fn exact_multiple_of_chunk_size_has_no_empty_chunk() {
        let chunks = chunk_release(
            "c",
            "1.0",
            Timestamp::EPOCH,
            0,
            members(10_000),
            &source(),
            "r",
        );
        assert_eq!(chunks.len(), 2);
        assert!(
            chunks
                .iter()
                .all(|c| c.members.len() == RELEASE_CHUNK_MAX_MEMBERS)
        );
    }
}
