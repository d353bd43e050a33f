//! Benchmark (not a test): `taxiway serve`, the one-machine node, from its release binary.
//!
//! Per round, on the eight releases (ICS 17.1/18.0/18.1 and Mobile 17.0/17.1 from the data
//! folder, Enterprise 15.1/18.0/18.1 in STIX 2.0 from the shared data when present):
//! 1. first start on an empty data folder, importing them: time to the first TAXII answer
//!    (`/taxii2/`), time until every collection is loaded, resident memory then and once settled
//!    (a few seconds later, when the node has given back what the burst freed);
//! 2. restart on the same folder (the projection rebuilt from the log): the same figures.
//!
//! Then, once: page serving of the node against the distributed api over the same messages (the
//! node's log exported to Kafka, projected into Cassandra, an api in this process), in paired
//! rounds of `objects/?limit=100` requests at a fixed concurrency; the ratio per round.
//!
//! Run: `cargo build --release -p taxiway-node && dev/services start && eval "$(dev/services
//! env)" && cargo bench -p taxiway-tests --bench node_serve` (`TAXIWAY_BENCH_ROUNDS`, default
//! 3; without Kafka and Cassandra the comparison is skipped and says so).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot run should stop loudly

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use taxiway_tests::Deadline;
use taxiway_tests::api::{Api, serve_projected_signed};
use taxiway_tests::bench::{env_usize, median};
use taxiway_tests::fixtures::{self, data_dir};
use taxiway_tests::node_child::{export_args, free_addr, log_revisions, wait_import_done};
use taxiway_tests::pipeline::Topics;

const CURSOR_KEY: &str = "node-serve-bench";
const ENTERPRISE: &str = "x-mitre-collection--1f5f1533-f617-4ca8-9ab4-6a02367fa019";
const ICS: &str = "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09";

/// The eight releases: the data folder's STIX 2.1 ones and the shared STIX 2.0 Enterprise ones.
fn releases() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fixtures::SHIPPED_RELEASES
        .iter()
        .map(|f| fixtures::path(f))
        .collect();
    for label in ["15.1", "18.0", "18.1"] {
        match fixtures::shared_only(&format!("stix-2.0/enterprise-attack-{label}.json.zst")) {
            Some(path) => files.push(path),
            None => println!("without Enterprise {label}: only the shipped releases"),
        }
    }
    files
}

/// The JSON the files hold, decompressed, in bytes.
fn raw_json(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .map(|f| {
            let mut text = Vec::new();
            zstd::Decoder::new(std::fs::File::open(f).unwrap())
                .unwrap()
                .read_to_end(&mut text)
                .unwrap();
            text.len() as u64
        })
        .sum()
}

/// `VmRSS` of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

struct Start {
    first_answer: Duration,
    loaded: Duration,
    /// Resident memory the moment everything is loaded, and `SETTLE` later.
    rss_loaded: u64,
    rss: u64,
}

/// How long after loading the settled resident memory is read.
const SETTLE: Duration = Duration::from_secs(3);

/// Starts the node and measures; leaves it running (returned) for what comes next.
async fn start(
    bin: &Path,
    data: &Path,
    import: Option<&[PathBuf]>,
    log: &Path,
) -> (tokio::process::Child, Api, Start) {
    let addr = free_addr().unwrap();
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let from = std::fs::metadata(log).map_or(0, |m| m.len() as usize);
    let mut command = tokio::process::Command::new(bin);
    command
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(["--listen", &addr.to_string(), "--cursor-key", CURSOR_KEY])
        .stderr(stderr)
        .kill_on_drop(true);
    if let Some(files) = import {
        command
            .args(["import", "--attack-domain", "auto"])
            .args(files);
    }
    let started = Instant::now();
    let child = command.spawn().unwrap();
    let api = Api::remote(addr).unwrap();
    let first_answer = loop {
        if let Ok(reply) = api.get("/taxii2/").await
            && reply.status == 200
        {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    if import.is_some() {
        wait_import_done(log, from, Deadline::after(Duration::from_secs(600)))
            .await
            .unwrap();
    }
    let expected = log_revisions(data).unwrap();
    api.wait_for_revisions(&expected, Deadline::after(Duration::from_secs(600)))
        .await
        .unwrap();
    let loaded = started.elapsed();
    let pid = child.id().unwrap();
    let rss_loaded = rss(pid);
    // The node gives what the burst freed back to the system once it has been quiet a moment.
    tokio::time::sleep(SETTLE).await;
    (
        child,
        api,
        Start {
            first_answer,
            loaded,
            rss_loaded,
            rss: rss(pid),
        },
    )
}

/// Requests per second of `requests` GETs of `path` with `concurrency` in flight.
async fn rate(api: &Api, path: &str, requests: usize, concurrency: usize) -> f64 {
    let url = format!("{}{path}", api.base);
    let started = Instant::now();
    futures::stream::iter(0..requests)
        .map(|_| {
            let request = api
                .client
                .get(&url)
                .header("accept", taxiway_tests::api::TAXII);
            async move {
                let reply = request.send().await.unwrap();
                assert_eq!(reply.status(), 200);
                reply.bytes().await.unwrap().len()
            }
        })
        .buffer_unordered(concurrency)
        .for_each(|_| async {})
        .await;
    requests as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let rounds = env_usize("TAXIWAY_BENCH_ROUNDS", 3);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| fixtures::repo_root().join("target"));
    let bin = target.join("release/taxiway");
    if !bin.is_file() {
        println!(
            "no {}: build it first (cargo build --release -p taxiway-node)",
            bin.display()
        );
        return;
    }
    let files = releases();
    let raw = raw_json(&files);
    println!(
        "{} releases, {:.1} MB of JSON; {} in {}",
        files.len(),
        raw as f64 / 1e6,
        bin.display(),
        data_dir().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("taxiway.log");
    let mut figures: [Vec<f64>; 6] = Default::default();
    let mut kept = None;
    for round in 1..=rounds {
        let data = dir.path().join(format!("data-{round}"));
        let (mut first, _, cold) = start(&bin, &data, Some(&files), &log).await;
        first.kill().await.unwrap();
        let (again, api, warm) = start(&bin, &data, None, &log).await;
        println!(
            "round {round}: first start: first answer {:.2} s, all loaded {:.2} s, RSS {:.0} MB loaded, {:.0} MB settled ({:.2}× the JSON); restart: first answer {:.2} s, all loaded {:.2} s, RSS {:.0} MB loaded, {:.0} MB settled ({:.2}×)",
            cold.first_answer.as_secs_f64(),
            cold.loaded.as_secs_f64(),
            cold.rss_loaded as f64 / 1e6,
            cold.rss as f64 / 1e6,
            cold.rss as f64 / raw as f64,
            warm.first_answer.as_secs_f64(),
            warm.loaded.as_secs_f64(),
            warm.rss_loaded as f64 / 1e6,
            warm.rss as f64 / 1e6,
            warm.rss as f64 / raw as f64,
        );
        for (slot, value) in figures.iter_mut().zip([
            cold.first_answer.as_secs_f64(),
            cold.loaded.as_secs_f64(),
            cold.rss as f64 / raw as f64,
            warm.first_answer.as_secs_f64(),
            warm.loaded.as_secs_f64(),
            warm.rss as f64 / raw as f64,
        ]) {
            slot.push(value);
        }
        kept = Some((again, api, data));
    }
    let [a, b, c, d, e, f] = figures.map(median);
    println!(
        "median of {rounds}: first start: first answer {a:.2} s, all loaded {b:.2} s, RSS settled {c:.2}× the JSON; restart: first answer {d:.2} s, all loaded {e:.2} s, RSS settled {f:.2}×"
    );

    // Page serving against the distributed api over the same messages.
    let Some((_node, node_api, data)) = kept else {
        return;
    };
    let topics = Topics::new("bench_node_serve");
    let exported = tokio::process::Command::new(&bin)
        .args(export_args(&data, &topics))
        .status()
        .await
        .unwrap();
    if !exported.success() {
        println!("export to Kafka failed (are dev/services running?): no comparison");
        return;
    }
    let expected = log_revisions(&data).unwrap();
    let (_, projector, cql) =
        serve_projected_signed(&topics, "bench_node_serve", &expected, Some(CURSOR_KEY))
            .await
            .unwrap();
    projector.stop().await.unwrap();
    let collection = if files.len() > 5 { ENTERPRISE } else { ICS };
    let path = format!("/api/v21/collections/{collection}/objects/?limit=100");
    let (requests, concurrency) = (2000, 8);
    rate(&node_api, &path, 200, concurrency).await;
    rate(&cql, &path, 200, concurrency).await;
    let mut ratios = Vec::new();
    for round in 1..=5 {
        let node = rate(&node_api, &path, requests, concurrency).await;
        let distributed = rate(&cql, &path, requests, concurrency).await;
        println!(
            "pages round {round}: node {node:.0} req/s, distributed api {distributed:.0} req/s, ratio {:.2}",
            node / distributed
        );
        ratios.push(node / distributed);
    }
    println!(
        "pages ({path}, {requests} requests, {concurrency} in flight): node / distributed api, median of 5 paired rounds: {:.2}",
        median(ratios)
    );
    cql.stop().await.unwrap();
}
