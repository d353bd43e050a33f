//! The node's projector task: reads the log's objects topic from its first offset, applies each
//! batch to the in-memory projection with the projector's own batch writer, and writes what it
//! refuses to the dead-letter topic, the reason with it.
//!
//! The projection lives in memory, so every start rebuilds it from offset 0. Dead letters are
//! written once: at start the task finds the last offset it already dead-lettered, and a replay
//! up to there refuses silently.

use std::time::Instant;

use eventlog::{EmbeddedLog, Stored};
use projector::batch::BatchWriter;
use projector::metrics::Metrics;
use projector::triage::{Refusal, triage};
use schemas::DeadLetter;
use schemas::registry::SchemaIds;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::projection::Projection;
use crate::topics::{DEAD_LETTER, OBJECTS, record};

/// Records read and applied at a time.
const BATCH: usize = 1000;
/// Writes in flight within a batch: all in memory, so a few keep the writer busy.
const CONCURRENCY: usize = 8;

/// Projects the log into `projection` until `shutdown`. `progress` receives the next offset to
/// apply after every batch, so a caller can wait until what was in the log at start is served.
pub async fn project(
    log: EmbeddedLog,
    projection: Projection,
    metrics: Metrics,
    progress: watch::Sender<i64>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let writer = BatchWriter::new(projection, CONCURRENCY, metrics.clone(), shutdown.clone());
    let lettered = blocking(log.clone(), last_dead_lettered).await?;
    let ids = SchemaIds::default();
    let mut appends = log.subscribe();
    let mut next = 0;
    let started = Instant::now();
    let mut rebuilt = false;
    loop {
        appends.mark_unchanged();
        let from = next;
        let batch = blocking(log.clone(), move |log| log.read(OBJECTS, from, BATCH)).await?;
        let Some(last) = batch.last() else {
            if !rebuilt {
                rebuilt = true;
                tracing::info!(
                    offsets = next,
                    seconds = started.elapsed().as_secs_f64(),
                    "projection rebuilt from the log"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                changed = appends.changed() => if changed.is_err() { return Ok(()) },
            }
            continue;
        };
        next = last.offset + 1;
        let mut events = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        for stored in &batch {
            let Some(payload) = &stored.record.payload else {
                continue; // a tombstone: nothing to project
            };
            match triage(payload, &ids) {
                Ok(event) => events.push(event),
                Err(refusal) => {
                    metrics
                        .dead_letters
                        .with_label_values(&[refusal.kind()])
                        .inc();
                    if lettered.is_none_or(|done| stored.offset > done) {
                        letters.push(letter(stored, refusal));
                    }
                }
            }
        }
        if !letters.is_empty() {
            for l in &letters {
                tracing::warn!(offset = l.original_offset, reason = %l.reason, "dead-lettering a record");
            }
            let records = letters
                .iter()
                .map(|l| {
                    let payload = schemas::encode_dead_letter(l)?;
                    let headers = schemas::message::dead_letter_headers(&payload);
                    let key = l.original_key.clone().unwrap_or_default();
                    Ok(record(&key, payload, &headers))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            blocking(log.clone(), move |log| log.append(DEAD_LETTER, &records)).await?;
        }
        match writer.write_batch(&events).await {
            Err(projector::Error::Shutdown) => return Ok(()),
            other => other?,
        }
        progress.send_replace(next);
    }
}

/// The dead letter of a refused record, as the distributed projector writes it.
fn letter(stored: &Stored, refusal: Refusal) -> DeadLetter {
    let (reason, source) = match refusal {
        Refusal::Undecodable(reason) => (reason, None),
        Refusal::Invalid { reason, source } => (reason, Some(source)),
    };
    DeadLetter {
        stage: "projector".to_owned(),
        reason,
        source,
        original_topic: Some(OBJECTS.to_owned()),
        original_partition: Some(0),
        original_offset: Some(stored.offset),
        original_key: Some(stored.record.key.clone()),
        payload: stored.record.payload.clone(),
        at: service::now_micros(),
    }
}

/// The highest objects offset the projector already dead-lettered, if any.
fn last_dead_lettered(log: EmbeddedLog) -> Result<Option<i64>, eventlog::Error> {
    let mut last = None;
    let mut from = 0;
    loop {
        let page = log.read(DEAD_LETTER, from, BATCH)?;
        let Some(end) = page.last() else {
            return Ok(last);
        };
        from = end.offset + 1;
        for stored in &page {
            let Some(payload) = &stored.record.payload else {
                continue;
            };
            if let Ok(l) = schemas::decode_dead_letter(payload)
                && l.stage == "projector"
                && l.original_topic.as_deref() == Some(OBJECTS)
            {
                last = last.max(l.original_offset);
            }
        }
    }
}

/// Runs one log call on a blocking thread: SQLite calls wait on the disk.
async fn blocking<T, F>(log: EmbeddedLog, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(EmbeddedLog) -> Result<T, eventlog::Error> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(log))
        .await
        .map_err(|e| Error::Task(format!("reading the log: {e}")))?
        .map_err(Error::from)
}

#[cfg(test)]
mod tests;
