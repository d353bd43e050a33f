//! Benchmark (not a test): `ingest import` of the Enterprise release beside a raw rdkafka
//! produce of the same objects, in the same run, against the broker from `dev/services`.
//! Each round: raw produce of the objects' JSON (into a plain and into a compacted topic), raw
//! produce of exactly the messages ingest publishes for the bundle (read back from one import
//! before the rounds), then ingest from the `.json.zst` and from the same bundle as plain JSON.
//!
//! Run: `dev/services start && cargo bench -p taxiway-tests --bench import_throughput`.
//! Env: TAXIWAY_KAFKA_BROKERS (127.0.0.1:9092), TAXIWAY_BENCH_FILE
//! (stix-2.0/enterprise-attack-18.1.json.zst, in the data directory of `taxiway_tests::fixtures`:
//! only `../shared/attack-data` has it, the bench is skipped without it), TAXIWAY_BENCH_ROUNDS (8:
//! per-round ratios spread from 0.3 to 0.9 on the 2-core dev VM, so fewer rounds say little).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot run should stop loudly

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use ingest::config::{ImportConfig, KafkaArgs, TopicArgs};
use ingest::{Outcome, Settings};
use taxiway_tests::{fixtures, kafka_brokers};

/// The allocator of the `ingest` binary, so the in-process import runs as it ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct Bundle<'a> {
    #[serde(borrow)]
    objects: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Id<'a> {
    id: &'a str,
}

fn unique(prefix: &str) -> String {
    format!(
        "bench_{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Ingest's Kafka settings for `topic` (its dead letters to a shared bench topic).
fn kafka(brokers: &str, topic: &str) -> KafkaArgs {
    KafkaArgs {
        brokers: brokers.to_owned(),
        objects_topic: topic.to_owned(),
        dead_letter_topic: "bench.dead-letter".to_owned(),
        ..KafkaArgs::default()
    }
}

/// Raw produce of the objects' bytes, each keyed by its object id. `compacted`: into a topic
/// created exactly like ingest's objects topic (compaction makes the broker check every record's
/// key), else into an auto-created one.
async fn raw_produce(brokers: &str, objects: &[&RawValue], compacted: bool) -> Duration {
    // The id is read inside the timed loop, as a perf-test-style producer of these objects would.
    produce_timed(brokers, compacted, objects.len(), |i| {
        let object = objects[i].get();
        let id: Id<'_> = serde_json::from_str(object).unwrap();
        (id.id.as_bytes(), object.as_bytes(), None)
    })
    .await
}

/// One message as ingest published it.
struct Published {
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: OwnedHeaders,
}

impl From<taxiway_tests::topic::Record> for Published {
    fn from(r: taxiway_tests::topic::Record) -> Self {
        let headers = r
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(value),
                })
            });
        Published {
            key: r.key,
            payload: r.payload,
            headers,
        }
    }
}

/// Raw produce of exactly the messages ingest publishes for the bundle (its keys, Avro
/// payloads and headers, ~30 % more bytes than the objects' JSON and ids), into an
/// auto-created topic.
async fn raw_produce_messages(brokers: &str, messages: &[Published]) -> Duration {
    produce_timed(brokers, false, messages.len(), |i| {
        let m = &messages[i];
        (
            m.key.as_slice(),
            m.payload.as_slice(),
            Some(m.headers.clone()),
        )
    })
    .await
}

/// Produces `count` messages (`message(i)`: key, payload and headers) to partition 0 of a new topic with
/// ingest's producer settings, on an already connected and warmed producer; returns the time
/// from the first send to the last acknowledgement.
async fn produce_timed<'m>(
    brokers: &str,
    compacted: bool,
    count: usize,
    message: impl Fn(usize) -> (&'m [u8], &'m [u8], Option<OwnedHeaders>),
) -> Duration {
    let topic = unique("raw");
    if compacted {
        ingest::ensure_topics(&kafka(brokers, &topic), &TopicArgs::default())
            .await
            .unwrap();
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1048576")
        .set("message.max.bytes", (16 * 1024 * 1024).to_string())
        .create()
        .unwrap();
    // Warm the connection and create the topic outside the timed part.
    producer
        .send(
            FutureRecord::to(&topic).key("warm").payload("warm"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let (key, payload, headers) = message(i);
        loop {
            let mut record = FutureRecord::to(&topic)
                .key(key)
                .payload(payload)
                .partition(0);
            if let Some(headers) = &headers {
                record = record.headers(headers.clone());
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((_, _)) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    for delivery in pending {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    started.elapsed()
}

/// Waits until every partition of `topic` has a leader that answers.
fn wait_until_led(brokers: &str, topic: &str) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata.topics()[0].partitions();
        let led = !partitions.is_empty()
            && partitions.iter().all(|p| {
                p.leader() >= 0
                    && consumer
                        .fetch_watermarks(topic, p.id(), Duration::from_secs(1))
                        .is_ok()
            });
        if led {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} has no leaders after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Imports `path` into a new topic; returns the time and the topic.
async fn ingest_import_into(brokers: &str, path: &str) -> (Duration, String) {
    let topic = unique("ingest");
    let import = ImportConfig::new([path])
        .collection(
            "x-mitre-collection--1f5f1533-f617-4ca8-9ab4-6a02367fa019",
            "Enterprise ATT&CK",
        )
        .release("18.1");
    let settings = Settings {
        kafka: kafka(brokers, &topic),
        ..Settings::new(import)
    };
    // Create the topics first so the timed run measures the import, not topic creation.
    ingest::ensure_topics(&settings.kafka, &settings.topics)
        .await
        .unwrap();
    // As the raw loop's warm-up message does for its topic: the clock starts once the new
    // topic has leaders (a real import writes to a topic that exists long since).
    wait_until_led(brokers, &topic);
    let started = Instant::now();
    let summary = ingest::run(settings, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.outcome(), Outcome::Complete);
    (started.elapsed(), topic)
}

async fn ingest_import(brokers: &str, path: &str) -> Duration {
    ingest_import_into(brokers, path).await.0
}

/// User + system CPU seconds of a process (`pid` a number, or `self`), from Linux's
/// `/proc/<pid>/stat` at 100 ticks a second; 0 where that cannot be read.
fn cpu_seconds(pid: &str) -> f64 {
    let read = || -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
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

/// The broker's pid, when it runs from `dev/services` (for its CPU time).
fn broker_pid() -> String {
    let pid_file = fixtures::repo_root().join(".run/kafka.pid");
    std::fs::read_to_string(pid_file)
        .map(|p| p.trim().to_owned())
        .unwrap_or_default()
}

/// Runs `f`, printing the CPU seconds this process and the broker used meanwhile.
async fn with_cpu<F: std::future::Future<Output = Duration>>(name: &str, f: F) -> Duration {
    let broker = broker_pid();
    let (own, kafka) = (cpu_seconds("self"), cpu_seconds(&broker));
    let elapsed = f.await;
    println!(
        "  {name}: CPU {:.2} s here, {:.2} s in the broker",
        cpu_seconds("self") - own,
        cpu_seconds(&broker) - kafka
    );
    elapsed
}

#[tokio::main]
async fn main() {
    if std::env::var_os("TAXIWAY_LOG").is_some() {
        service::init_tracing(service::LogFormat::Text, "info");
    }
    let file = std::env::var("TAXIWAY_BENCH_FILE")
        .unwrap_or_else(|_| "stix-2.0/enterprise-attack-18.1.json.zst".to_owned());
    let Some(path) = fixtures::shared_only(&file) else {
        return;
    };
    let brokers = kafka_brokers();
    let rounds: usize = std::env::var("TAXIWAY_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    let compressed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(zstd::decode_all(compressed.as_slice()).unwrap()).unwrap();
    let bundle: Bundle<'_> = serde_json::from_str(&text).unwrap();
    let object_bytes: usize = bundle.objects.iter().map(|o| o.get().len()).sum();
    let n = bundle.objects.len();
    println!(
        "file {} : {} objects, {:.1} MB of bundle JSON, {:.1} MB of object JSON",
        path.display(),
        n,
        text.len() as f64 / 1e6,
        object_bytes as f64 / 1e6
    );
    println!(
        "{:<28} {:>8} {:>12} {:>10}",
        "run", "seconds", "objects/s", "MB/s"
    );
    let path_text = path.display().to_string();
    // The same bundle as a plain JSON file: what the raw loop starts from (uncompressed bytes),
    // so the difference between the two ingest lines is the zstd decompression of the file.
    let plain = std::env::temp_dir().join(format!("{}.json", unique("bundle")));
    std::fs::write(&plain, &text).unwrap();
    let plain_text = plain.display().to_string();
    // What ingest publishes for the bundle, for the raw loop of its own messages: one import
    // into a topic of its own, read back (outside every timing).
    let (_, seeded) = ingest_import_into(&brokers, &path_text).await;
    let messages: Vec<Published> = taxiway_tests::topic::read_all(&brokers, &seeded)
        .await
        .unwrap()
        .into_iter()
        .map(Published::from)
        .collect();
    let message_bytes: usize = messages.iter().map(|m| m.key.len() + m.payload.len()).sum();
    println!(
        "ingest's messages for it: {} ({:.1} MB of keys and payloads)",
        messages.len(),
        message_bytes as f64 / 1e6
    );
    let mut best_raw = Duration::MAX;
    let mut best_messages = Duration::MAX;
    let mut best_compacted = Duration::MAX;
    let mut best_ingest = Duration::MAX;
    let mut best_plain = Duration::MAX;
    let mut ingest_seconds = Vec::with_capacity(rounds);
    // raw / ingest within each round: the machine's speed drifts between rounds, a round's
    // runs see the same machine.
    let mut round_ratios = Vec::with_capacity(rounds);
    let mut plain_ratios = Vec::with_capacity(rounds);
    let mut message_ratios = Vec::with_capacity(rounds);
    let mut plain_message_ratios = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let raw = with_cpu("raw", raw_produce(&brokers, &bundle.objects, false)).await;
        let compacted = with_cpu(
            "raw, compacted",
            raw_produce(&brokers, &bundle.objects, true),
        )
        .await;
        let raw_messages = with_cpu(
            "raw, ingest's messages",
            raw_produce_messages(&brokers, &messages),
        )
        .await;
        let ingest = with_cpu("ingest", ingest_import(&brokers, &path_text)).await;
        let ingest_plain = with_cpu("ingest, plain", ingest_import(&brokers, &plain_text)).await;
        for (name, elapsed) in [
            ("raw rdkafka produce", raw),
            ("raw, compacted topic", compacted),
            ("raw, ingest's messages", raw_messages),
            ("ingest import (end to end)", ingest),
            ("ingest import, plain .json", ingest_plain),
        ] {
            let secs = elapsed.as_secs_f64();
            println!(
                "{:<28} {:>8.2} {:>12.0} {:>10.1}   (round {round})",
                name,
                secs,
                n as f64 / secs,
                object_bytes as f64 / 1e6 / secs
            );
        }
        best_raw = best_raw.min(raw);
        best_compacted = best_compacted.min(compacted);
        best_ingest = best_ingest.min(ingest);
        ingest_seconds.push(ingest.as_secs_f64());
        best_plain = best_plain.min(ingest_plain);
        round_ratios.push(raw.as_secs_f64() / ingest.as_secs_f64());
        plain_ratios.push(raw.as_secs_f64() / ingest_plain.as_secs_f64());
        message_ratios.push(raw_messages.as_secs_f64() / ingest.as_secs_f64());
        plain_message_ratios.push(raw_messages.as_secs_f64() / ingest_plain.as_secs_f64());
        best_messages = best_messages.min(raw_messages);
    }
    let _ = std::fs::remove_file(&plain);
    let ratio = |best: Duration| best_raw.as_secs_f64() / best.as_secs_f64();
    println!(
        "best of {rounds}: raw {:.0} objects/s; ingest {:.0} objects/s (.json.zst), {:.0} objects/s (.json)",
        n as f64 / best_raw.as_secs_f64(),
        n as f64 / best_ingest.as_secs_f64(),
        n as f64 / best_plain.as_secs_f64(),
    );
    println!(
        "ratio ingest/raw (target >= 0.4), best of {rounds}: {:.2} (.json.zst), {:.2} (.json); \
         per round: {} (.json.zst), {} (.json)",
        ratio(best_ingest),
        ratio(best_plain),
        spread(&round_ratios),
        spread(&plain_ratios),
    );
    println!(
        "raw into a compacted topic like ingest's: {:.0} objects/s; ratio ingest/that = {:.2} (.json.zst), {:.2} (.json)",
        n as f64 / best_compacted.as_secs_f64(),
        best_compacted.as_secs_f64() / best_ingest.as_secs_f64(),
        best_compacted.as_secs_f64() / best_plain.as_secs_f64()
    );
    println!(
        "raw produce of ingest's own messages (same keys and payloads, {:.1} MB): {:.0} objects/s; \
         ratio ingest/that, best of {rounds}: {:.2} (.json.zst), {:.2} (.json); per round: {} (.json.zst), {} (.json)",
        message_bytes as f64 / 1e6,
        n as f64 / best_messages.as_secs_f64(),
        best_messages.as_secs_f64() / best_ingest.as_secs_f64(),
        best_messages.as_secs_f64() / best_plain.as_secs_f64(),
        spread(&message_ratios),
        spread(&plain_message_ratios),
    );
    // The target compares ingest with a raw produce of the same messages: the keys and Avro
    // payloads ingest publishes. The raw produce of the objects' JSON above sends less (no
    // event fields), so its ratio is printed for context only.
    let verdict = |median: f64| if median >= 0.4 { "met" } else { "not met" };
    let (zst, json) = (median(&message_ratios), median(&plain_message_ratios));
    println!(
        "target ingest >= 0.4x raw produce of the same messages, on the median of paired rounds: \
         {} from the .json.zst ({zst:.2}), {} from the .json ({json:.2}); against the objects' \
         JSON: {:.2} (.json.zst), {:.2} (.json)",
        verdict(zst),
        verdict(json),
        median(&round_ratios),
        median(&plain_ratios),
    );
    let import_median = median(&ingest_seconds);
    println!(
        "target Enterprise import under 1 s, on the median of {rounds} rounds: {} ({import_median:.2} s \
         from the .json.zst)",
        if import_median < 1.0 {
            "met"
        } else {
            "not met"
        },
    );
    delete_bench_topics(&brokers).await;
}

/// Deletes every topic a run of this bench creates (this run's and any an interrupted run left):
/// each round writes ~180 MB to the broker, which filled the dev machine's disk after some
/// dozen runs.
async fn delete_bench_topics(brokers: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let topics: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with("bench_raw_") || name.starts_with("bench_ingest_"))
        .collect();
    if topics.is_empty() {
        return;
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let results = admin
        .delete_topics(&topics, &AdminOptions::new())
        .await
        .unwrap();
    let deleted = results.iter().filter(|r| r.is_ok()).count();
    println!("deleted {deleted} of {} bench topics", topics.len());
}

/// The median of per-round ratios (the upper one of an even count, as [`spread`] prints).
fn median(ratios: &[f64]) -> f64 {
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// "median M (min–max)" of per-round ratios.
fn spread(ratios: &[f64]) -> String {
    let (min, max) = ratios
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
    format!("median {:.2} ({min:.2}–{max:.2})", median(ratios))
}
