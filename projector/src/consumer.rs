//! The Kafka side of the projector: a consumer group member reading the objects topic in batches, with commits after the writes.
//!
//! Delivery guarantee: at least once, as in rust-rdkafka's `examples/at_least_once.rs`. Offsets
//! are committed only by [`EventConsumer::commit`], which the caller invokes after every
//! message of the batch has been written (or dead-lettered); the committed offset of a
//! partition is the one after the last message of the batch, so everything before it in
//! partition order is done. Precondition: the writes are idempotent (they are, see
//! [`rows`](crate::rows)), so a message applied again after a crash changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use service::KafkaArgs;

use crate::config::MembershipArgs;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::gaps::Committed;

/// How long [`EventConsumer::rewind`] keeps trying: longer than the default session timeout
/// (10 s, see [`MembershipArgs`]), after which the broker drops a member that vanished without
/// leaving (or a static member, which never leaves). A longer session timeout makes rewinds
/// after a restart wait longer; past this they fail, and the process exits to be restarted.
const REWIND_PATIENCE: Duration = Duration::from_secs(60);

/// One message as the projector needs it (owned: batches outlive the consumer's buffers).
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A subscribed member of group `group` on `topic`.
pub struct EventConsumer {
    consumer: Arc<StreamConsumer>,
    topic: String,
    group: String,
    timeout: Duration,
}

impl EventConsumer {
    /// A consumer of `group` on the objects topic, not yet subscribed: the feed first compares
    /// the group's committed offsets with the projections (and may rewind them), then calls
    /// [`EventConsumer::subscribe`]. A group without committed offsets starts at the beginning
    /// of the topic: the topic is the source of truth, and a new generation must see all of it.
    pub fn new(
        kafka: &KafkaArgs,
        membership: &MembershipArgs,
        group: &str,
    ) -> Result<EventConsumer> {
        let topic = kafka.objects_topic.as_str();
        let timeout = kafka.timeout;
        let mut config = kafka.client_config();
        config
            .set("group.id", group)
            .set(
                "session.timeout.ms",
                membership.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                membership.heartbeat_interval.as_millis().to_string(),
            );
        if let Some(id) = &membership.instance_id {
            config.set("group.instance.id", id);
        }
        let consumer: StreamConsumer = config
            .set("client.id", "taxiway-projector")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // One ObjectVersionAdded can be ~4 MB (Enterprise's x-mitre-collection object):
            // the fetch limits must let the biggest message through and keep batches flowing.
            .set("max.partition.fetch.bytes", "16777216")
            .set("fetch.max.bytes", "67108864")
            .set("queued.max.messages.kbytes", "262144")
            .create()
            .map_err(Error::kafka(format!(
                "creating the consumer of group {group}"
            )))?;
        Ok(EventConsumer {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            group: group.to_owned(),
            timeout,
        })
    }

    /// Joins the group and subscribes to the objects topic.
    pub fn subscribe(&self) -> Result<()> {
        self.consumer
            .subscribe(&[self.topic.as_str()])
            .map_err(Error::kafka(format!("subscribing to {}", self.topic)))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Per partition of the topic (none while the topic does not exist): the group's committed
    /// offset and the low watermark. Blocking round trips, run on a blocking thread.
    pub async fn committed(&self) -> Result<BTreeMap<i32, Committed>> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || committed(&consumer, &topic, timeout))
            .await
            .map_err(|e| Error::State(format!("committed offset reader task failed: {e}")))?
    }

    /// Commits `offsets` for the group before it is joined, so that subscribing resumes there.
    /// Kafka takes such a commit only while the group has no member; right after this process
    /// left the group (a restarted feed) the broker may still be removing it, so this retries
    /// for a while.
    pub async fn rewind(
        &self,
        offsets: &BTreeMap<i32, i64>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in offsets {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .map_err(Error::kafka("building the rewind"))?;
        }
        let deadline = tokio::time::Instant::now() + REWIND_PATIENCE;
        let mut backoff = Duration::from_millis(200);
        loop {
            let consumer = self.consumer.clone();
            let attempt = tpl.clone();
            let result =
                tokio::task::spawn_blocking(move || consumer.commit(&attempt, CommitMode::Sync))
                    .await
                    .map_err(|e| Error::State(format!("rewind task failed: {e}")))?;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(group = %self.group, error = %e, "rewinding the group failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Err(Error::Shutdown),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(Error::kafka(format!("rewinding group {}", self.group))(e));
                }
            }
        }
    }

    /// The next batch: waits up to `idle` for a first message, then takes what arrives within
    /// `wait`, up to `max` messages. Empty on shutdown or when nothing arrived.
    pub async fn next_batch(
        &self,
        max: usize,
        wait: Duration,
        idle: Duration,
        shutdown: &CancellationToken,
    ) -> Vec<Record> {
        let mut batch = Vec::new();
        let first = tokio::select! {
            () = shutdown.cancelled() => return batch,
            () = tokio::time::sleep(idle) => return batch,
            received = self.consumer.recv() => received,
        };
        match first {
            Ok(m) => batch.push(record(&m)),
            Err(e) => {
                // librdkafka reports transient broker and transport errors here and recovers
                // by itself; nothing is consumed, so there is nothing to skip.
                tracing::warn!(error = %e, "Kafka consumer error");
                return batch;
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < max.max(1) {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(record(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        batch
    }

    /// Commits, per partition, the offset after the last message of `batch`.
    pub fn commit(&self, batch: &[Record], mode: Mode) -> Result<()> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for r in batch {
            let slot = next.entry(r.partition).or_insert(r.offset + 1);
            *slot = (*slot).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .map_err(Error::kafka("building the commit"))?;
        }
        let mode = match mode {
            Mode::Async => CommitMode::Async,
            Mode::Sync => CommitMode::Sync,
        };
        self.consumer
            .commit(&tpl, mode)
            .map_err(Error::kafka(format!(
                "committing offsets of {}",
                self.group
            )))
    }

    /// Per partition of the topic: (next offset to process, high watermark). `applied` holds
    /// the next offsets this process has applied; other partitions count from the group's
    /// committed offset, else from the low watermark. Blocking network calls (one round trip
    /// per partition, seconds on a busy broker), so they run on a blocking thread, and the
    /// future owns what it needs: callers run it beside consumption instead of pausing it.
    pub fn positions(
        &self,
        applied: BTreeMap<i32, i64>,
    ) -> impl std::future::Future<Output = Result<BTreeMap<i32, (i64, i64)>>> + Send + 'static {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let timeout = self.timeout;
        async move {
            tokio::task::spawn_blocking(move || positions(&consumer, &topic, timeout, &applied))
                .await
                .map_err(|e| Error::State(format!("position reader task failed: {e}")))?
        }
    }

    /// Leaves the group now (the next member gets the partitions without waiting for a
    /// session timeout).
    pub fn close(self) {
        self.consumer.unsubscribe();
    }
}

/// How [`EventConsumer::commit`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fire and forget: a failed commit only means re-applying idempotent writes.
    Async,
    /// Wait for the broker: before handing the group to another process.
    Sync,
}

/// See [`EventConsumer::committed`].
fn committed(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, Committed>> {
    // Metadata of every topic: asking for one by name could create it on a broker that
    // auto-creates topics, before ingest chose its settings.
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(Error::kafka("reading topic metadata"))?;
    let mut tpl = TopicPartitionList::new();
    for p in service::partition_ids(&metadata, topic) {
        tpl.add_partition(topic, p);
    }
    if tpl.count() == 0 {
        return Ok(BTreeMap::new());
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(Error::kafka("reading committed offsets"))?;
    let mut out = BTreeMap::new();
    for e in committed.elements() {
        let (low, _high) = consumer
            .fetch_watermarks(topic, e.partition(), timeout)
            .map_err(Error::kafka(format!(
                "reading watermarks of {topic}/{}",
                e.partition()
            )))?;
        let offset = e.offset().to_raw().filter(|&o| o >= 0);
        out.insert(e.partition(), Committed { offset, low });
    }
    Ok(out)
}

/// See [`EventConsumer::positions`].
fn positions(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
    applied: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, (i64, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(Error::kafka(format!("reading metadata of {topic}")))?;
    let partitions = service::partition_ids(&metadata, topic);
    let mut unknown = TopicPartitionList::new();
    for &p in partitions.iter().filter(|p| !applied.contains_key(p)) {
        unknown.add_partition(topic, p);
    }
    let committed = if unknown.count() > 0 {
        consumer
            .committed_offsets(unknown, timeout)
            .map_err(Error::kafka("reading committed offsets"))?
    } else {
        unknown
    };
    let mut out = BTreeMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(Error::kafka(format!("reading watermarks of {topic}/{p}")))?;
        let position = applied.get(&p).copied().or_else(|| {
            committed
                .find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|&o| o >= 0)
        });
        out.insert(p, (position.unwrap_or(low).max(low), high));
    }
    Ok(out)
}

fn record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}
