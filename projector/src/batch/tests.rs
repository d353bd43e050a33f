#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use schemas::{CollectionUpserted, Event, Source, SourceKind};
use tokio_util::sync::CancellationToken;

use super::BatchWriter;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::rows::{self, Mutation, ReleaseKey};
use crate::tables::Tables;

/// Tables that count the writes they took and refuse the next `refuse` writes.
#[derive(Default)]
struct Flaky {
    written: AtomicUsize,
    refuse: AtomicUsize,
}

impl Tables for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    fn write(&self, _m: &Mutation) -> impl Future<Output = Result<()>> + Send {
        let refused = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !refused {
            self.written.fetch_add(1, Ordering::SeqCst);
        }
        std::future::ready(if refused {
            Err(Error::State("the node is down".to_owned()))
        } else {
            Ok(())
        })
    }

    fn date_addeds(
        &self,
        _: &str,
        _: &str,
        _: i64,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    fn release_chunks(&self, _: &ReleaseKey) -> impl Future<Output = Result<Vec<i32>>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    fn missing_tables(&self) -> impl Future<Output = Result<Vec<&'static str>>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

fn collection() -> Event {
    Event::Collection(CollectionUpserted {
        collection_id: "x-mitre-collection--1".to_owned(),
        title: "One".to_owned(),
        description: None,
        alias: None,
        media_types: Vec::new(),
        updated_at: 1,
        source: Source {
            kind: SourceKind::Bundle,
            uri: "one.json".to_owned(),
            sha256: None,
            position: None,
        },
        ingest_run_id: "run".to_owned(),
        released: false,
    })
}

/// The record of a batch, written through the writer as the feed writes its applied offsets.
async fn record(writer: &BatchWriter<Flaky>, records: &AtomicUsize) -> Result<()> {
    records.fetch_add(1, Ordering::SeqCst);
    writer
        .write(&rows::revision("x-mitre-collection--1", 1))
        .await
}

#[tokio::test]
async fn a_batch_whose_record_failed_is_written_again_before_it_is_recorded() {
    let writer = BatchWriter::new(
        Flaky::default(),
        4,
        Metrics::new().unwrap(),
        CancellationToken::new(),
    );
    let events = [collection()];
    let records = AtomicUsize::new(0);
    writer
        .write_batch_then(&events, || record(&writer, &records))
        .await
        .unwrap();
    let once = writer.store.written.load(Ordering::SeqCst);
    assert_eq!(records.load(Ordering::SeqCst), 1);

    // The node fails while the record is written: the rows acknowledged before may be lost
    // with it, so the whole batch goes again, and then its record.
    let records = AtomicUsize::new(0);
    writer
        .write_batch_then(&events, || async {
            if records.load(Ordering::SeqCst) == 0 {
                writer.store.refuse.store(1, Ordering::SeqCst);
            }
            record(&writer, &records).await
        })
        .await
        .unwrap();
    assert_eq!(records.load(Ordering::SeqCst), 2, "recorded again");
    assert_eq!(
        writer.store.written.load(Ordering::SeqCst) - once,
        2 * once,
        "the batch and its record written twice"
    );
    assert_eq!(writer.metrics.batch_rewrites.get(), 1);
}
