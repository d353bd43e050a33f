//! Benchmark (not a test): the api's live stream (`…/collections/{id}/stream/`) over the real
//! pipeline (ingest → Kafka → projector → Cassandra → api, all in this process, the api and the
//! projector with their default poll intervals).
//!
//! 1. Latency: from `ingest import` returning to the new version arriving at a subscriber of the
//!    history root, for TAXIWAY_BENCH_ROUNDS (20) imports of a one-object bundle; median and max.
//! 2. Cost: TAXIWAY_BENCH_SUBSCRIBERS (1,000) idle subscribers, each a raw socket that read the
//!    response head; the process' resident memory before and after they are open (an upper bound
//!    of the api's share: the sockets' client ends are in the same process).
//!
//! Run: `dev/services start && cargo bench -p taxiway-tests --bench stream` (needs an open-file
//! limit above twice the subscribers).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot run should stop loudly

use std::time::{Duration, Instant};

use api::config::ServerConfig;
use ingest::config::ImportConfig;
use taxiway_tests::api::{Api, serve_projected};
use taxiway_tests::bench::env_usize;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;
use taxiway_tests::sse::EventStream;
use taxiway_tests::{Deadline, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OBJECT_ID: &str = "attack-pattern--0a3ead4e-6d47-4ccb-854c-a6a4f9d96b22";

/// A bundle of one attack-pattern whose version is `round` seconds into 2030.
fn bundle(dir: &std::path::Path, round: usize) -> (std::path::PathBuf, String) {
    let modified = format!(
        "2030-01-01T{:02}:{:02}:{:02}.000Z",
        round / 3600,
        round / 60 % 60,
        round % 60
    );
    let text = format!(
        r#"{{"type":"bundle","id":"bundle--1b3ead4e-6d47-4ccb-854c-a6a4f9d96b22","objects":[
        {{"type":"attack-pattern","spec_version":"2.1","id":"{OBJECT_ID}",
          "created":"2020-01-01T00:00:00.000Z","modified":"{modified}","name":"round {round}"}}]}}"#
    );
    let path = dir.join(format!("round-{round}.json"));
    std::fs::write(&path, text).unwrap();
    (path, modified)
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// Opens a stream on a raw socket and reads its response head; the socket is then left idle.
async fn idle_subscriber(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds = env_usize("TAXIWAY_BENCH_ROUNDS", 20);
    let subscribers = env_usize("TAXIWAY_BENCH_SUBSCRIBERS", 1_000);
    let dir = tempfile::tempdir().unwrap();
    let collection = unique_name("bench-stream");
    let topics = Topics::new("bench_stream");
    let import = |round: usize| {
        let (path, modified) = bundle(dir.path(), round);
        let topics = &topics;
        let collection = collection.clone();
        async move {
            topics
                .ingest(ImportConfig::new([&path]).collection(&collection, "Bench"))
                .await
                .unwrap();
            modified
        }
    };
    import(0).await;
    let events = topics.events().await.unwrap();
    let revisions = projection::final_revisions(events.iter().map(|(_, e)| e));
    let (control, projector, first) = serve_projected(&topics, "bench_stream", &revisions)
        .await
        .unwrap();
    first.stop().await.unwrap();
    // The replica under test: the default poll interval, as deployed.
    let mut config = Api::config(&control);
    config.server.poll_interval = ServerConfig::default().poll_interval;
    let api = Api::start_with(config).await.unwrap();
    api.wait_for_revisions(&revisions, Deadline::after(Duration::from_secs(120)))
        .await
        .unwrap();
    let path = format!("/api/v21/history/collections/{collection}/stream/");
    let mut stream = EventStream::open(&api.client, &format!("{}{path}", api.base), &[])
        .await
        .unwrap();

    let mut latencies = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let modified = import(round).await;
        let returned = Instant::now();
        let event = stream
            .next(&Deadline::after(Duration::from_secs(60)))
            .await
            .unwrap();
        latencies.push(returned.elapsed());
        let object: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(object["modified"], modified.as_str(), "round {round}");
    }
    latencies.sort();
    println!(
        "import returned → event at the subscriber, {rounds} imports: median {:.0} ms, max {:.0} ms \
         (api poll {:?})",
        median(&latencies).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        ServerConfig::default().poll_interval,
    );

    // Settle, then open the idle subscribers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss();
    let mut sockets = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        sockets.push(idle_subscriber(api.addr, &path).await);
    }
    // Let a few heartbeats pass: the cost of subscribers that stay, not of their first moment.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = rss();
    let metrics = api.get("/metrics").await.unwrap().text();
    let open = metrics
        .lines()
        .find_map(|l| l.strip_prefix("taxiway_api_stream_subscribers "))
        .unwrap_or("?")
        .to_owned();
    let grown = after.saturating_sub(before);
    println!(
        "{subscribers} idle subscribers (gauge: {open}): resident memory +{:.1} MB ({:.1} KB each; \
         target < 50 MB)",
        grown as f64 / 1e6,
        grown as f64 / subscribers as f64 / 1e3,
    );
    drop(sockets);
    drop(stream);
    api.stop().await.unwrap();
    projector.stop().await.unwrap();
}
