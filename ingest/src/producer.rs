//! Publishing events on Kafka: topic set-up, an idempotent, compressed, batching producer, and
//! in-order sends whose deliveries are all confirmed before a batch counts as published.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode as Code;

use crate::config::KafkaConfig;
use crate::error::Error;
use schemas::{DeadLetter, Event, ObjectVersionAdded};

/// Largest message on the objects topic. A STIX 2.1 Enterprise `x-mitre-collection` object lists
/// ~25k members and is about 3 MB; 16 MiB leaves room for bigger private collections.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How many deliveries may be outstanding before a send waits for the oldest one: bounds the
/// memory a large bundle can pin in the producer queue.
const MAX_IN_FLIGHT: usize = 50_000;

/// Dead letters are kept 30 days: long enough for an operator to look at them after a holiday.
const DEAD_LETTER_RETENTION_MS: &str = "2592000000";

/// An idempotent producer bound to the objects and dead-letter topics.
pub struct Publisher {
    producer: FutureProducer,
    objects_topic: String,
    dead_letter_topic: String,
    partitions: i32,
    timeout: Duration,
    /// Sends whose delivery nobody has awaited yet: when none are left, [`Publisher::flush`]
    /// has nothing to wait for.
    unconfirmed: AtomicUsize,
}

impl Publisher {
    /// Connects the producer, creates the topics if they are missing and learns the objects
    /// topic's partition count.
    pub async fn connect(config: &KafkaConfig) -> Result<Self, Error> {
        // The producer first: a new idempotent producer can take up to 0.5 s to get its
        // producer id (librdkafka's PID timer, when its first look finds no broker connection
        // up yet), and that wait then overlaps the topic check instead of following it. It
        // asks for no topic metadata until `partition_count`, so it cannot auto-create a topic
        // before `ensure_topics` made it compacted.
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set("batch.size", "1048576")
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
            .set("message.timeout.ms", "120000")
            .set("client.id", "taxiway-ingest")
            // As for the checkpoint reader: with sparse connections librdkafka 2.12 drops the
            // bootstrap connection once it knows the brokers and reconnects only when it next
            // needs a leader, so the partition-count lookup below took 45–55 ms instead of
            // ~2 ms (`dev/bench-small-import`: re-import median 63 → 33–36 ms, with the
            // retry settings below).
            .set("enable.sparse.connections", "false")
            // The first send to a topic created a moment ago can come back "not leader" although
            // metadata already names the leader (KRaft publishes it before the broker takes the
            // lead): a retry after the default 100 ms was +100 ms on 4 of 10 first imports. The
            // backoff still doubles per retry up to `retry.backoff.max.ms` (1 s).
            .set("retry.backoff.ms", "10")
            .create()
            .map_err(Error::kafka("creating the producer"))?;
        ensure_topics(config).await?;
        let partitions = partition_count(
            producer.clone(),
            config.objects_topic.clone(),
            config.timeout,
        )
        .await?;
        Ok(Publisher {
            producer,
            objects_topic: config.objects_topic.clone(),
            dead_letter_topic: config.dead_letter_topic.clone(),
            partitions,
            timeout: config.timeout,
            unconfirmed: AtomicUsize::new(0),
        })
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Publishes events in order and returns once Kafka acknowledged every one of them.
    pub async fn publish(&self, events: &[Event]) -> Result<(), Error> {
        let mut sending = self.sending();
        for event in events {
            sending.send(event).await?;
        }
        sending.finish().await
    }

    /// Starts sending events in order, one [`Sending::send`] at a time, so a caller can hand
    /// events over while it is still producing them.
    ///
    /// All events of one collection go to one partition (by collection id), and sends are
    /// enqueued one after the other on an idempotent producer, so the partition holds them in
    /// `date_added` order even across retries.
    pub fn sending(&self) -> Sending<'_> {
        Sending {
            publisher: self,
            pending: VecDeque::new(),
            buffer: Vec::new(),
        }
    }

    /// Publishes rejected objects on the dead-letter topic.
    pub async fn dead_letters(&self, letters: &[DeadLetter]) -> Result<(), Error> {
        let mut pending = VecDeque::new();
        for letter in letters {
            let payload = schemas::encode_dead_letter(letter)?;
            let key = letter
                .source
                .as_ref()
                .map(|s| format!("{}#{}", s.uri, s.position.unwrap_or(-1)))
                .unwrap_or_default();
            let record = FutureRecord::to(&self.dead_letter_topic)
                .key(&key)
                .payload(&payload);
            self.enqueue(record, &mut pending).await?;
        }
        self.drain(pending, &self.dead_letter_topic).await
    }

    async fn enqueue<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        pending: &mut VecDeque<DeliveryFuture>,
    ) -> Result<(), Error>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if pending.len() >= MAX_IN_FLIGHT {
                let oldest = pending.pop_front();
                if let Some(delivery) = oldest {
                    self.confirm(delivery, record.topic).await?;
                }
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.unconfirmed.fetch_add(1, Ordering::Relaxed);
                    pending.push_back(delivery);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(Code::QueueFull), back)) => {
                    // The local queue is full: wait for the oldest delivery, or a moment if
                    // none is ours, then try again until the Kafka timeout.
                    record = back;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::KafkaState(format!(
                            "producer queue for {} stayed full for {:?}",
                            record.topic, self.timeout
                        )));
                    }
                    match pending.pop_front() {
                        Some(delivery) => self.confirm(delivery, record.topic).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, back)) => {
                    return Err(Error::Kafka {
                        context: format!("sending to {}", back.topic),
                        source: e,
                    });
                }
            }
        }
    }

    /// Awaits one delivery; an error names the topic.
    async fn confirm(&self, delivery: DeliveryFuture, topic: &str) -> Result<(), Error> {
        let outcome = delivery.await;
        self.unconfirmed.fetch_sub(1, Ordering::Release);
        match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(Error::Kafka {
                context: format!("delivering to {topic}"),
                source: e,
            }),
            Err(_) => Err(Error::KafkaState(format!(
                "producer closed before delivering to {topic}"
            ))),
        }
    }

    async fn drain(&self, pending: VecDeque<DeliveryFuture>, topic: &str) -> Result<(), Error> {
        for delivery in pending {
            self.confirm(delivery, topic).await?;
        }
        Ok(())
    }

    /// Waits until everything enqueued has been delivered (used at shutdown). Returns at once
    /// when every send's delivery was already awaited: librdkafka's flush can otherwise sit out
    /// a 100 ms poll for internal events (measured after an import whose every delivery had
    /// been confirmed).
    pub fn flush(&self) -> Result<(), Error> {
        if self.unconfirmed.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.producer
            .flush(self.timeout)
            .map_err(Error::kafka("flushing the producer"))
    }
}

/// Events on their way to the objects topic; see [`Publisher::sending`].
pub struct Sending<'p> {
    publisher: &'p Publisher,
    pending: VecDeque<DeliveryFuture>,
    /// One encoding buffer for every event: the producer copies each payload when enqueuing.
    buffer: Vec<u8>,
}

impl Sending<'_> {
    /// Encodes and enqueues one event; waits only when the producer queue is full.
    pub async fn send(&mut self, event: &Event) -> Result<(), Error> {
        self.buffer.clear();
        schemas::encode_event_into(event, &mut self.buffer)?;
        self.enqueue_buffer(&event.key(), event.collection_id())
            .await
    }

    /// [`Sending::send`] for a version event given as a borrowed view (what a bundle's objects
    /// are published as: their JSON is encoded straight from the bundle's text).
    pub async fn send_version(&mut self, event: &ObjectVersionAdded<&str>) -> Result<(), Error> {
        self.buffer.clear();
        schemas::encode_object_version_into(event, &mut self.buffer)?;
        self.enqueue_buffer(&event.key(), event.collection_id).await
    }

    /// Enqueues the encoded event in `buffer` on its collection's partition.
    async fn enqueue_buffer(&mut self, key: &str, collection_id: &str) -> Result<(), Error> {
        let publisher = self.publisher;
        let partition = schemas::partition_for(collection_id, publisher.partitions);
        let record = FutureRecord::to(&publisher.objects_topic)
            .key(key)
            .payload(self.buffer.as_slice())
            .partition(partition);
        publisher.enqueue(record, &mut self.pending).await
    }

    /// Waits until Kafka acknowledged every event sent.
    pub async fn finish(self) -> Result<(), Error> {
        let topic = &self.publisher.objects_topic;
        self.publisher.drain(self.pending, topic).await
    }
}

/// Creates the objects topic (compacted: every version has its own key, so compaction only
/// collapses duplicates) and the dead-letter topic when they do not exist yet.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .map_err(Error::kafka("creating the admin client"))?;
    let max_message = MAX_MESSAGE_BYTES.to_string();
    let objects = NewTopic::new(
        &config.objects_topic,
        config.partitions,
        TopicReplication::Fixed(config.replication),
    )
    .set("cleanup.policy", "compact")
    .set("max.message.bytes", &max_message);
    let dead_letter = NewTopic::new(
        &config.dead_letter_topic,
        config.partitions,
        TopicReplication::Fixed(config.replication),
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
    crate::teardown::drop_in_background(admin, "admin");
    Ok(())
}

async fn partition_count(
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
) -> Result<i32, Error> {
    // A topic created a moment ago can show up in metadata without partitions until the
    // controller has propagated it: ask again until it has some, within the Kafka timeout.
    // Propagation takes milliseconds, and the lookup itself ~2 ms: start with short waits.
    // (Leaders are not waited for: a partition of another collection may be down without
    // keeping this import from its own; sends to a partition not led yet are retried.)
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(5);
    loop {
        let client = producer.clone();
        let lookup = topic.clone();
        // librdkafka's metadata call blocks: keep it off the async workers.
        let metadata = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&lookup), timeout)
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == lookup)
                        .map(|t| t.partitions().len())
                        .unwrap_or(0)
                })
        })
        .await
        .map_err(|e| Error::KafkaState(format!("metadata lookup task failed: {e}")))?
        .map_err(Error::kafka(format!("reading metadata of {topic}")))?;
        if let Some(partitions) = i32::try_from(metadata).ok().filter(|p| *p > 0) {
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
