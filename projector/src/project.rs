//! Applying a batch of decoded events to one generation: phases, bounded concurrency, retries.
//!
//! A batch is applied in three phases, each finished before the next starts:
//! 0. the distinct manifest buckets its versions fall in (once per batch, not per version);
//! 1. collection and object-version events, concurrently (at most `concurrency` events in flight);
//! 2. release chunks, one after the other in offset order (members concurrently), so a chunk's
//!    completion check runs after its members and after every version of phase 1;
//! 3. the revision of each touched collection: the largest sequence value in the batch. Offsets
//!    follow each collection's sequence (docs/events.md), and every earlier batch is committed,
//!    so everything up to that value is written.
//!
//! A failed write is retried with backoff until it succeeds or shutdown is requested: never
//! skipped, so the caller never commits past it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use schemas::Event;
use tokio_util::sync::CancellationToken;

use crate::apply::{self, Mutation};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::GenerationStore;

/// Applies batches to one generation.
#[derive(Clone)]
pub struct Projector {
    store: GenerationStore,
    concurrency: usize,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl Projector {
    pub fn new(
        store: GenerationStore,
        concurrency: usize,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        Projector {
            store,
            concurrency: concurrency.max(1),
            metrics,
            shutdown,
        }
    }

    pub fn keyspace(&self) -> &str {
        self.store.keyspace()
    }

    /// Applies `events` (valid, in offset order). Returns only when every write succeeded, or
    /// with [`Error::Shutdown`].
    pub async fn apply_batch(&self, events: &[Event]) -> Result<()> {
        // A manifest bucket row is the same for every version added that day: write each
        // distinct one once per batch instead of once per version (a quarter of the requests).
        let buckets: BTreeSet<(&str, i64)> = events
            .iter()
            .filter_map(|e| match e {
                Event::ObjectVersion(v) => Some((
                    v.collection_id.as_str(),
                    schemas::cql::manifest_bucket(v.date_added),
                )),
                _ => None,
            })
            .collect();
        let buckets: Vec<Mutation> = buckets
            .into_iter()
            .map(|(collection_id, bucket)| Mutation::ManifestBucket {
                collection_id: collection_id.to_owned(),
                bucket,
            })
            .collect();
        self.bounded(buckets.iter().map(|m| self.write(m)).collect())
            .await?;

        // Futures collected first: a stream holding these closures would not be `Send` for
        // every lifetime (rust-lang/rust#64552), and `run` is spawned.
        let phase1: Vec<_> = events
            .iter()
            .filter(|e| !matches!(e, Event::Release(_)))
            .map(|e| self.apply_event(e))
            .collect();
        self.bounded(phase1).await?;

        for event in events {
            if let Event::Release(chunk) = event {
                self.apply_release_chunk(chunk).await?;
            }
        }

        let mut revisions: BTreeMap<&str, i64> = BTreeMap::new();
        for event in events {
            let slot = revisions.entry(event.collection_id()).or_insert(i64::MIN);
            *slot = (*slot).max(apply::sequence(event));
        }
        let revisions: Vec<Mutation> = revisions
            .into_iter()
            .map(|(collection, revision)| apply::revision(collection, revision))
            .collect();
        self.bounded(revisions.iter().map(|m| self.write(m)).collect())
            .await?;

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

    /// A collection or object-version event: its writes, then for a version the manifest
    /// rows decided from the `date_addeds` read back.
    async fn apply_event(&self, event: &Event) -> Result<()> {
        let mut writes: Vec<Mutation> = apply::writes(event)
            .into_iter()
            .filter(|m| !matches!(m, Mutation::ManifestBucket { .. }))
            .collect();
        // Most versions decide their manifest rows from the event alone: then every write goes
        // out at once, one round trip.
        let decided = match event {
            Event::ObjectVersion(v) => apply::manifest_without_read(v),
            _ => Some(Vec::new()),
        };
        let needs_read = decided.is_none();
        writes.extend(decided.unwrap_or_default());
        futures::future::try_join_all(writes.iter().map(|m| self.write(m))).await?;
        if let (true, Event::ObjectVersion(v)) = (needs_read, event) {
            let date_addeds = self
                .retry("read_date_addeds", || {
                    self.store
                        .date_addeds(&v.collection_id, &v.object_id, v.version_micros)
                })
                .await?;
            let follow_up = apply::manifest(v, &date_addeds);
            futures::future::try_join_all(follow_up.iter().map(|m| self.write(m))).await?;
        }
        Ok(())
    }

    /// Members first, then the release and chunk rows, then the completion check.
    async fn apply_release_chunk(&self, chunk: &schemas::ReleasePublished) -> Result<()> {
        let members: Vec<Mutation> = apply::release_members(chunk).collect();
        self.bounded(members.iter().map(|m| self.write(m)).collect())
            .await?;
        for m in apply::release_rows(chunk) {
            self.write(&m).await?;
        }
        let key = apply::release_key(chunk);
        let present = self
            .retry("read_release_chunks", || self.store.release_chunks(&key))
            .await?;
        if let Some(m) = apply::completion(chunk, &present) {
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

    /// Runs `op` until it succeeds, backing off from 50 ms to 5 s; gives up only on shutdown.
    async fn retry<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
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
