//! The Taxiway event contract: STIX rules, event types, Avro single-object codec, Kafka keys and the CQL of the projections.
//!
//! This crate is sans-I/O: it holds types, pure functions and the schema files, and depends on no
//! async runtime, Kafka or database driver, so every stage (and every test) can use it as is.

pub mod codec;
pub mod cql;
pub mod event;
pub mod fingerprint;
pub mod message;
pub mod records;
pub mod registry;
pub mod stix;
mod version_writer;

pub use codec::{
    decode_dead_letter, decode_dead_letter_with, decode_event, decode_event_with,
    encode_dead_letter, encode_dead_letter_framed, encode_dead_letter_into, encode_event,
    encode_event_framed, encode_event_into,
};
pub use event::{
    CollectionUpserted, DeadLetter, Event, ObjectVersionAdded, RELEASE_CHUNK_MAX_MEMBERS,
    ReleaseMember, ReleasePublished, Source, SourceKind, chunk_release,
};
pub use message::{
    DEAD_LETTER_TOPIC, OBJECTS_TOPIC, collection_key, object_content_key, object_version_key,
    partition_for, release_chunk_key,
};
pub use records::{SchemaInfo, known_schemas};
pub use stix::{
    Invalid, InvalidKind, SpecVersion, StixObjectMeta, Timestamp, check_stix_id, compact_json,
    content_digest, object_version, spec_version, validate_object,
};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A text that is not a STIX timestamp (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`).
    #[error("timestamp {text:?}: {reason}")]
    Timestamp { text: String, reason: &'static str },
    /// A STIX object that breaks the rules checked by [`validate_object`].
    #[error(transparent)]
    InvalidObject(#[from] Invalid),
    /// Text that is not JSON.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A message shorter than the 10-byte single-object header.
    #[error("message of {len} bytes is too short for an Avro single-object header (10 bytes)")]
    TooShort { len: usize },
    /// A message that starts with neither the single-object marker `C3 01` nor the registry's
    /// magic byte `00`.
    #[error(
        "neither an Avro single-object message (marker [c3, 01]) nor schema-registry framed (magic byte 00): starts with {found:02x?}"
    )]
    BadMarker { found: [u8; 2] },
    /// A writer-schema fingerprint that matches none of the known schemas.
    #[error("unknown writer schema fingerprint {0:016x} (CRC-64-AVRO)")]
    UnknownFingerprint(u64),
    /// A registry-framed message whose schema id was not looked up in the registry (or no
    /// registry is configured).
    #[error(
        "schema-registry framed message with schema id {0}, which no configured registry resolved"
    )]
    UnknownSchemaId(u32),
    /// A registry id whose schema is missing or not one this build reads.
    #[error("{reason}")]
    RefusedSchemaId { id: u32, reason: String },
    /// A known schema used where another kind of record was expected.
    #[error("message was written with schema {found}, expected {expected}")]
    WrongRecord {
        found: &'static str,
        expected: &'static str,
    },
    /// The Avro body could not be encoded or decoded (truncated, corrupt, or not matching the schema).
    #[error("Avro {context}: {source}")]
    Avro {
        context: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// Bytes left over after the Avro body: the message is not one datum.
    #[error("{0} trailing bytes after the Avro body")]
    TrailingBytes(usize),
    /// The embedded `.avsc` files failed to parse (a build defect, caught by the tests).
    #[error("embedded Avro schemas are broken: {0}")]
    Schemas(String),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
