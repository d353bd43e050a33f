//! The record types on Taxiway's topics and every Avro schema this build has written for them, parsed once and known by fingerprint.
//!
//! Both framings (single-object in [`crate::codec`], schema registry in [`crate::registry`]) take
//! their schemas from here.

use std::sync::LazyLock;

use apache_avro::Schema;

use crate::fingerprint;
use crate::{Error, Result};

/// Upper bound for one allocation while decoding, so that a corrupt length prefix in a poison
/// message cannot make the decoder reserve gigabytes. Far above any real event (Kafka's default
/// message limit is 1 MB). Process-wide setting of apache-avro, set when the schemas are first parsed (before any decode).
const MAX_ALLOCATION_BYTES: usize = 64 << 20;

/// The record types on Taxiway's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Record {
    CollectionUpserted,
    ObjectVersionAdded,
    ReleasePublished,
    DeadLetter,
}

impl Record {
    const ALL: [Record; 4] = [
        Record::CollectionUpserted,
        Record::ObjectVersionAdded,
        Record::ReleasePublished,
        Record::DeadLetter,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Record::CollectionUpserted => "CollectionUpserted",
            Record::ObjectVersionAdded => "ObjectVersionAdded",
            Record::ReleasePublished => "ReleasePublished",
            Record::DeadLetter => "DeadLetter",
        }
    }

    /// The name with the namespace, as registries and the `taxiway-event-type` header give it.
    pub(crate) fn full_name(self) -> &'static str {
        match self {
            Record::CollectionUpserted => "io.taxiway.events.CollectionUpserted",
            Record::ObjectVersionAdded => "io.taxiway.events.ObjectVersionAdded",
            Record::ReleasePublished => "io.taxiway.events.ReleasePublished",
            Record::DeadLetter => "io.taxiway.events.DeadLetter",
        }
    }

    pub(crate) fn from_full_name(name: &str) -> Option<Record> {
        Record::ALL.into_iter().find(|r| r.full_name() == name)
    }
}

/// `(record, path under schemas/, text, current?)` of every schema ever written.
const SCHEMA_FILES: [(Record, &str, &str, bool); 9] = [
    (
        Record::CollectionUpserted,
        "avro/CollectionUpserted.avsc",
        include_str!("../avro/CollectionUpserted.avsc"),
        true,
    ),
    (
        Record::CollectionUpserted,
        "avro/history/CollectionUpserted.v1.avsc",
        include_str!("../avro/history/CollectionUpserted.v1.avsc"),
        false,
    ),
    (
        Record::ObjectVersionAdded,
        "avro/ObjectVersionAdded.avsc",
        include_str!("../avro/ObjectVersionAdded.avsc"),
        true,
    ),
    (
        Record::ObjectVersionAdded,
        "avro/history/ObjectVersionAdded.v3.avsc",
        include_str!("../avro/history/ObjectVersionAdded.v3.avsc"),
        false,
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
        Record::ReleasePublished,
        "avro/history/ReleasePublished.v1.avsc",
        include_str!("../avro/history/ReleasePublished.v1.avsc"),
        false,
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

/// A known schema, parsed, with what the codec needs to build its reader and writer.
pub(crate) struct Known {
    pub(crate) info: SchemaInfo,
    pub(crate) record: Record,
    pub(crate) schema: Schema,
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

/// The parsed schemas, or why the embedded files are broken.
pub(crate) fn known() -> Result<&'static [Known], String> {
    SCHEMAS.as_deref().map_err(Clone::clone)
}

/// Every schema this build knows: current ones first in file order, history after its record.
pub fn known_schemas() -> Result<Vec<SchemaInfo>> {
    let known = known().map_err(Error::Schemas)?;
    Ok(known.iter().map(|k| k.info.clone()).collect())
}

/// The record a known fingerprint belongs to, or `None` if this build knows no such schema.
pub(crate) fn record_of(fingerprint: [u8; 8]) -> Result<Option<Record>> {
    Ok(known()
        .map_err(Error::Schemas)?
        .iter()
        .find(|k| k.info.fingerprint == fingerprint)
        .map(|k| k.record))
}

/// The `.avsc` text of each record's current schema, in file order.
pub(crate) fn current_schema_texts() -> Vec<(Record, &'static str)> {
    SCHEMA_FILES
        .iter()
        .filter(|(_, _, _, current)| *current)
        .map(|&(record, _, avsc, _)| (record, avsc))
        .collect()
}
