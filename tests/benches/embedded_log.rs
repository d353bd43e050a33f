//! Benchmark (not a test): the embedded event log (SQLite) holding the real topic. Every release
//! of the test data is imported by ingest into a Kafka topic; its records (keys, payloads,
//! headers as ingest wrote them) are then appended to a fresh embedded log, read back whole and
//! compacted, per round. Reading the same records from Kafka is timed once for context.
//! Needs the dev services: `eval "$(dev/services env)"; cargo bench -p taxiway-tests --bench
//! embedded_log` (`TAXIWAY_BENCH_ROUNDS`, default 5; `TAXIWAY_BENCH_BATCH`, default 1000).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot run should stop loudly

use std::time::{Duration, Instant};

use eventlog::{EmbeddedLog, Record};
use taxiway_tests::bench::{env_usize, median};
use taxiway_tests::pipeline::{Topics, ingest_every_release};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let rounds = env_usize("TAXIWAY_BENCH_ROUNDS", 5);
    let batch = env_usize("TAXIWAY_BENCH_BATCH", 1000);
    let topics = Topics::new("bench_embedded_log");
    let files = ingest_every_release(&topics).await.unwrap();
    let started = Instant::now();
    let kafka = topics.object_records().await.unwrap();
    let from_kafka = started.elapsed();
    let records: Vec<Record> = kafka.into_iter().map(Record::from).collect();
    let bytes: usize = records
        .iter()
        .map(|r| r.key.len() + r.payload.as_ref().map_or(0, Vec::len))
        .sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "{} files: {} records, {mb:.1} MB of keys and payloads; read from Kafka in {:.2} s",
        files.len(),
        records.len(),
        secs(from_kafka)
    );

    let (mut appends, mut reads, mut compactions) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sqlite");
        let (append, read, compact, size, compaction) = tokio::task::spawn_blocking({
            let records = records.clone();
            move || {
                let log = EmbeddedLog::open(&path).unwrap();
                let started = Instant::now();
                for chunk in records.chunks(batch) {
                    log.append("objects", chunk).unwrap();
                }
                let append = started.elapsed();
                let started = Instant::now();
                let mut from = 0;
                let mut read = 0;
                loop {
                    let page = log.read("objects", from, batch).unwrap();
                    let Some(last) = page.last() else { break };
                    from = last.offset + 1;
                    read += page.len();
                }
                assert_eq!(read, records.len());
                let read = started.elapsed();
                let started = Instant::now();
                let compaction = log.compact("objects").unwrap();
                let compact = started.elapsed();
                let size = std::fs::metadata(&path).unwrap().len()
                    + std::fs::metadata(path.with_extension("sqlite-wal"))
                        .map(|m| m.len())
                        .unwrap_or(0);
                (append, read, compact, size, compaction)
            }
        })
        .await
        .unwrap();
        println!(
            "round {round}: append {:.2} s ({:.0} records/s, {:.0} MB/s, batches of {batch}), read all {:.2} s ({:.0} MB/s), compact {:.2} s (removed {}, kept {}), file {:.0} MB",
            secs(append),
            records.len() as f64 / secs(append),
            mb / secs(append),
            secs(read),
            mb / secs(read),
            secs(compact),
            compaction.removed,
            compaction.kept,
            size as f64 / 1e6
        );
        appends.push(secs(append));
        reads.push(secs(read));
        compactions.push(secs(compact));
    }
    println!(
        "median of {rounds}: append {:.2} s, read all {:.2} s, compact {:.2} s; Kafka read {:.2} s",
        median(appends),
        median(reads),
        median(compactions),
        secs(from_kafka)
    );
}
