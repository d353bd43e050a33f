//! `taxiway export`: the node's event log replayed into Kafka, each record as the message ingest
//! would have produced (key, payload and headers unchanged; an objects message on the partition
//! of its collection), so a projector there builds what the node serves.

use eventlog::EmbeddedLog;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::message::COLLECTION_ID;
use schemas::{DEAD_LETTER_TOPIC, OBJECTS_TOPIC};

use crate::config::ExportConfig;
use crate::error::Error;

/// Records read from the log at a time.
const PAGE: usize = 1000;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    pub objects: u64,
    pub dead_letters: u64,
}

/// Exports the objects and dead-letter topics of the log in `config.data` to the topics
/// `config.kafka` names, creating them as ingest would.
pub async fn export(config: &ExportConfig) -> Result<Exported, Error> {
    let log = EmbeddedLog::open(&config.data.log_path())?;
    ingest::ensure_topics(&config.kafka, &config.topics).await?;
    let producer: FutureProducer = config
        .kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("message.max.bytes", "16777216")
        .set("client.id", "taxiway-export")
        .create()
        .map_err(|e| Error::Kafka(format!("creating the producer: {e}")))?;
    // Ingest's own lookup: a topic created a moment ago can show no partitions yet.
    let partitions =
        ingest::partition_count(&producer, &config.kafka.objects_topic, config.kafka.timeout)
            .await?;
    let objects = copy(
        &log,
        OBJECTS_TOPIC,
        &producer,
        &config.kafka.objects_topic,
        Some(partitions),
    )
    .await?;
    let dead_letters = copy(
        &log,
        DEAD_LETTER_TOPIC,
        &producer,
        &config.kafka.dead_letter_topic,
        None,
    )
    .await?;
    Ok(Exported {
        objects,
        dead_letters,
    })
}

/// Copies one topic of the log, in offset order, waiting for every acknowledgement.
async fn copy(
    log: &EmbeddedLog,
    from: &'static str,
    producer: &FutureProducer,
    to: &str,
    partitions: Option<i32>,
) -> Result<u64, Error> {
    let mut next = 0;
    let mut copied = 0;
    loop {
        let reader = log.clone();
        let page = tokio::task::spawn_blocking(move || reader.read(from, next, PAGE))
            .await
            .map_err(|e| Error::Task(format!("reading the log: {e}")))??;
        let Some(last) = page.last() else {
            return Ok(copied);
        };
        next = last.offset + 1;
        // Sent one after the other on an idempotent producer: each partition keeps log order.
        let mut deliveries = Vec::with_capacity(page.len());
        for stored in &page {
            let record = &stored.record;
            let headers = record.headers.iter().fold(
                OwnedHeaders::new_with_capacity(record.headers.len()),
                |all, (key, value)| {
                    all.insert(Header {
                        key,
                        value: Some(value),
                    })
                },
            );
            let mut message = FutureRecord::<Vec<u8>, Vec<u8>>::to(to)
                .key(&record.key)
                .headers(headers);
            if let Some(payload) = &record.payload {
                message = message.payload(payload);
            }
            if let Some(partitions) = partitions {
                let collection = record
                    .headers
                    .iter()
                    .find(|(name, _)| name == COLLECTION_ID)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                message = message.partition(schemas::partition_for(&collection, partitions));
            }
            let delivery = producer
                .send_result(message)
                .map_err(|(e, _)| Error::Kafka(format!("sending to {to}: {e}")))?;
            deliveries.push(delivery);
        }
        for delivery in deliveries {
            delivery
                .await
                .map_err(|_| Error::Kafka(format!("sending to {to}: the producer went away")))?
                .map_err(|(e, _)| Error::Kafka(format!("sending to {to}: {e}")))?;
            copied += 1;
        }
        tracing::debug!(topic = to, copied, "exporting");
    }
}
