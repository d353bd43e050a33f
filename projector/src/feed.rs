//! Feeding one generation from the topic, a batch at a time: fetch → decode → check → write → record → commit; `run` and `rebuild` both drive it.
//!
//! The projections prove what they hold: each batch ends by recording, in the generation's own
//! `applied_offsets` table, the next offset of every partition it covered, before the batch is
//! committed to Kafka. So a generation never records more than it holds, and a group never
//! commits more than its generation records — unless the generation lost data. [`Feed::start`]
//! looks for exactly that (committed ahead of recorded) and rewinds the group to replay it; a
//! running feed re-reads the record before each new one and stops with
//! [`Error::ProjectionsLost`] when it went back or vanished.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::batch::BatchWriter;
use crate::config::Settings;
use crate::consumer::{EventConsumer, Mode, Record};
use crate::dead_letter::DeadLetters;
use crate::error::{Error, Result};
use crate::gaps;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::triage::{Refusal, triage};

/// How long a poll waits for a first message before giving the caller a turn (generation
/// checks, progress reports).
const IDLE: Duration = Duration::from_millis(500);

/// The consumer group generation `n` is projected with.
fn group_for(prefix: &str, generation: i32) -> String {
    format!("{prefix}-g{generation}")
}

/// A consumer of the objects topic writing into one generation.
pub(crate) struct Feed {
    consumer: EventConsumer,
    writer: BatchWriter,
    dead_letters: DeadLetters,
    /// Registry ids met on the topic, looked up once each.
    schemas: service::SchemaResolver,
    metrics: Metrics,
    shutdown: CancellationToken,
    batch_size: usize,
    batch_wait: Duration,
    mode: &'static str,
    /// Next offset to process per partition, for what this feed applied.
    applied: BTreeMap<i32, i64>,
    /// What the generation's `applied_offsets` must hold at least, per partition: what it
    /// held when this feed started, then what this feed recorded.
    recorded: BTreeMap<i32, i64>,
}

/// What one [`Feed::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) messages: usize,
    pub(crate) dead_lettered: usize,
}

impl Feed {
    /// Prepares the writes of the generation in `keyspace`, checks that the projections hold
    /// everything the group committed (rewinding the group to replay what they lack), and
    /// joins the group.
    pub(crate) async fn start(
        settings: &Settings,
        store: &Store,
        generation: i32,
        keyspace: &str,
        metrics: &Metrics,
        shutdown: &CancellationToken,
        mode: &'static str,
    ) -> Result<Feed> {
        let generation_store = match store.generation(keyspace).await {
            Ok(s) => s,
            Err(e) => {
                return Err(match store.missing_tables(keyspace).await {
                    Ok(missing) if !missing.is_empty() => Error::ProjectionsLost {
                        keyspace: keyspace.to_owned(),
                        detail: format!(
                            "preparing its statements failed ({e}); system_schema lacks {}",
                            missing.join(", ")
                        ),
                    },
                    _ => e,
                });
            }
        };
        let writer = BatchWriter::new(
            generation_store,
            settings.batch.concurrency,
            metrics.clone(),
            shutdown.clone(),
        );
        let group = group_for(&settings.group, generation);
        let consumer = EventConsumer::new(&settings.kafka, &settings.membership, &group)?;
        let recorded = writer.applied_offsets(consumer.topic()).await?;
        let gaps = gaps::find(&consumer.committed().await?, &recorded);
        if !gaps.is_empty() {
            let described = gaps::describe(&gaps);
            tracing::error!(
                generation,
                keyspace,
                group,
                topic = consumer.topic(),
                gaps = %described,
                "the projections lack messages the group committed (the keyspace was lost, \
                 recreated or restored, or predates applied_offsets); replaying them"
            );
            metrics.gaps.inc_by(gaps.len() as u64);
            let from = gaps.iter().map(|g| (g.partition, g.replay_from)).collect();
            consumer
                .rewind(&from, shutdown)
                .await
                .map_err(|e| match e {
                    Error::Shutdown => Error::Shutdown,
                    e => Error::Gap {
                        generation,
                        keyspace: keyspace.to_owned(),
                        group: group.clone(),
                        gaps: described,
                        source: Box::new(e),
                    },
                })?;
        }
        consumer.subscribe()?;
        let dead_letters = DeadLetters::new(&settings.kafka).await?;
        let schemas = service::SchemaResolver::new(
            settings.kafka.registry.client().map_err(Error::registry)?,
        );
        tracing::info!(generation, keyspace, group, topic = %settings.kafka.objects_topic, mode, "consuming");
        Ok(Feed {
            consumer,
            writer,
            dead_letters,
            schemas,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            batch_size: settings.batch.batch_size,
            batch_wait: settings.batch.batch_wait,
            mode,
            applied: BTreeMap::new(),
            recorded,
        })
    }

    /// Checks that the generation still records at least what this feed recorded: a keyspace
    /// dropped, recreated or restored under a running projector fails this with
    /// [`Error::ProjectionsLost`]. `run` calls it while idle; [`Feed::step`] before each record.
    pub(crate) async fn verify(&self) -> Result<()> {
        if self.recorded.is_empty() {
            return Ok(());
        }
        let stored = self.writer.applied_offsets(self.consumer.topic()).await?;
        let behind = gaps::behind(&self.recorded, &stored);
        if behind.is_empty() {
            return Ok(());
        }
        let detail = behind
            .iter()
            .map(|(p, ours, now)| {
                format!(
                    "partition {p}: recorded {ours}, now {}",
                    now.map_or("none".to_owned(), |n| n.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::ProjectionsLost {
            keyspace: self.writer.keyspace().to_owned(),
            detail: format!("applied_offsets went back: {detail}"),
        })
    }

    /// Takes one batch, writes it, dead-letters what cannot be used, records the offsets it
    /// applied, then commits. Returns [`Error::Shutdown`] if stopped before the batch was
    /// written (nothing committed), [`Error::ProjectionsLost`] if the generation lost data.
    pub(crate) async fn step(&mut self) -> Result<Step> {
        let started = Instant::now();
        let batch = self
            .consumer
            .next_batch(self.batch_size, self.batch_wait, IDLE, &self.shutdown)
            .await;
        if batch.is_empty() {
            return Ok(Step::default());
        }
        self.phase_done("fetch", started);
        let started = Instant::now();
        self.metrics
            .batch_size
            .with_label_values(&[self.mode])
            .observe(batch.len() as f64);
        self.resolve_schemas(&batch).await?;
        let mut events = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        for record in &batch {
            match triage(&record.payload, self.schemas.ids()) {
                Ok(event) => events.push(event),
                Err(refusal) => {
                    let kind = refusal.kind();
                    let (reason, source) = match refusal {
                        Refusal::Undecodable(reason) => (reason, None),
                        Refusal::Invalid { reason, source } => (reason, Some(source)),
                    };
                    letters.push((kind, self.dead_letters.letter(record, reason, source)));
                }
            }
        }
        for (kind, letter) in &letters {
            tracing::warn!(
                partition = letter.original_partition,
                offset = letter.original_offset,
                reason = %letter.reason,
                "dead-lettering a message"
            );
            self.dead_letters.send(letter, &self.shutdown).await?;
            self.metrics.dead_letters.with_label_values(&[kind]).inc();
        }
        self.phase_done("decode", started);
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for r in &batch {
            let slot = next.entry(r.partition).or_insert(r.offset + 1);
            *slot = (*slot).max(r.offset + 1);
        }
        let applying = Instant::now();
        let topic = self.consumer.topic();
        self.writer
            .write_batch_then(&events, || async {
                // Read after the writes: a loss before or during them shows here, before the
                // record that would paper over it.
                let started = Instant::now();
                self.verify().await?;
                self.writer.record_applied(topic, &next).await?;
                self.phase_done("record", started);
                Ok(())
            })
            .await?;
        tracing::debug!(
            messages = batch.len(),
            dead_lettered = letters.len(),
            apply_ms = applying.elapsed().as_millis() as u64,
            "batch applied and recorded"
        );
        self.recorded.extend(next.iter().map(|(&p, &o)| (p, o)));
        self.phase_done("record", started);
        let started = Instant::now();
        self.consumer.commit(&batch, Mode::Async)?;
        self.phase_done("commit", started);
        for (p, o) in next {
            let slot = self.applied.entry(p).or_insert(o);
            *slot = (*slot).max(o);
        }
        Ok(Step {
            messages: batch.len(),
            dead_lettered: letters.len(),
        })
    }

    /// Looks up the registry ids of `batch` not met before. A registry that cannot be reached
    /// is waited for (the batch is not committed meanwhile); an id it does not have makes its
    /// messages dead letters with that reason.
    async fn resolve_schemas(&mut self, batch: &[Record]) -> Result<()> {
        let pending = self
            .schemas
            .pending(batch.iter().map(|r| r.payload.as_slice()));
        if pending.is_empty() {
            return Ok(());
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.schemas.resolve(&pending).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retriable() => {
                    tracing::warn!(error = %e, "schema registry unavailable; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return Err(Error::Shutdown),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(Error::registry(e)),
            }
        }
    }

    fn phase_done(&self, phase: &str, started: Instant) {
        self.metrics
            .phase_seconds
            .with_label_values(&[phase])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Measures lag per partition (high watermark − next offset to process) as of the offsets
    /// applied so far, and publishes it as the `consumer_lag` gauge. The future owns what it
    /// needs, so callers spawn it and keep consuming: measuring takes a broker round trip per
    /// partition, and awaiting it between batches stalled replays by seconds.
    pub(crate) fn lag_probe(
        &self,
    ) -> impl std::future::Future<Output = Result<BTreeMap<i32, i64>>> + Send + 'static {
        let positions = self.consumer.positions(self.applied.clone());
        let metrics = self.metrics.clone();
        async move {
            let lag: BTreeMap<i32, i64> = positions
                .await?
                .into_iter()
                .map(|(p, (position, high))| (p, (high - position).max(0)))
                .collect();
            for (p, l) in &lag {
                metrics
                    .consumer_lag
                    .with_label_values(&[&p.to_string()])
                    .set(*l);
            }
            Ok(lag)
        }
    }

    /// Commits what was applied, synchronously, and leaves the group: the next member (a
    /// `run` after a rebuild) starts exactly after it.
    pub(crate) fn finish(self, last: &[Record]) -> Result<()> {
        self.consumer.commit(last, Mode::Sync)?;
        self.consumer.close();
        Ok(())
    }

    /// The next offsets applied, as records for a final synchronous commit.
    pub(crate) fn applied_marks(&self) -> Vec<Record> {
        self.applied
            .iter()
            .map(|(&partition, &next)| Record {
                partition,
                offset: next - 1,
                key: None,
                payload: Vec::new(),
            })
            .collect()
    }
}
