//! Unmodified Python TAXII clients (taxii2-client, stix2, mitreattack-python, attackcti) against
//! the real pipeline serving the shipped ATT&CK releases: bundles → ingest → Kafka → projector →
//! Cassandra → api → HTTP → `tests/python/test_clients.py` (pytest, in the venv `dev/python-env`
//! makes; `dev/test` runs it first). The Python side computes its expectations from the same
//! bundle files.

use std::time::{Duration, Instant};

use ingest::config::ImportConfig;
use taxiway_tests::api::serve_projected;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;
use taxiway_tests::python;

/// The shipped releases, in release order (the Python side assumes this order).
const FILES: [&str; 5] = taxiway_tests::fixtures::SHIPPED_RELEASES;
/// How many Python tests must pass (tests/python/test_clients.py has this many, parametrised
/// cases included); fewer means a test was lost or skipped.
const MIN_PASSED: usize = 21;

/// `N` of pytest's closing line (`21 passed in 9.8s`, `1 failed, 20 passed in …`).
fn passed(output: &str) -> usize {
    output
        .lines()
        .rev()
        .find_map(|line| {
            let words: Vec<&str> = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .collect();
            words
                .windows(2)
                .find(|w| w[1] == "passed")
                .and_then(|w| w[0].parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_read_the_shipped_releases_exactly() {
    let data = taxiway_tests::fixtures::data_dir();

    // The pipeline: five releases on fresh topics, projected into a fresh keyspace, served.
    let topics = Topics::new("clients_py");
    for f in FILES {
        let path = data.join(f);
        topics.ingest(ImportConfig::new([&path])).await.unwrap();
    }
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    assert_eq!(expected.len(), 2, "ICS and Mobile: {expected:?}");
    let (_control, projector, api) = serve_projected(&topics, "clients_py", &expected)
        .await
        .unwrap();

    // The clients.
    let started = Instant::now();
    let output = python::run(
        "python",
        &[
            "-m",
            "pytest",
            "tests/python",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        &[
            ("TAXIWAY_URL", &api.base),
            ("TAXIWAY_ATTACK_DATA", &data.to_string_lossy()),
        ],
        Duration::from_secs(180),
    )
    .await
    .unwrap();
    let text = output.text;
    let n = passed(&text);
    assert!(
        output.success && n >= MIN_PASSED,
        "pytest {} ({n} passed, at least {MIN_PASSED} expected) against {}:\n{text}",
        output.status,
        api.base
    );
    println!(
        "python clients: {n} passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
}

#[test]
fn pytest_closing_line_is_read() {
    assert_eq!(passed("....\n21 passed in 9.81s\n"), 21);
    assert_eq!(passed("F.\n1 failed, 20 passed in 3.00s"), 20);
    assert_eq!(passed("= 2 failed, 19 passed, 1 warning in 3s ="), 19);
    assert_eq!(passed("1 error in 0.1s"), 0);
}
