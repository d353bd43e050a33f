//! Publishing events on Kafka: topic set-up and an idempotent, compressed, batching producer
//! whose sends are all confirmed before a batch counts as published.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

use schemas::codec::Framing;
use schemas::{DeadLetter, Event};
use service::KafkaArgs;

use crate::error::Error;

/// How ingest creates the topics when they do not exist yet: it is the one stage that does.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Partitions of the topics when ingest has to create them.
    #[arg(
        long,
        env = "TAXIWAY_TOPIC_PARTITIONS",
        default_value_t = 3,
        global = true
    )]
    pub partitions: i32,
    /// Replication factor of the topics when ingest has to create them.
    #[arg(
        long,
        env = "TAXIWAY_TOPIC_REPLICATION",
        default_value_t = 1,
        global = true
    )]
    pub replication: i32,
}

/// As the flags default to.
impl Default for TopicArgs {
    fn default() -> Self {
        TopicArgs {
            partitions: 3,
            replication: 1,
        }
    }
}

/// Largest message on the objects topic. A STIX 2.1 Enterprise `x-mitre-collection` object lists
/// ~25k members and is about 3 MB; 16 MiB leaves room for bigger private collections.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Deliveries awaited at once: librdkafka holds a copy of every message until its report, so
/// this bounds what a bundle pins in the producer whatever its size.
const MAX_IN_FLIGHT: usize = 10_000;

/// How long to wait before offering a message again when librdkafka's local queue is full or
/// refused it for a reason that may pass.
const RETRY_WAIT: Duration = Duration::from_millis(10);

/// Dead letters are kept 30 days: long enough for an operator to look at them after a holiday.
const DEAD_LETTER_RETENTION_MS: &str = "2592000000";

/// An idempotent producer bound to the objects and dead-letter topics.
pub struct Producer {
    producer: FutureProducer,
    objects_topic: String,
    dead_letter_topic: String,
    partitions: i32,
    timeout: Duration,
    /// Single-object, or the registry's wire format with the ids it gave our schemas.
    framing: Framing,
}

impl Producer {
    /// Connects the producer, creates the topics if they are missing, learns the objects
    /// topic's partition count and, with a schema registry, registers the event schemas.
    pub async fn connect(config: &KafkaArgs, topics: &TopicArgs) -> Result<Self, Error> {
        let framing = match config.registry.client()? {
            Some(registry) => {
                registry
                    .writer_framing(&config.objects_topic, &config.dead_letter_topic)
                    .await?
            }
            None => Framing::SingleObject,
        };
        // The producer first, so that getting its producer id overlaps the topic check. It asks
        // for no topic metadata until `partition_count`, so it cannot auto-create a topic
        // before `ensure_topics` made it compacted.
        let producer: FutureProducer = client_config(config)
            .create()
            .map_err(Error::kafka("creating the producer"))?;
        ensure_topics(config, topics).await?;
        let partitions = partition_count(&producer, &config.objects_topic, config.timeout).await?;
        Ok(Producer {
            producer,
            objects_topic: config.objects_topic.clone(),
            dead_letter_topic: config.dead_letter_topic.clone(),
            partitions,
            timeout: config.timeout,
            framing,
        })
    }

    /// Publishes `events` in order on the objects topic, then `letters` on the dead-letter
    /// topic, and returns once Kafka acknowledged every one of them.
    ///
    /// All events of one collection go to one partition (by collection id), and sends are
    /// enqueued one after the other on an idempotent producer, so the partition holds them in
    /// `date_added` order even across retries.
    pub async fn publish(&self, events: &[Event], letters: &[DeadLetter]) -> Result<(), Error> {
        let mut in_flight = InFlight::default();
        // One encoding buffer for every message: librdkafka copies each payload when enqueuing.
        let mut payload = Vec::new();
        for event in events {
            payload.clear();
            schemas::encode_event_framed(event, &self.framing, &mut payload)?;
            let partition = schemas::partition_for(event.collection_id(), self.partitions);
            let key = event.key();
            let record = FutureRecord::to(&self.objects_topic)
                .key(&key)
                .payload(&payload)
                .partition(partition)
                .headers(service::kafka_headers(&schemas::message::event_headers(
                    event, &payload,
                )));
            self.send(record, &mut in_flight).await?;
        }
        for letter in letters {
            payload.clear();
            schemas::encode_dead_letter_framed(letter, &self.framing, &mut payload)?;
            let key = dead_letter_key(letter);
            let record = FutureRecord::to(&self.dead_letter_topic)
                .key(&key)
                .payload(&payload)
                .headers(service::kafka_headers(
                    &schemas::message::dead_letter_headers(&payload),
                ));
            self.send(record, &mut in_flight).await?;
        }
        in_flight.wait_all().await
    }

    /// Enqueues one message, first waiting for a delivery when [`MAX_IN_FLIGHT`] are awaited.
    async fn send(
        &self,
        mut record: FutureRecord<'_, String, Vec<u8>>,
        in_flight: &mut InFlight,
    ) -> Result<(), Error> {
        if in_flight.len() >= MAX_IN_FLIGHT {
            in_flight.wait_one().await?;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let (error, back) = match self.producer.send_result(record) {
                Ok(delivery) => {
                    in_flight.push(delivery);
                    return Ok(());
                }
                Err(refused) => refused,
            };
            let topic = back.topic;
            if is_final(&error) || tokio::time::Instant::now() >= deadline {
                return Err(Error::Kafka {
                    context: format!("sending to {topic}"),
                    source: error,
                });
            }
            record = back;
            // The local queue is full (or a passing refusal): a delivery of ours makes room.
            if in_flight.len() > 0 {
                in_flight.wait_one().await?;
            } else {
                tokio::time::sleep(RETRY_WAIT).await;
            }
        }
    }
}

/// The producer's settings: idempotent with every replica's acknowledgement, compressed, large
/// batches, and messages given up on after the configured Kafka timeout.
fn client_config(config: &KafkaArgs) -> ClientConfig {
    let mut client = config.client_config();
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1048576")
        .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
        .set("message.timeout.ms", config.timeout.as_millis().to_string())
        .set("client.id", "taxiway-ingest");
    client
}

/// Refusals to enqueue a message that no retry can cure (vector's Kafka sink keeps the same
/// list); any other is retried until the Kafka timeout. `QueueFull` is always retried.
fn is_final(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        error,
        KafkaError::MessageProduction(
            Code::InvalidMessage
                | Code::InvalidMessageSize
                | Code::MessageSizeTooLarge
                | Code::UnknownTopicOrPartition
                | Code::InvalidRecord
                | Code::InvalidRequiredAcks
                | Code::TopicAuthorizationFailed
                | Code::UnsupportedForMessageFormat
                | Code::ClusterAuthorizationFailed
                | Code::Fatal
        )
    )
}

/// The deliveries of one [`Producer::publish`] not reported yet.
#[derive(Default)]
struct InFlight(FuturesUnordered<DeliveryFuture>);

impl InFlight {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn push(&mut self, delivery: DeliveryFuture) {
        self.0.push(delivery);
    }

    /// Waits for the next delivery report; a failed delivery fails the publication.
    async fn wait_one(&mut self) -> Result<(), Error> {
        match self.0.next().await {
            Some(report) => delivered(report),
            None => Ok(()),
        }
    }

    /// Waits until every delivery was reported. librdkafka reports each message, delivered or
    /// failed, within `message.timeout.ms`, so this is bounded by the Kafka timeout.
    async fn wait_all(&mut self) -> Result<(), Error> {
        while let Some(report) = self.0.next().await {
            delivered(report)?;
        }
        Ok(())
    }
}

/// One delivery report: a failure names the topic and the broker's reason.
fn delivered(
    report: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
) -> Result<(), Error> {
    match report {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((source, message))) => Err(Error::Kafka {
            context: format!("delivering to {}", message.topic()),
            source,
        }),
        Err(_) => Err(Error::KafkaState(
            "the producer went away before reporting a delivery".to_owned(),
        )),
    }
}

/// Creates the objects topic (compacted: every version has its own key, so compaction only
/// collapses duplicates) and the dead-letter topic when they do not exist yet.
pub async fn ensure_topics(config: &KafkaArgs, topics: &TopicArgs) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config()
        .create()
        .map_err(Error::kafka("creating the admin client"))?;
    let max_message = MAX_MESSAGE_BYTES.to_string();
    let objects = NewTopic::new(
        &config.objects_topic,
        topics.partitions,
        TopicReplication::Fixed(topics.replication),
    )
    .set("cleanup.policy", "compact")
    .set("max.message.bytes", &max_message);
    let dead_letter = NewTopic::new(
        &config.dead_letter_topic,
        topics.partitions,
        TopicReplication::Fixed(topics.replication),
    )
    .set("cleanup.policy", "delete")
    .set("retention.ms", DEAD_LETTER_RETENTION_MS)
    .set("max.message.bytes", &max_message);
    let options = AdminOptions::new().operation_timeout(Some(config.timeout));
    let results = admin
        .create_topics([&objects, &dead_letter], &options)
        .await
        .map_err(Error::kafka("creating topics"))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::KafkaState(format!(
                    "cannot create topic {topic}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// The partition count of `topic`. A topic created a moment ago can show up in metadata without
/// partitions until the controller has propagated it: ask again until it has some, within the
/// Kafka timeout. (Leaders are not waited for: a partition of another collection may be down
/// without keeping this import from its own; sends to a partition not led yet are retried.)
pub async fn partition_count(
    producer: &FutureProducer,
    topic: &str,
    timeout: Duration,
) -> Result<i32, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(5);
    loop {
        let client = producer.clone();
        let lookup = topic.to_owned();
        // librdkafka's metadata call blocks: keep it off the async workers.
        let partitions = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&lookup), timeout)
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == lookup)
                        .map_or(0, |t| t.partitions().len())
                })
        })
        .await
        .map_err(|e| Error::KafkaState(format!("metadata lookup task failed: {e}")))?
        .map_err(Error::kafka(format!("reading metadata of {topic}")))?;
        if let Some(partitions) = i32::try_from(partitions).ok().filter(|p| *p > 0) {
            return Ok(partitions);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::KafkaState(format!(
                "topic {topic} has no partitions after {timeout:?}"
            )));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}

/// The key of an ingest dead letter: where the rejected object was (`uri#position`).
pub(crate) fn dead_letter_key(letter: &DeadLetter) -> String {
    letter
        .source
        .as_ref()
        .map(|s| format!("{}#{}", s.uri, s.position.unwrap_or(-1)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};

    #[test]
    fn the_producer_is_idempotent_waits_for_every_replica_and_compresses() {
        let client = client_config(&KafkaArgs::default());
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("compression.type"), Some("lz4"));
    }

    #[test]
    fn messages_in_flight_are_given_up_on_after_the_configured_kafka_timeout() {
        let client = client_config(&KafkaArgs {
            timeout: Duration::from_secs(45),
            ..KafkaArgs::default()
        });
        assert_eq!(client.get("message.timeout.ms"), Some("45000"));
    }

    #[test]
    fn a_full_queue_is_retried_and_a_message_too_large_is_final() {
        let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(!is_final(&full));
        assert!(is_final(&too_large));
    }

    #[test]
    fn a_failed_delivery_names_the_topic_and_the_reason() {
        let message = OwnedMessage::new(
            None,
            None,
            "objects".to_owned(),
            Timestamp::NotAvailable,
            0,
            0,
            None,
        );
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let error = delivered(Ok(Err((refused.clone(), message))))
            .unwrap_err()
            .to_string();
        assert!(error.contains("delivering to objects"), "{error}");
        assert!(error.contains(&refused.to_string()), "{error}");
    }
}
