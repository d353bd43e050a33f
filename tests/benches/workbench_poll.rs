//! Benchmark (not a test): what one Workbench poll costs — the collections list with
//! `versions=latest` (ingest's frequent poll) and `versions=all` (its periodic full pass), both
//! carrying each version's `x_mitre_contents` — against the Workbench double serving every
//! STIX 2.1 release of the test data (`taxiway_tests::fixtures`). Run: `cargo bench -p taxiway-tests --bench workbench_poll`.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot run should stop loudly

use std::time::{Duration, Instant};

use ingest::workbench::{Auth, Versions, WorkbenchClient};
use taxiway_tests::fixtures;
use taxiway_tests::workbench_double::{WorkbenchConfig, WorkbenchDouble};

const ROUNDS: usize = 20;

#[tokio::main]
async fn main() {
    let double = WorkbenchDouble::start(WorkbenchConfig::default())
        .await
        .unwrap();
    let files = [
        "ics-attack-17.1.json.zst",
        "ics-attack-18.0.json.zst",
        "ics-attack-18.1.json.zst",
        "mobile-attack-17.0.json.zst",
        "mobile-attack-17.1.json.zst",
    ];
    for file in files {
        double
            .add_collection_version_from_bundle(fixtures::path(file))
            .unwrap();
    }
    let client = WorkbenchClient::new(
        double.base_url(),
        Auth::Basic {
            service_name: "taxii-server".into(),
            apikey: "secret-squirrel".into(),
        },
        Duration::from_secs(60),
    )
    .unwrap();
    println!(
        "Workbench double with {} collection versions (ICS 17.1, 18.0, 18.1; Mobile 17.0, 17.1)",
        files.len()
    );
    println!(
        "{:<16} {:>10} {:>12} {:>12} {:>8}",
        "request", "versions", "bytes", "median ms", "p90 ms"
    );
    for (name, versions) in [
        ("list latest", Versions::Latest),
        ("list all", Versions::All),
    ] {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        let mut listed = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let fetched = client.collections(versions).await.unwrap();
            times.push(started.elapsed());
            bytes = fetched.bytes;
            listed = fetched.value.len();
        }
        times.sort();
        println!(
            "{:<16} {:>10} {:>12} {:>12.2} {:>8.2}",
            name,
            listed,
            bytes,
            times[ROUNDS / 2].as_secs_f64() * 1e3,
            times[ROUNDS * 9 / 10].as_secs_f64() * 1e3
        );
    }
    let started = Instant::now();
    let bundle = client
        .collection_bundle(
            "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09",
            "2025-11-13T14:00:00.188Z",
        )
        .await
        .unwrap();
    println!(
        "{:<16} {:>10} {:>12} {:>12.2}",
        "bundle ICS 18.1",
        1,
        bundle.bytes,
        started.elapsed().as_secs_f64() * 1e3
    );
}
