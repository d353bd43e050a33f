//! Publishing what the projector cannot use to the dead-letter topic, so the pipeline never stalls on a poison message.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::codec::Framing;
use schemas::{DeadLetter, Source};
use service::KafkaArgs;
use tokio_util::sync::CancellationToken;

use crate::consumer::Record;
use crate::error::{Error, Result};
use service::now_micros;

/// The producer of dead letters.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    source_topic: String,
    framing: Framing,
}

impl DeadLetters {
    /// The producer, and with a schema registry the ids of the schemas it writes with.
    pub async fn new(kafka: &KafkaArgs) -> Result<DeadLetters> {
        let framing = match kafka.registry.client().map_err(Error::registry)? {
            Some(registry) => registry
                .writer_framing(&kafka.objects_topic, &kafka.dead_letter_topic)
                .await
                .map_err(Error::registry)?,
            None => Framing::SingleObject,
        };
        let producer: FutureProducer = kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            // The raw message goes along, and an objects message can be ~4 MB.
            .set("message.max.bytes", "16777216")
            .set("message.timeout.ms", "60000")
            .set("client.id", "taxiway-projector")
            .create()
            .map_err(Error::kafka("creating the dead-letter producer"))?;
        Ok(DeadLetters {
            producer,
            topic: kafka.dead_letter_topic.clone(),
            source_topic: kafka.objects_topic.clone(),
            framing,
        })
    }

    /// The dead letter of a message of the objects topic.
    pub fn letter(&self, record: &Record, reason: String, source: Option<Source>) -> DeadLetter {
        DeadLetter {
            stage: "projector".to_owned(),
            reason,
            source,
            original_topic: Some(self.source_topic.clone()),
            original_partition: Some(record.partition),
            original_offset: Some(record.offset),
            original_key: record.key.clone(),
            payload: Some(record.payload.clone()),
            at: now_micros(),
        }
    }

    /// Publishes one dead letter and waits for the broker's acknowledgement, retrying until it
    /// is stored: the caller commits past the message only afterwards, so it is never lost.
    pub async fn send(&self, letter: &DeadLetter, shutdown: &CancellationToken) -> Result<()> {
        let mut bytes = Vec::new();
        schemas::encode_dead_letter_framed(letter, &self.framing, &mut bytes)
            .map_err(|e| Error::State(format!("encoding a dead letter: {e}")))?;
        let key = letter.original_key.clone().unwrap_or_default();
        let headers = schemas::message::dead_letter_headers(&bytes);
        let mut backoff = Duration::from_millis(100);
        loop {
            let record = FutureRecord::to(&self.topic)
                .payload(&bytes)
                .key(&key)
                .headers(service::kafka_headers(&headers));
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => return Ok(()),
                Err((e, _)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "publishing a dead letter failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Err(Error::Shutdown),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
