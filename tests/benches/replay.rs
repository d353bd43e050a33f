//! Replay benchmark: every release in `../shared/attack-data` from Kafka into a fresh generation,
//! beside a raw driver loop writing the same rows with the same concurrency (once before the
//! projector and once after, so neither side gets the warmer database).
//!
//! Needs the dev services (`dev/services start`; `eval "$(dev/services env)"`). Run with
//! `cargo bench -p taxiway-tests --bench replay`. Prints figures; asserts nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot run should stop loudly

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use projector::config::{Command, ConsistencyLevel, Settings};
use projector::metrics::Metrics;
use projector::rows;
use projector::store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schemas::Event;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::{cql_nodes, kafka_brokers};
use tokio_util::sync::CancellationToken;

const CONCURRENCY: usize = 256;

/// Every payload of the topic, and how long fetching took.
fn fetch_all(topic: &str) -> (Vec<Vec<u8>>, Duration) {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", "bench-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.max.bytes", "67108864")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut open = HashSet::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(30))
            .unwrap();
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
            open.insert(p.id());
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("{e}"),
            Some(Ok(m)) => out.push(m.payload().unwrap_or_default().to_vec()),
        }
    }
    (out, started.elapsed())
}

/// User + system CPU seconds this process has used so far, from Linux's `/proc/self/stat` at
/// 100 ticks a second; 0 where that cannot be read.
fn process_cpu() -> f64 {
    let read = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // utime and stime are the 12th and 13th fields after the parenthesised command name,
        // which may hold spaces.
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace().skip(11);
        let user: f64 = fields.next()?.parse().ok()?;
        let system: f64 = fields.next()?.parse().ok()?;
        Some((user + system) / 100.0)
    };
    read().unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    if std::env::var_os("TAXIWAY_LOG").is_some() {
        service::init_tracing(service::LogFormat::Text, "info");
    }
    let topics = Topics::new("bench_replay");
    let topic = topics.objects.clone();

    // 1. Publish every release.
    let started = Instant::now();
    let files = taxiway_tests::pipeline::ingest_every_release(&topics)
        .await
        .unwrap();
    println!(
        "ingest of {} files: {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );

    // 2. Where the time goes outside CQL: fetching and decoding.
    let topic_for_fetch = topic.clone();
    let (payloads, fetch) = tokio::task::spawn_blocking(move || fetch_all(&topic_for_fetch))
        .await
        .unwrap();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let started = Instant::now();
    let events: Vec<Event> = payloads
        .iter()
        .map(|p| schemas::decode_event(p).unwrap())
        .collect();
    let decode = started.elapsed();
    let started = Instant::now();
    for e in &events {
        projector::check(e).unwrap();
    }
    let check = started.elapsed();
    let n = events.len();
    let versions = events
        .iter()
        .filter(|e| matches!(e, Event::ObjectVersion(_)))
        .count();
    let members: usize = events
        .iter()
        .map(|e| match e {
            Event::Release(r) => r.members.len(),
            _ => 0,
        })
        .sum();
    println!(
        "topic: {n} events ({versions} object versions, {members} release members), {:.1} MB",
        bytes as f64 / 1e6
    );
    println!(
        "kafka fetch: {:.2} s ({:.0} events/s); decode: {:.2} s; STIX check: {:.2} s",
        fetch.as_secs_f64(),
        n as f64 / fetch.as_secs_f64(),
        decode.as_secs_f64(),
        check.as_secs_f64()
    );

    // 3. The projector, end to end, into a fresh control keyspace (generation 1).
    let control = taxiway_tests::unique_name("bench_replay");
    let mut settings = Settings::new(Command::Run);
    settings.kafka = topics.kafka();
    settings.group = control.clone();
    settings.cql.nodes = cql_nodes();
    settings.cql.keyspace = control.clone();
    settings.store.consistency = ConsistencyLevel::One;
    settings.batch.concurrency = CONCURRENCY;
    let store = Store::connect(&settings.cql, &settings.store)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let raw_before = raw_loop(&store, &control, 98, &events).await;
    let metrics = Metrics::new().unwrap();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(projector::run_with_metrics(
        settings.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let applied = || -> u64 {
        ["collection", "object_version", "release"]
            .iter()
            .map(|t| metrics.events.with_label_values(&[t]).get())
            .sum()
    };
    let cpu_before = process_cpu();
    let mut first_applied = None;
    while applied() < n as u64 {
        if first_applied.is_none() && applied() > 0 {
            first_applied = Some(started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "projector too slow"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let projector_time = started.elapsed();
    let projector_cpu = process_cpu() - cpu_before;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let projector_rate = n as f64 / projector_time.as_secs_f64();
    println!(
        "projector: {n} events in {:.2} s = {projector_rate:.0} events/s",
        projector_time.as_secs_f64()
    );
    let phase = |p: &str| {
        metrics
            .phase_seconds
            .with_label_values(&[p])
            .get_sample_sum()
    };
    let first = first_applied.unwrap_or_default().as_secs_f64();
    println!(
        "  start (migrate, join, first batch): {first:.2} s; after it {:.0} events/s",
        n as f64 / (projector_time.as_secs_f64() - first).max(1e-9)
    );
    println!(
        "  batch phases: fetch {:.2} s, decode+check {:.2} s, rows {:.2} s, releases {:.2} s, revisions {:.2} s, commit {:.2} s; {} batches, {} CQL retries",
        phase("fetch"),
        phase("decode"),
        phase("rows"),
        phase("releases"),
        phase("revisions"),
        phase("commit"),
        metrics
            .phase_seconds
            .with_label_values(&["rows"])
            .get_sample_count(),
        metrics.cql_retries.get()
    );
    let write = metrics.cql_seconds.with_label_values(&["object_version"]);
    println!(
        "  CQL mean latency: object_versions write {:.2} ms; client CPU {projector_cpu:.2} s",
        1e3 * write.get_sample_sum() / write.get_sample_count().max(1) as f64,
    );

    // 4. The raw loop again: the first ran on a colder database; compare with both.
    let raw_after = raw_loop(&store, &control, 99, &events).await;
    let raw_time = (raw_before + raw_after) / 2;
    let raw_rate = n as f64 / raw_time.as_secs_f64();
    println!(
        "raw driver loop: before {:.2} s, after {:.2} s, mean {:.2} s = {raw_rate:.0} events/s",
        raw_before.as_secs_f64(),
        raw_after.as_secs_f64(),
        raw_time.as_secs_f64()
    );
    println!("ratio projector / raw: {:.2}", projector_rate / raw_rate);
}

/// A raw driver loop: the same rows as the projector writes (manifest row written directly, no
/// read-back, no phases, no Kafka), prepared statements, CONCURRENCY in flight, into generation
/// `n` of the control keyspace.
async fn raw_loop(store: &Store, control: &str, n: i32, events: &[Event]) -> Duration {
    let raw_keyspace = schemas::cql::generation_keyspace(control, n);
    store.create_generation(n, "bench").await.unwrap();
    let generation = store.generation(&raw_keyspace).await.unwrap();
    let mut mutations = Vec::new();
    for e in events {
        mutations.extend(rows::writes(e));
        match e {
            Event::ObjectVersion(v) => mutations.extend(rows::manifest(v, &[v.date_added])),
            Event::Release(r) => mutations.extend(rows::completion(r, &[r.chunk_index])),
            Event::Collection(_) => {}
        }
    }
    let rows = mutations.len();
    let started = Instant::now();
    let cpu_before = process_cpu();
    futures::stream::iter(mutations.iter().map(|m| generation.write(m)))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    println!(
        "raw driver loop (generation {n}): {rows} row writes in {:.2} s ({:.0} rows/s), client CPU {:.2} s",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        process_cpu() - cpu_before
    );
    elapsed
}
