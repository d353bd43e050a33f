//! Rebuilding the checkpoint by reading the objects topic from its beginning to its end.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use service::KafkaArgs;

/// What the rebuild read, for the start-up log line.
#[derive(Debug, Clone, Copy, Default)]
struct Replayed {
    messages: u64,
    undecodable: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Checkpoint {
    /// Rebuilds the checkpoint from a node's embedded log, its objects topic from offset 0 to
    /// its end, on a blocking thread (SQLite reads wait on the disk).
    pub async fn load_embedded(log: &eventlog::EmbeddedLog) -> Result<Checkpoint, Error> {
        const PAGE: usize = 1000;
        let log = log.clone();
        let started = Instant::now();
        let (checkpoint, replayed) = tokio::task::spawn_blocking(move || {
            let mut checkpoint = Checkpoint::default();
            let mut replayed = Replayed::default();
            let ids = schemas::registry::SchemaIds::default();
            let mut from = 0;
            loop {
                let page = log.read(schemas::OBJECTS_TOPIC, from, PAGE)?;
                let Some(last) = page.last() else { break };
                from = last.offset + 1;
                for stored in &page {
                    let Some(payload) = &stored.record.payload else {
                        continue;
                    };
                    replayed.messages += 1;
                    replayed.bytes += payload.len() as u64;
                    match schemas::decode_event_with(payload, &ids) {
                        Ok(event) => checkpoint.observe(&event),
                        Err(e) => {
                            replayed.undecodable += 1;
                            tracing::warn!(
                                offset = stored.offset,
                                error = %e,
                                "skipping an undecodable record while rebuilding the checkpoint"
                            );
                        }
                    }
                }
            }
            Ok::<_, Error>((checkpoint, replayed))
        })
        .await
        .map_err(|e| Error::Task(format!("checkpoint reader task failed: {e}")))??;
        tracing::info!(
            records = replayed.messages,
            undecodable = replayed.undecodable,
            mb = replayed.bytes as f64 / 1e6,
            seconds = started.elapsed().as_secs_f64(),
            "checkpoint rebuilt from the embedded log"
        );
        Ok(checkpoint)
    }

    /// Rebuilds the checkpoint by reading every partition of the objects topic from offset 0 up
    /// to the end it had when the read started. Runs on a blocking thread: librdkafka's poll
    /// blocks.
    pub async fn load(config: &KafkaArgs) -> Result<Checkpoint, Error> {
        let reader = config.clone();
        let resolver = service::SchemaResolver::new(config.registry.client()?);
        let runtime = tokio::runtime::Handle::current();
        let (checkpoint, replayed) =
            tokio::task::spawn_blocking(move || read_all(&reader, resolver, &runtime))
                .await
                .map_err(|e| Error::KafkaState(format!("checkpoint reader task failed: {e}")))??;
        let size = checkpoint.size();
        tracing::info!(
            topic = %config.objects_topic,
            messages = replayed.messages,
            mb = replayed.bytes as f64 / 1e6,
            undecodable = replayed.undecodable,
            ms = replayed.elapsed.as_millis() as u64,
            collections = size.collections,
            versions = size.versions,
            releases = size.releases,
            "checkpoint rebuilt from the topic"
        );
        Ok(checkpoint)
    }
}

/// A partition's offsets. A topic created a moment ago (by this run's producer, concurrently)
/// can answer "not leader" until its leader is elected: retry until the Kafka timeout.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64), Error> {
    let deadline = Instant::now() + timeout;
    // A leader is elected within milliseconds of creation: start with short waits.
    let mut wait = Duration::from_millis(5);
    loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Ok(w) => return Ok(w),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(topic, partition, error = %e, "partition not ready yet");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(Error::Kafka {
                    context: format!("reading the end of {topic}/{partition}"),
                    source: e,
                });
            }
        }
    }
}

/// Registry ids met on the topic are looked up through `resolver`, on `runtime` (this runs on a
/// blocking thread).
fn read_all(
    config: &KafkaArgs,
    resolver: service::SchemaResolver,
    runtime: &tokio::runtime::Handle,
) -> Result<(Checkpoint, Replayed), Error> {
    let started = Instant::now();
    let topic = config.objects_topic.as_str();
    // No group membership and no commits: this reader owns nothing on the broker.
    let consumer: BaseConsumer = config
        .client_config()
        .set("group.id", "taxiway-ingest-checkpoint")
        .set("enable.auto.commit", "false")
        // End-of-partition events also close a partition whose last offsets were compacted away.
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "67108864")
        .create()
        .map_err(Error::kafka("creating the checkpoint reader"))?;
    let mut reader = Reader {
        resolver,
        runtime: runtime.clone(),
    };
    read_with(&consumer, config, topic, started, &mut reader)
}

/// Decodes either framing, looking registry ids up as they come.
struct Reader {
    resolver: service::SchemaResolver,
    runtime: tokio::runtime::Handle,
}

impl Reader {
    fn decode(&mut self, payload: &[u8]) -> Result<Result<schemas::Event, schemas::Error>, Error> {
        let pending = self.resolver.pending([payload]);
        if !pending.is_empty() {
            self.runtime.block_on(self.resolver.resolve(&pending))?;
        }
        Ok(schemas::decode_event_with(payload, self.resolver.ids()))
    }
}

fn read_with(
    consumer: &BaseConsumer,
    config: &KafkaArgs,
    topic: &str,
    started: Instant,
    reader: &mut Reader,
) -> Result<(Checkpoint, Replayed), Error> {
    let metadata = consumer
        .fetch_metadata(Some(topic), config.timeout)
        .map_err(Error::kafka(format!("reading metadata of {topic}")))?;
    let partitions = service::partition_ids(&metadata, topic);

    // Read up to each partition's end as of now; later events are ours or another run's
    // and will be seen by the next rebuild.
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in partitions {
        let (low, high) = watermarks(consumer, topic, partition, config.timeout)?;
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(Error::kafka("assigning partitions"))?;
            ends.push((partition, high));
        }
    }
    let mut checkpoint = Checkpoint::default();
    let mut replayed = Replayed::default();
    if ends.is_empty() {
        replayed.elapsed = started.elapsed();
        return Ok((checkpoint, replayed));
    }
    consumer
        .assign(&assignment)
        .map_err(Error::kafka("assigning partitions"))?;

    let mut open: HashSet<i32> = ends.iter().map(|(p, _)| *p).collect();
    let mut idle_since = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            None => {
                if idle_since.elapsed() > config.timeout {
                    return Err(Error::KafkaState(format!(
                        "no data from {topic} for {:?} while rebuilding the checkpoint \
                         ({} partitions not read to the end)",
                        config.timeout,
                        open.len()
                    )));
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(e)) => {
                return Err(Error::Kafka {
                    context: format!("reading {topic}"),
                    source: e,
                });
            }
            Some(Ok(message)) => {
                idle_since = Instant::now();
                let payload = message.payload().unwrap_or_default();
                replayed.messages += 1;
                replayed.bytes += payload.len() as u64;
                match reader.decode(payload)? {
                    Ok(event) => checkpoint.observe(&event),
                    Err(e) => {
                        replayed.undecodable += 1;
                        tracing::warn!(
                            partition = message.partition(),
                            offset = message.offset(),
                            error = %e,
                            "skipping an undecodable message while rebuilding the checkpoint"
                        );
                    }
                }
                let end = ends
                    .iter()
                    .find(|(p, _)| *p == message.partition())
                    .map(|(_, high)| *high);
                if end.is_some_and(|high| message.offset() + 1 >= high) {
                    open.remove(&message.partition());
                }
            }
        }
    }
    replayed.elapsed = started.elapsed();
    Ok((checkpoint, replayed))
}
