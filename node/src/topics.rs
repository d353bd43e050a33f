//! The topics of a node's log, named as the distributed deployment's defaults, and a record as
//! a Kafka message of them would carry it.

use eventlog::Record;
use schemas::message::Headers;

/// The objects topic: every event of every collection, in one order.
pub const OBJECTS: &str = "taxiway.objects";
/// What a stage could not use, with the reason.
pub const DEAD_LETTER: &str = "taxiway.dead-letter";

/// A log record with `key`, `payload` and the headers Kafka messages carry.
pub fn record(key: &[u8], payload: Vec<u8>, headers: &Headers) -> Record {
    Record {
        key: key.to_vec(),
        payload: Some(payload),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
            .collect(),
    }
}
