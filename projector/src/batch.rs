//! Writing one batch of decoded events into a generation: phases, bounded concurrency, retries.
//!
//! A batch is applied in three phases, each finished before the next starts:
//! 1. every row that depends on no other: the distinct manifest buckets of the batch (once per
//!    batch, not per version), collection rows, object versions with their manifest rows, and
//!    release members — one stream of single writes with at most `concurrency` in flight, so
//!    the database sees a steady queue instead of one burst per event or per chunk;
//! 2. the release and chunk rows of every release chunk, then each chunk's completion check: a
//!    release can only become complete after its members and every version of phase 1 are
//!    written, and because all chunk rows of the batch are written before any check reads, a
//!    release whose chunks all arrived in this batch is complete at the end of it;
//! 3. the revision of each touched collection: the largest sequence value in the batch. Offsets
//!    follow each collection's sequence (docs/events.md), and every earlier batch is committed,
//!    so everything up to that value is written.
//!
//! A failed write is retried with backoff until it succeeds or shutdown is requested: never
//! skipped, so the caller never commits past it. A batch during which any request failed, from
//! its first write until the caller has recorded it ([`BatchWriter::write_batch_then`]), is then
//! written once more, whole: a node that crashed may have lost writes it had already acknowledged
//! (Cassandra's periodic commit log syncs every 10 s), and only the failed ones were retried. A
//! crash after the rows and before the record would otherwise leave the record vouching for rows
//! the node lost. Every write is idempotent, so the second pass costs time, never correctness.
//! The exception is a generation whose keyspace
//! or tables are gone (asked of `system_schema` after each failure): no retry can bring them
//! back, so that ends the batch with [`Error::ProjectionsLost`] for `run` to recover from.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use schemas::{Event, ObjectVersionAdded, ReleasePublished};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::rows::{self, Mutation};
use crate::store::GenerationStore;
use crate::tables::Tables;

/// Writes batches into one generation: the CQL one by default, or any other [`Tables`].
pub struct BatchWriter<T: Tables = GenerationStore> {
    store: T,
    concurrency: usize,
    metrics: Metrics,
    shutdown: CancellationToken,
    /// Set by every failed request: the batch is written again once it is through.
    failed: std::sync::atomic::AtomicBool,
}

/// One piece of phase 1.
enum Unit<'a> {
    /// A single row write.
    Write(Mutation),
    /// A correction that does not name the `date_added` it supersedes (events written before
    /// schema v3): its rows, then a read of the version's `date_addeds` decides the manifest.
    Legacy {
        writes: Vec<Mutation>,
        version: &'a ObjectVersionAdded,
    },
}

impl<T: Tables> BatchWriter<T> {
    /// A writer into `store` with at most `concurrency` writes in flight, stopping its retries
    /// when `shutdown` is cancelled.
    pub fn new(
        store: T,
        concurrency: usize,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        BatchWriter {
            store,
            concurrency: concurrency.max(1),
            metrics,
            shutdown,
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Writes `events` (valid, in offset order). Returns only when every write succeeded in a
    /// pass during which no request failed, or with [`Error::Shutdown`].
    pub async fn write_batch(&self, events: &[Event]) -> Result<()> {
        self.write_batch_then(events, || std::future::ready(Ok(())))
            .await
    }

    /// [`Self::write_batch`], with `then` (the caller's record of the batch, through this
    /// writer) run after each pass and inside it: a request that fails before the record is
    /// written makes the whole batch, and the record, go again.
    pub(crate) async fn write_batch_then<F, Fut>(&self, events: &[Event], mut then: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        use std::sync::atomic::Ordering;
        loop {
            self.failed.store(false, Ordering::SeqCst);
            self.write_pass(events).await?;
            then().await?;
            if !self.failed.load(Ordering::SeqCst) {
                break;
            }
            self.metrics.batch_rewrites.inc();
            tracing::warn!(
                events = events.len(),
                "a CQL request failed during this batch: writing it again, since writes \
                 acknowledged before the failure may not have been made durable"
            );
        }
        for event in events {
            let kind = match event {
                Event::Collection(_) => "collection",
                Event::ObjectVersion(_) => "object_version",
                Event::Release(_) => "release",
            };
            self.metrics.events.with_label_values(&[kind]).inc();
        }
        Ok(())
    }

    /// One pass over every write of `events`.
    async fn write_pass(&self, events: &[Event]) -> Result<()> {
        let started = Instant::now();
        let units = units(events);
        // Futures collected first: a stream holding these closures would not be `Send` for
        // every lifetime (rust-lang/rust#64552), and `run` is spawned.
        self.bounded(units.iter().map(|u| self.write_unit(u)).collect())
            .await?;
        self.phase_done("rows", started);

        let started = Instant::now();
        let chunks: Vec<&ReleasePublished> = events
            .iter()
            .filter_map(|e| match e {
                Event::Release(r) => Some(r),
                _ => None,
            })
            .collect();
        let rows: Vec<Mutation> = chunks.iter().flat_map(|r| rows::release_rows(r)).collect();
        self.bounded(rows.iter().map(|m| self.write(m)).collect())
            .await?;
        self.bounded(chunks.iter().map(|r| self.complete(r)).collect())
            .await?;
        self.phase_done("releases", started);

        let started = Instant::now();
        let mut revisions: BTreeMap<&str, i64> = BTreeMap::new();
        for event in events {
            let slot = revisions.entry(event.collection_id()).or_insert(i64::MIN);
            *slot = (*slot).max(rows::sequence(event));
        }
        let revisions: Vec<Mutation> = revisions
            .into_iter()
            .map(|(collection, revision)| rows::revision(collection, revision))
            .collect();
        self.bounded(revisions.iter().map(|m| self.write(m)).collect())
            .await?;
        self.phase_done("revisions", started);

        Ok(())
    }

    /// What the tables are called.
    pub fn tables(&self) -> &T {
        &self.store
    }
}

impl BatchWriter<GenerationStore> {
    /// The next offset to apply per partition of `topic`, as the generation recorded it.
    pub(crate) async fn applied_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        self.retry("read_applied_offsets", || self.store.applied_offsets(topic))
            .await
    }

    /// Records `next` (partition → next offset to apply) as applied.
    pub(crate) async fn record_applied(
        &self,
        topic: &str,
        next: &BTreeMap<i32, i64>,
    ) -> Result<()> {
        self.bounded(
            next.iter()
                .map(|(&partition, &offset)| {
                    self.retry("record_applied", move || {
                        self.store.record_applied(topic, partition, offset)
                    })
                })
                .collect(),
        )
        .await
    }

    pub(crate) fn keyspace(&self) -> &str {
        self.store.keyspace()
    }
}

impl<T: Tables> BatchWriter<T> {
    fn phase_done(&self, phase: &str, started: Instant) {
        self.metrics
            .phase_seconds
            .with_label_values(&[phase])
            .observe(started.elapsed().as_secs_f64());
    }

    async fn write_unit(&self, unit: &Unit<'_>) -> Result<()> {
        match unit {
            Unit::Write(m) => self.write(m).await,
            Unit::Legacy { writes, version: v } => {
                futures::future::try_join_all(writes.iter().map(|m| self.write(m))).await?;
                let date_addeds = self
                    .retry("read_date_addeds", || {
                        self.store
                            .date_addeds(&v.collection_id, &v.object_id, v.version_micros)
                    })
                    .await?;
                let follow_up = rows::manifest(v, &date_addeds);
                futures::future::try_join_all(follow_up.iter().map(|m| self.write(m))).await?;
                Ok(())
            }
        }
    }

    /// The completion check of one chunk, after every chunk row of the batch is written.
    async fn complete(&self, chunk: &ReleasePublished) -> Result<()> {
        let key = rows::release_key(chunk);
        let present = self
            .retry("read_release_chunks", || self.store.release_chunks(&key))
            .await?;
        if let Some(m) = rows::completion(chunk, &present) {
            self.write(&m).await?;
        }
        Ok(())
    }

    /// Runs `futures` with at most `concurrency` in flight; the first error wins.
    async fn bounded<F>(&self, futures: Vec<F>) -> Result<()>
    where
        F: std::future::Future<Output = Result<()>>,
    {
        futures::stream::iter(futures)
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await
    }

    async fn write(&self, m: &Mutation) -> Result<()> {
        self.retry(m.kind(), || self.store.write(m)).await
    }

    /// The generation's missing tables, if any are missing; `None` too when the schema cannot
    /// be read (then the failure is of the connection, and retrying is right).
    async fn missing_tables(&self) -> Option<Vec<&'static str>> {
        match self.store.missing_tables().await {
            Ok(missing) if !missing.is_empty() => Some(missing),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "reading system_schema after a failed request");
                None
            }
        }
    }

    /// Runs `op` until it succeeds, backing off from 50 ms to 5 s; gives up on shutdown, and
    /// when the generation's tables are gone.
    async fn retry<R, F, Fut>(&self, op: &'static str, mut f: F) -> Result<R>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R>>,
    {
        let histogram = self.metrics.cql_seconds.with_label_values(&[op]);
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match f().await {
                Ok(value) => {
                    histogram.observe(started.elapsed().as_secs_f64());
                    return Ok(value);
                }
                Err(e) => {
                    self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    if let Some(missing) = self.missing_tables().await {
                        return Err(Error::ProjectionsLost {
                            keyspace: self.store.name().to_owned(),
                            detail: format!(
                                "{op} failed ({e}); system_schema lacks {}",
                                missing.join(", ")
                            ),
                        });
                    }
                    self.metrics.cql_retries.inc();
                    tracing::warn!(op, error = %e, retry_in_ms = backoff.as_millis() as u64, "CQL request failed; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return Err(Error::Shutdown),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Phase 1 of a batch: manifest buckets (each distinct one once), then every event's rows except
/// the release and chunk rows (phase 2).
fn units(events: &[Event]) -> Vec<Unit<'_>> {
    let buckets: BTreeSet<(&str, i64)> = events
        .iter()
        .filter_map(|e| match e {
            // An archival content has no manifest row, hence no bucket.
            Event::ObjectVersion(v) if !v.archival => Some((
                v.collection_id.as_str(),
                schemas::cql::manifest_bucket(v.date_added),
            )),
            _ => None,
        })
        .collect();
    let mut units: Vec<Unit<'_>> = buckets
        .into_iter()
        .map(|(collection_id, bucket)| {
            Unit::Write(Mutation::ManifestBucket {
                collection_id: collection_id.to_owned(),
                bucket,
            })
        })
        .collect();
    for event in events {
        match event {
            Event::Collection(_) => units.extend(rows::writes(event).into_iter().map(Unit::Write)),
            Event::ObjectVersion(v) => {
                let writes = rows::writes(event)
                    .into_iter()
                    .filter(|m| !matches!(m, Mutation::ManifestBucket { .. }));
                match rows::manifest_without_read(v) {
                    Some(manifest) => units.extend(writes.chain(manifest).map(Unit::Write)),
                    None => units.push(Unit::Legacy {
                        writes: writes.collect(),
                        version: v,
                    }),
                }
            }
            Event::Release(r) => units.extend(rows::release_members(r).map(Unit::Write)),
        }
    }
    units
}

#[cfg(test)]
mod tests;
