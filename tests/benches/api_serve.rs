//! Benchmark (not a test): requests per second and latency of the TAXII API over the real
//! pipeline (ICS 18.1, Mobile 17.1 and the STIX 2.0 Enterprise 18.1 bundle imported, projected
//! into Cassandra, loaded by an in-process API on 127.0.0.1). Needs the dev services.
//! Run: `eval "$(dev/services env)"; cargo bench -p taxiway-tests --bench api_serve`.
//! `TAXIWAY_BENCH_CONTROL=<keyspace>` reuses a control keyspace projected by an earlier run
//! (its name is printed) instead of importing again.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot run should stop loudly

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use taxiway_tests::Deadline;
use taxiway_tests::api::{Api, key_of};
use taxiway_tests::fixtures;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

const ENTERPRISE: &str = "x-mitre-collection--1f5f1533-f617-4ca8-9ab4-6a02367fa019";
/// The release only the shared data has (a fresh clone skips this bench).
const ENTERPRISE_FILE: &str = "stix-2.0/enterprise-attack-18.1.json.zst";

struct Case {
    name: &'static str,
    path: String,
    gzip: bool,
    concurrency: usize,
    requests: usize,
}

struct Outcome {
    done: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    bytes: usize,
}

async fn load(api: &Api, case: &Case, budget: Duration) -> Outcome {
    let client = reqwest::Client::builder()
        .no_gzip()
        .pool_max_idle_per_host(case.concurrency)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let url = format!("{}{}", api.base, case.path);
    // Warm-up: the first request builds the filter result and the connection.
    for _ in 0..case.concurrency.min(4) {
        let r = client
            .get(&url)
            .header("accept", "application/taxii+json;version=2.1")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().await.unwrap();
    }
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let stop_at = started + budget;
    let mut tasks = Vec::new();
    for _ in 0..case.concurrency {
        let (client, url, issued) = (client.clone(), url.clone(), issued.clone());
        let (requests, gzip) = (case.requests, case.gzip);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bytes = 0;
            while issued.fetch_add(1, Ordering::Relaxed) < requests && Instant::now() < stop_at {
                let t = Instant::now();
                let mut request = client
                    .get(&url)
                    .header("accept", "application/taxii+json;version=2.1");
                if gzip {
                    request = request.header("accept-encoding", "gzip");
                }
                let response = request.send().await.unwrap();
                assert!(
                    response.status().is_success(),
                    "{url}: {}",
                    response.status()
                );
                if gzip {
                    assert_eq!(
                        response
                            .headers()
                            .get("content-encoding")
                            .map(|v| v.to_str().unwrap()),
                        Some("gzip")
                    );
                }
                bytes = response.bytes().await.unwrap().len();
                latencies.push(t.elapsed());
            }
            (latencies, bytes)
        }));
    }
    let mut latencies = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        let (l, b) = t.await.unwrap();
        latencies.extend(l);
        bytes = bytes.max(b);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Outcome {
        done: latencies.len(),
        elapsed,
        latencies,
        bytes,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn project() -> String {
    let topics = Topics::new("bench_api");
    let started = Instant::now();
    for f in ["ics-attack-18.1.json.zst", "mobile-attack-17.1.json.zst"] {
        let path = fixtures::path(f);
        topics
            .ingest(&["import", path.to_str().unwrap()])
            .await
            .unwrap();
    }
    let enterprise = fixtures::path(ENTERPRISE_FILE);
    topics
        .ingest(&[
            "import",
            enterprise.to_str().unwrap(),
            "--collection",
            ENTERPRISE,
            "--title",
            "Enterprise ATT&CK",
            "--release",
            "18.1",
        ])
        .await
        .unwrap();
    println!("imported in {:.1?}", started.elapsed());
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    let control = projection::control_keyspace("bench_api");
    let started = Instant::now();
    let projector = projection::start(&topics, &control, &["run"]).unwrap();
    let session = projection::session().await.unwrap();
    projection::wait_for_revisions(
        &session,
        &control,
        &expected,
        Deadline::after(Duration::from_secs(1800)),
    )
    .await
    .unwrap();
    println!(
        "projected {} events in {:.1?} (control keyspace {control})",
        events.len(),
        started.elapsed()
    );
    projector.stop().await.unwrap();
    control
}

#[tokio::main]
async fn main() {
    if fixtures::shared_only(ENTERPRISE_FILE).is_none() {
        return;
    }
    let control = match std::env::var("TAXIWAY_BENCH_CONTROL") {
        Ok(c) => c,
        Err(_) => project().await,
    };
    let started = Instant::now();
    let api = Api::start(&control).await.unwrap();
    api.wait_ready(Deadline::after(Duration::from_secs(300)))
        .await
        .unwrap();
    let loaded = api.loaded_revisions().await.unwrap();
    assert!(loaded.contains_key(ENTERPRISE), "{loaded:?}");
    println!(
        "API ready in {:.1?} with {} collections",
        started.elapsed(),
        loaded.len()
    );
    let enterprise = fixtures::Release::load(ENTERPRISE_FILE).unwrap();
    let technique = enterprise
        .objects
        .iter()
        .find(|o| o["type"] == "attack-pattern")
        .map(fixtures::id_of)
        .unwrap();
    let objects = format!("/api/v21/collections/{ENTERPRISE}/objects/");
    // Figures for wrong answers are worthless: the whole collection is the release file.
    let whole = api.page(&objects, "objects").await.unwrap();
    let served: BTreeSet<_> = whole.items.iter().map(key_of).collect();
    assert_eq!(served.len(), whole.items.len(), "no duplicates");
    assert_eq!(
        served,
        enterprise.versions(),
        "Enterprise 18.1 served exactly"
    );
    let by_version = enterprise.by_version();
    assert!(whole.items.iter().all(|o| by_version[&key_of(o)] == o));
    let manifest = api
        .page(
            &format!("/api/v21/collections/{ENTERPRISE}/manifest/?limit=5"),
            "objects",
        )
        .await
        .unwrap();
    println!(
        "Enterprise: {} objects served JSON-equal to the file; manifest media_type {}",
        whole.items.len(),
        manifest.items[0]["media_type"]
    );
    let cases = [
        Case {
            name: "objects?limit=100",
            path: format!("{objects}?limit=100"),
            gzip: false,
            concurrency: 16,
            requests: 20_000,
        },
        Case {
            name: "manifest?limit=100",
            path: format!("/api/v21/collections/{ENTERPRISE}/manifest/?limit=100"),
            gzip: false,
            concurrency: 16,
            requests: 20_000,
        },
        Case {
            name: "object by id",
            path: format!("{objects}{technique}/"),
            gzip: false,
            concurrency: 16,
            requests: 20_000,
        },
        Case {
            name: "objects (all), plain",
            path: objects.clone(),
            gzip: false,
            concurrency: 4,
            requests: 100,
        },
        Case {
            name: "objects (all), gzip",
            path: objects.clone(),
            gzip: true,
            concurrency: 4,
            requests: 40,
        },
    ];
    println!(
        "\n| request | conc. | requests | req/s | p50 ms | p99 ms | body bytes |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for case in &cases {
        let o = load(&api, case, Duration::from_secs(30)).await;
        println!(
            "| `{}` | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            case.name,
            case.concurrency,
            o.done,
            o.done as f64 / o.elapsed.as_secs_f64(),
            percentile(&o.latencies, 50.0).as_secs_f64() * 1e3,
            percentile(&o.latencies, 99.0).as_secs_f64() * 1e3,
            o.bytes
        );
    }
    api.stop().await.unwrap();
}
