//! The event log behind the pipeline when it runs on one machine: keyed records appended in
//! order to a topic, read from an offset, compacted by key, with a high-water mark — the part of
//! a Kafka topic that Taxiway uses, kept in an SQLite file.
//!
//! A record is what a Kafka message of the topic is: key, payload (`None` is a tombstone) and
//! headers, byte for byte, so the same log can later be replayed into Kafka unchanged. Offsets
//! count per topic from 0, like the offsets of a one-partition topic.

mod embedded;
mod error;
mod record;

pub use embedded::{Compaction, EmbeddedLog};
pub use error::Error;
pub use record::{Record, Stored};
