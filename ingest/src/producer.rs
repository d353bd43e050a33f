//! Publishing events on Kafka: topic set-up, an idempotent, compressed, batching producer, and
//! in-order sends whose deliveries are all confirmed before a batch counts as published.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode as Code;
use tokio::sync::Notify;

use crate::config::KafkaConfig;
use crate::error::Error;
use schemas::{DeadLetter, Event};

/// Largest message on the objects topic. A STIX 2.1 Enterprise `x-mitre-collection` object lists
/// ~25k members and is about 3 MB; 16 MiB leaves room for bigger private collections.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How many bytes (keys and payloads) of one run may await their delivery report before a
/// send waits: librdkafka holds a copy of each until then, so this bounds the memory a bundle
/// pins in the producer whatever its size (before: 50,000 messages, whatever their size). A
/// message larger than the window goes alone.
///
/// It also makes an import cheaper: librdkafka reuses the memory of delivered messages instead
/// of touching fresh pages for every copy. Enterprise 18.1 in fresh processes, alternating
/// builds (10 each): CPU median 0.375 → 0.300 s, peak RSS 143–146 → 117–123 MB, wall about the
/// same (0.255 → 0.248 s). 4 MiB measured like 8 MiB; 8 leaves room for a broker farther away
/// (8 MiB per round trip).
pub const IN_FLIGHT_WINDOW_BYTES: usize = 8 * 1024 * 1024;

/// Dead letters are kept 30 days: long enough for an operator to look at them after a holiday.
const DEAD_LETTER_RETENTION_MS: &str = "2592000000";

/// The deliveries of one run of sends (a [`Sending`], a batch of dead letters), counted by the
/// producer's delivery callback.
///
/// Why not rust-rdkafka's `FutureProducer`: it allocates a oneshot channel and a boxed sender
/// per message and wakes a future per delivery. Counting makes a send one reference-count
/// increment, and the sender waits only when it must (in-flight bound, queue full, the end).
#[derive(Debug, Default)]
struct Deliveries {
    /// Acknowledged or failed.
    done: AtomicUsize,
    /// Their keys' and payloads' bytes.
    done_bytes: AtomicUsize,
    /// The first failure: every later send of the run is refused with it.
    failed: Mutex<Option<KafkaError>>,
    /// Woken on every delivery; the sender re-checks `done` after each wake-up.
    progress: Notify,
}

impl Deliveries {
    fn failed(&self) -> MutexGuard<'_, Option<KafkaError>> {
        // A poisoned lock only means a delivery callback panicked after storing: keep its value.
        self.failed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one delivery report of a message of `bytes` (`failed`: its error) and wakes the
    /// sender.
    fn delivered(&self, bytes: usize, failed: Option<&KafkaError>) {
        if let Some(error) = failed {
            self.failed().get_or_insert_with(|| error.clone());
        }
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Release);
        self.progress.notify_one();
    }

    /// Waits until `ready` holds; it is asked again after every delivery report.
    async fn wait_for(&self, ready: impl Fn() -> bool) {
        while !ready() {
            // `notify_one` leaves a permit when nobody waits yet, so a report that lands
            // between the check and this wait still wakes it.
            self.progress.notified().await;
        }
    }
}

/// The producer's context: counts each delivery into the [`Deliveries`] its send carried.
struct Counting {
    /// Sends of every run not delivered yet: when none are left, [`Publisher::flush`] has
    /// nothing to wait for.
    undelivered: Arc<AtomicUsize>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = Arc<Deliveries>;

    fn delivery(&self, result: &DeliveryResult<'_>, deliveries: Arc<Deliveries>) {
        self.undelivered.fetch_sub(1, Ordering::Release);
        let (message, failed) = match result {
            Ok(message) => (message, None),
            Err((error, message)) => (message, Some(error)),
        };
        deliveries.delivered(message.key_len() + message.payload_len(), failed);
    }
}

/// An idempotent producer bound to the objects and dead-letter topics.
pub struct Publisher {
    producer: Arc<ThreadedProducer<Counting>>,
    objects_topic: String,
    dead_letter_topic: String,
    partitions: i32,
    timeout: Duration,
    undelivered: Arc<AtomicUsize>,
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
        let undelivered = Arc::new(AtomicUsize::new(0));
        let context = Counting {
            undelivered: undelivered.clone(),
        };
        let producer: ThreadedProducer<Counting> = ClientConfig::new()
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
            .create_with_context(context)
            .map_err(Error::kafka("creating the producer"))?;
        let producer = Arc::new(producer);
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
            undelivered,
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
            run: Run::default(),
            buffer: Vec::new(),
        }
    }

    /// Publishes rejected objects on the dead-letter topic.
    pub async fn dead_letters(&self, letters: &[DeadLetter]) -> Result<(), Error> {
        let mut run = Run::default();
        for letter in letters {
            let payload = schemas::encode_dead_letter(letter)?;
            let key = letter
                .source
                .as_ref()
                .map(|s| format!("{}#{}", s.uri, s.position.unwrap_or(-1)))
                .unwrap_or_default();
            let record =
                BaseRecord::with_opaque_to(&self.dead_letter_topic, run.deliveries.clone())
                    .key(&key)
                    .payload(&payload);
            self.enqueue(record, &mut run).await?;
        }
        run.drain(&self.dead_letter_topic).await
    }

    async fn enqueue<K, P>(
        &self,
        mut record: BaseRecord<'_, K, P, Arc<Deliveries>>,
        run: &mut Run,
    ) -> Result<(), Error>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let topic = record.topic;
        run.check(topic)?;
        let bytes = record.key.map_or(0, |k| k.to_bytes().len())
            + record.payload.map_or(0, |p| p.to_bytes().len());
        if !run.has_room_for(bytes) {
            run.wait(topic, |run| run.has_room_for(bytes)).await?;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            // Counted before the send: the delivery callback may run before `send` returns.
            self.undelivered.fetch_add(1, Ordering::Relaxed);
            match self.producer.send(record) {
                Ok(()) => {
                    run.sent += 1;
                    run.sent_bytes += bytes;
                    return Ok(());
                }
                Err((e, back)) => {
                    self.undelivered.fetch_sub(1, Ordering::Relaxed);
                    record = back;
                    if !matches!(e, KafkaError::MessageProduction(Code::QueueFull)) {
                        return Err(Error::Kafka {
                            context: format!("sending to {topic}"),
                            source: e,
                        });
                    }
                }
            }
            // The local queue is full: wait for one more of ours to be delivered, or a moment
            // if none is ours, then try again until the Kafka timeout.
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::KafkaState(format!(
                    "producer queue for {topic} stayed full for {:?}",
                    self.timeout
                )));
            }
            let done = run.deliveries.done.load(Ordering::Acquire);
            if done < run.sent {
                run.wait(topic, |run| {
                    run.deliveries.done.load(Ordering::Acquire) > done
                })
                .await?;
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Waits until everything enqueued has been delivered (used at shutdown). Returns at once
    /// when every send was already reported delivered: librdkafka's flush can otherwise sit out
    /// a 100 ms poll for internal events (measured after an import whose every delivery had
    /// been confirmed).
    pub fn flush(&self) -> Result<(), Error> {
        if self.undelivered.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.producer
            .flush(self.timeout)
            .map_err(Error::kafka("flushing the producer"))
    }
}

/// The sends of one run and their deliveries.
#[derive(Debug, Default)]
struct Run {
    sent: usize,
    sent_bytes: usize,
    deliveries: Arc<Deliveries>,
}

impl Run {
    /// Sends not reported delivered yet.
    fn undelivered(&self) -> usize {
        self.sent
            .saturating_sub(self.deliveries.done.load(Ordering::Acquire))
    }

    /// Whether a message of `bytes` may be sent now: it fits in the window beside what awaits
    /// its report, or nothing does.
    fn has_room_for(&self, bytes: usize) -> bool {
        // Read while reports arrive: off by the one message being reported at most.
        let outstanding = self.undelivered();
        let bytes_out = self
            .sent_bytes
            .saturating_sub(self.deliveries.done_bytes.load(Ordering::Relaxed));
        outstanding == 0 || bytes_out + bytes <= IN_FLIGHT_WINDOW_BYTES
    }

    /// Waits until `ready` holds for the run; a failed delivery names the topic. Not bounded
    /// here: librdkafka reports every message, delivered or failed, within
    /// `message.timeout.ms`.
    async fn wait(&self, topic: &str, ready: impl Fn(&Run) -> bool) -> Result<(), Error> {
        self.deliveries.wait_for(|| ready(self)).await;
        self.check(topic)
    }

    /// Waits until every send of the run has been delivered.
    async fn drain(&self, topic: &str) -> Result<(), Error> {
        self.wait(topic, |run| run.undelivered() == 0).await
    }

    /// The first failed delivery of the run, naming the topic.
    fn check(&self, topic: &str) -> Result<(), Error> {
        match self.deliveries.failed().clone() {
            None => Ok(()),
            Some(source) => Err(Error::Kafka {
                context: format!("delivering to {topic}"),
                source,
            }),
        }
    }
}

/// Events on their way to the objects topic; see [`Publisher::sending`].
pub struct Sending<'p> {
    publisher: &'p Publisher,
    run: Run,
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

    /// Enqueues the encoded event in `buffer` on its collection's partition.
    async fn enqueue_buffer(&mut self, key: &str, collection_id: &str) -> Result<(), Error> {
        let publisher = self.publisher;
        let partition = schemas::partition_for(collection_id, publisher.partitions);
        let record =
            BaseRecord::with_opaque_to(&publisher.objects_topic, self.run.deliveries.clone())
                .key(key)
                .payload(self.buffer.as_slice())
                .partition(partition);
        publisher.enqueue(record, &mut self.run).await
    }

    /// Waits until Kafka acknowledged every event sent.
    pub async fn finish(self) -> Result<(), Error> {
        self.run.drain(&self.publisher.objects_topic).await
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
    producer: Arc<ThreadedProducer<Counting>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: usize = IN_FLIGHT_WINDOW_BYTES / 8;

    fn refused() -> KafkaError {
        KafkaError::MessageProduction(Code::MessageSizeTooLarge)
    }

    /// A run that sent `messages` of `bytes` each, none reported yet.
    fn run_with(messages: usize, bytes: usize) -> Run {
        Run {
            sent: messages,
            sent_bytes: messages * bytes,
            deliveries: Arc::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_waits_until_the_window_has_room_for_it() {
        // Ten eighths of the window await their reports: one more eighth fits once three of
        // them are reported (7 + 1 = 8 eighths).
        let run = run_with(10, CHUNK);
        let deliveries = run.deliveries.clone();
        assert!(!run.has_room_for(CHUNK));
        let waiter = tokio::spawn(async move {
            run.deliveries.wait_for(|| run.has_room_for(CHUNK)).await;
            run.deliveries.done.load(Ordering::Acquire)
        });
        for _ in 0..2 {
            deliveries.delivered(CHUNK, None);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!waiter.is_finished(), "sent with 8 eighths still in flight");
        deliveries.delivered(CHUNK, None);
        let done = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the third report makes room")
            .unwrap();
        assert_eq!(done, 3);
    }

    #[test]
    fn a_message_larger_than_the_window_goes_alone() {
        let run = run_with(1, 10);
        assert!(run.has_room_for(IN_FLIGHT_WINDOW_BYTES - 10));
        assert!(!run.has_room_for(2 * IN_FLIGHT_WINDOW_BYTES));
        run.deliveries.delivered(10, None);
        assert_eq!(run.undelivered(), 0);
        assert!(run.has_room_for(2 * IN_FLIGHT_WINDOW_BYTES));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_from_another_thread_are_never_missed() {
        // Reports race with the sender's check-then-wait: one that wakes nobody would leave the
        // sender waiting forever for the last ones.
        const SENT: usize = 100_000;
        let run = run_with(SENT, 1);
        let reporter = std::thread::spawn({
            let deliveries = run.deliveries.clone();
            move || {
                for _ in 0..SENT {
                    deliveries.delivered(1, None);
                }
            }
        });
        for outstanding in (0..SENT).step_by(997).rev() {
            tokio::time::timeout(
                Duration::from_secs(10),
                run.deliveries.wait_for(|| run.undelivered() <= outstanding),
            )
            .await
            .expect("every report wakes the sender");
            assert!(run.undelivered() <= outstanding);
        }
        reporter.join().unwrap();
        assert_eq!(run.undelivered(), 0);
        assert!(run.has_room_for(IN_FLIGHT_WINDOW_BYTES));
    }

    #[test]
    fn the_first_failure_fails_the_run_naming_the_topic() {
        let run = run_with(3, 1);
        assert!(run.check("t").is_ok());
        run.deliveries.delivered(1, None);
        run.deliveries.delivered(1, Some(&refused()));
        run.deliveries
            .delivered(1, Some(&KafkaError::MessageProduction(Code::QueueFull)));
        let error = run.check("objects").unwrap_err().to_string();
        assert!(error.contains("delivering to objects"), "{error}");
        assert!(error.contains(&refused().to_string()), "{error}");
        assert_eq!(run.undelivered(), 0);
    }
}
