//! `taxiway serve` as a process: killed with SIGKILL during an import, at rest and during the
//! projection's rebuild, it restarts and serves what a clean run serves, no version lost or
//! duplicated; and its log, exported to Kafka and projected into Cassandra, is served there
//! with the same bytes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use taxiway_tests::api::{Api, serve_projected_signed};
use taxiway_tests::crawl::{Answer, crawl, without_dates};
use taxiway_tests::node_child::{log_revisions, objects_in_log, wait_import_done};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::{Deadline, fixtures, node_child, unique_name};

/// A cursor key every server of these tests signs with, so their `next` links are equal.
const CURSOR_KEY: &str = "node-crash-tests-cursor-key";

fn log_path(name: &str) -> PathBuf {
    fixtures::repo_root()
        .join("target/e2e-logs")
        .join(format!("{name}.log"))
}

/// The arguments of `taxiway serve` on `data` at `addr`, importing the shipped releases when
/// `import` is set.
fn serve_args(data: &Path, addr: SocketAddr, import: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--data",
        &data.display().to_string(),
        "--listen",
        &addr.to_string(),
        "--cursor-key",
        CURSOR_KEY,
        "--poll-interval",
        "100ms",
    ]
    .map(str::to_owned)
    .to_vec();
    if import {
        args.push("import".into());
        args.extend(
            fixtures::SHIPPED_RELEASES
                .iter()
                .map(|f| fixtures::path(f).display().to_string()),
        );
    }
    args
}

fn log_len(log: &Path) -> usize {
    std::fs::metadata(log).map_or(0, |m| m.len() as usize)
}

/// Starts `serve` (importing when `import`), waits until everything in its log is served, and
/// returns the process, its API and what the API serves.
async fn serve_all(
    data: &Path,
    import: bool,
    log: &Path,
) -> (tokio::process::Child, Api, BTreeMap<String, Answer>) {
    let addr = node_child::free_addr().unwrap();
    let from = log_len(log);
    let child = node_child::spawn(&serve_args(data, addr, import), log).unwrap();
    if import {
        wait_import_done(log, from, Deadline::after(Duration::from_secs(300)))
            .await
            .unwrap();
    }
    let api = Api::remote(addr).unwrap();
    api.wait_for_revisions(
        &log_revisions(data).unwrap(),
        Deadline::after(Duration::from_secs(120)),
    )
    .await
    .unwrap();
    let served = crawl(&api.client, &api.base).await.unwrap();
    (child, api, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_import_and_projection_serves_what_a_clean_run_serves() {
    let name = unique_name("node_crash");
    let log = log_path(&name);
    println!("node_crash: child logs in {}", log.display());
    let dir = tempfile::tempdir().unwrap();

    // A clean run.
    let clean = dir.path().join("clean");
    let (mut child, api, from_clean) = serve_all(&clean, true, &log).await;
    let total = objects_in_log(&clean);
    assert_one_metrics_endpoint_for_every_stage(&api, total).await;
    child.kill().await.unwrap();
    assert!(from_clean.len() > 50, "{} answers", from_clean.len());

    // Killed in the middle of the import (some of the log written, not all), then restarted
    // with the same import: it completes what is missing.
    let crashed = dir.path().join("crashed");
    let addr = node_child::free_addr().unwrap();
    let mut child = node_child::spawn(&serve_args(&crashed, addr, true), &log).unwrap();
    let deadline = Deadline::after(Duration::from_secs(300));
    loop {
        let written = objects_in_log(&crashed);
        if written > total / 4 {
            assert!(
                written < total,
                "the import finished before it could be killed"
            );
            break;
        }
        assert!(!deadline.passed(), "the import wrote nothing");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().await.unwrap();
    let killed_at = objects_in_log(&crashed);
    println!("node_crash: killed the import at {killed_at} of {total} records");
    let (mut child, _, after_import_crash) = serve_all(&crashed, true, &log).await;
    assert_eq!(
        without_dates(&after_import_crash),
        without_dates(&from_clean)
    );

    // Killed at rest, then again during the projection's rebuild at start: the log is the
    // state, so the node serves exactly what it served before.
    child.kill().await.unwrap();
    let addr = node_child::free_addr().unwrap();
    let mut child = node_child::spawn(&serve_args(&crashed, addr, false), &log).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    child.kill().await.unwrap();
    let (mut child, _, after_projection_crash) = serve_all(&crashed, false, &log).await;
    assert_eq!(after_projection_crash, after_import_crash);
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_exported_to_kafka_and_projected_into_cassandra_serves_the_same_bytes() {
    let name = unique_name("node_export");
    let log = log_path(&name);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let (mut child, _, from_node) = serve_all(&data, true, &log).await;
    child.kill().await.unwrap();

    let topics = Topics::new("node_export");
    let export = node_child::export_args(&data, &topics);
    let mut exporting = node_child::spawn(&export, &log).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), exporting.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "export failed; see {}", log.display());
    let records = topics.object_records().await.unwrap();
    assert_eq!(records.len() as i64, objects_in_log(&data));

    let (_, projector, cql) = serve_projected_signed(
        &topics,
        "node_export",
        &log_revisions(&data).unwrap(),
        Some(CURSOR_KEY),
    )
    .await
    .unwrap();
    let from_cql = crawl(&cql.client, &cql.base).await.unwrap();
    assert_eq!(
        from_cql.keys().collect::<Vec<_>>(),
        from_node.keys().collect::<Vec<_>>()
    );
    for (path, answer) in &from_node {
        assert_eq!(&from_cql[path], answer, "{path}");
    }
    cql.stop().await.unwrap();
    projector.stop().await.unwrap();
}

/// The sum of the samples of `name` (any labels) whose label set holds every one of `labels`.
fn metric_sum(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|label| rest.contains(label))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// The node serves the API's, the projector's and ingest's metrics at its one `/metrics`, each
/// under its service's prefix, and the process metrics once.
async fn assert_one_metrics_endpoint_for_every_stage(api: &Api, records: i64) {
    let reply = api.get("/metrics").await.unwrap();
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let bundles = fixtures::SHIPPED_RELEASES.len() as f64;
    assert_eq!(
        metric_sum(&text, "taxiway_ingest_bundles_total", &[r#"outcome="ok""#]),
        bundles,
        "ingest's bundles"
    );
    assert_eq!(
        metric_sum(&text, "taxiway_projector_events_total", &[]),
        records as f64,
        "the projector applied every record of the log"
    );
    assert!(
        metric_sum(&text, "taxiway_api_collection_revision", &[]) > 0.0,
        "the API's own metrics"
    );
    let process = text
        .lines()
        .filter(|l| l.starts_with("# TYPE process_resident_memory_bytes "))
        .count();
    assert_eq!(process, 1, "the process metrics once");
}
