//! The ids a schema registry gave our schemas, and the subjects they are registered under.
//!
//! The registry's wire format itself (byte 0, a 4-byte big-endian schema id, the Avro body) is
//! one of the two framings in [`crate::codec`]. This module does no I/O: whoever talks to the registry (the service crate) registers the
//! current schemas, looks up ids it meets on the topic, and records the answers here. A message
//! is then encoded or decoded with the same writer schemas as the single-object framing; only the
//! header differs, so a topic can hold both and be migrated message by message.

use std::collections::HashMap;

use crate::records::Record;
use crate::{Error, Result, fingerprint};

/// The Avro namespace of every record.
pub const NAMESPACE: &str = "io.taxiway.events";

/// The subject a record's schema is registered under on `topic`: TopicRecordNameStrategy,
/// `<topic>-<record full name>`, so one topic carries several record types and each evolves on
/// its own.
pub fn subject(topic: &str, record_full_name: &str) -> String {
    format!("{topic}-{record_full_name}")
}

/// What a registry told us: which id each known writer schema has, both ways.
#[derive(Debug, Clone, Default)]
pub struct SchemaIds {
    /// Registry id → the single-object fingerprint of a schema this build knows.
    by_id: HashMap<u32, [u8; 8]>,
    /// Ids the registry holds but whose schema this build cannot read, with why.
    refused: HashMap<u32, String>,
    /// The id each current schema is written with.
    writers: HashMap<Record, u32>,
}

impl SchemaIds {
    /// Records that the registry holds `avsc` under `id`. Fails, and remembers the refusal for
    /// [`Self::is_settled`], if `avsc` is none of the schemas this build knows.
    pub fn learn(&mut self, id: u32, avsc: &str) -> Result<()> {
        let fingerprint = fingerprint::schema_fingerprint(avsc)?;
        if crate::records::record_of(fingerprint)?.is_none() {
            let reason = format!(
                "registry schema id {id} is not a schema this build reads (CRC-64-AVRO {:016x})",
                u64::from_le_bytes(fingerprint)
            );
            self.refused.insert(id, reason.clone());
            return Err(Error::RefusedSchemaId { id, reason });
        }
        self.refused.remove(&id);
        self.by_id.insert(id, fingerprint);
        Ok(())
    }

    /// Records that the registry has no schema `id` (or that it could not be read): messages
    /// framed with it fail to decode with `reason`.
    pub fn refuse(&mut self, id: u32, reason: String) {
        self.refused.insert(id, reason);
    }

    /// Whether `id` is known or known to be refused, so nobody needs to ask the registry again.
    pub fn is_settled(&self, id: u32) -> bool {
        self.by_id.contains_key(&id) || self.refused.contains_key(&id)
    }

    /// Records `id` as the id this build writes `record_full_name` with (after registering its
    /// current schema, whose text [`current_schemas`] gives).
    pub fn write_with(&mut self, record_full_name: &str, id: u32, avsc: &str) -> Result<()> {
        let record = Record::from_full_name(record_full_name)
            .ok_or_else(|| Error::Schemas(format!("{record_full_name} is not a Taxiway record")))?;
        self.learn(id, avsc)?;
        self.writers.insert(record, id);
        Ok(())
    }

    /// The id a current schema of `record` was registered under.
    pub(crate) fn writer_id(&self, record: Record) -> Result<u32> {
        self.writers.get(&record).copied().ok_or_else(|| {
            Error::Schemas(format!(
                "no registry id for {NAMESPACE}.{}: its schema was not registered",
                record.name()
            ))
        })
    }

    /// The fingerprint of the schema behind `id`.
    pub(crate) fn fingerprint_of(&self, id: u32) -> Result<[u8; 8]> {
        if let Some(fingerprint) = self.by_id.get(&id) {
            return Ok(*fingerprint);
        }
        Err(match self.refused.get(&id) {
            Some(reason) => Error::RefusedSchemaId {
                id,
                reason: reason.clone(),
            },
            None => Error::UnknownSchemaId(id),
        })
    }
}

/// One schema this build writes, as it is registered.
#[derive(Debug, Clone, Copy)]
pub struct CurrentSchema {
    /// The record's full name, e.g. `io.taxiway.events.ObjectVersionAdded`.
    pub full_name: &'static str,
    /// The `.avsc` text.
    pub avsc: &'static str,
    /// Whether it is written on the dead-letter topic (else on the objects topic).
    pub dead_letter: bool,
}

/// The schemas this build writes, one per record type.
pub fn current_schemas() -> Vec<CurrentSchema> {
    crate::records::current_schema_texts()
        .into_iter()
        .map(|(record, avsc)| CurrentSchema {
            full_name: record.full_name(),
            avsc,
            dead_letter: record == Record::DeadLetter,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_topic_record_name_strategy() {
        assert_eq!(
            subject("taxiway.objects", "io.taxiway.events.ReleasePublished"),
            "taxiway.objects-io.taxiway.events.ReleasePublished"
        );
    }

    #[test]
    fn an_unknown_schema_is_refused_and_remembered() {
        let mut ids = SchemaIds::default();
        let other = r#"{"type":"record","name":"Other","fields":[]}"#;
        assert!(ids.learn(7, other).is_err());
        assert!(ids.is_settled(7));
        assert!(ids.fingerprint_of(7).is_err());
        assert!(matches!(
            ids.fingerprint_of(8),
            Err(Error::UnknownSchemaId(8))
        ));
    }

    #[test]
    fn every_record_type_has_one_current_schema() {
        let current = current_schemas();
        let names: Vec<_> = current.iter().map(|c| c.full_name).collect();
        assert_eq!(
            names,
            [
                "io.taxiway.events.CollectionUpserted",
                "io.taxiway.events.ObjectVersionAdded",
                "io.taxiway.events.ReleasePublished",
                "io.taxiway.events.DeadLetter",
            ]
        );
        assert_eq!(current.iter().filter(|c| c.dead_letter).count(), 1);
    }
}
