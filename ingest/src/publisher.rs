//! Where ingest's events go: the Kafka topics, or the embedded log of a node. Both get the same
//! messages: the same keys, single-object (or registry) payloads and headers.

use eventlog::{EmbeddedLog, Record};
use schemas::message::Headers;
use schemas::{DEAD_LETTER_TOPIC, DeadLetter, Event, OBJECTS_TOPIC};

use crate::error::Error;
use crate::producer::{Producer, dead_letter_key};

/// The event log ingest appends to.
pub(crate) enum Publisher {
    // Boxed: a producer is much larger than a log handle, and there is one publisher per run.
    Kafka(Box<Producer>),
    Embedded(EmbeddedLog),
}

impl Publisher {
    /// Publishes `events` in order on the objects topic, then `letters` on the dead-letter
    /// topic, and returns once every one of them is stored.
    pub(crate) async fn publish(
        &self,
        events: &[Event],
        letters: &[DeadLetter],
    ) -> Result<(), Error> {
        match self {
            Publisher::Kafka(producer) => producer.publish(events, letters).await,
            Publisher::Embedded(log) => {
                let mut objects = Vec::with_capacity(events.len());
                for event in events {
                    let payload = schemas::encode_event(event)?;
                    let headers = schemas::message::event_headers(event, &payload);
                    objects.push(record(event.key().into_bytes(), payload, &headers));
                }
                let mut dead = Vec::with_capacity(letters.len());
                for letter in letters {
                    let payload = schemas::encode_dead_letter(letter)?;
                    let headers = schemas::message::dead_letter_headers(&payload);
                    dead.push(record(
                        dead_letter_key(letter).into_bytes(),
                        payload,
                        &headers,
                    ));
                }
                let log = log.clone();
                tokio::task::spawn_blocking(move || {
                    log.append(OBJECTS_TOPIC, &objects)?;
                    log.append(DEAD_LETTER_TOPIC, &dead)
                })
                .await
                .map_err(|e| Error::Task(format!("appending to the embedded log: {e}")))??;
                Ok(())
            }
        }
    }
}

/// A log record carrying what the Kafka message would.
pub(crate) fn record(key: Vec<u8>, payload: Vec<u8>, headers: &Headers) -> Record {
    Record {
        key,
        payload: Some(payload),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
            .collect(),
    }
}
