//! Taxiway on a secured Cassandra (password authentication, TLS required on the CQL port): the
//! projector projects a shipped release and the api serves it as the files say; a wrong
//! password, an untrusted CA and a plaintext client each stop the projector at start and keep
//! the api not ready, with one line naming the node and the cause, and write nothing.
//!
//! The Cassandra is a private one in `dev/services`' secure mode (`taxiway_tests::engines`);
//! the topic is on the shared, plaintext broker.

use std::time::{Duration, Instant};

use ingest::config::ImportConfig;
use projector::config::Command;
use reqwest::StatusCode;
use service::{ConsistencyLevel, CqlArgs, Secret};

use taxiway_tests::Deadline;
use taxiway_tests::api::{Api, Expected, check_objects};
use taxiway_tests::engines::{Engines, SECURE_CQL_PASSWORD, other_ca};
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

const FILE: &str = "ics-attack-18.1.json.zst";

/// How long a client may take to give up on a node that refuses it: the driver's connect
/// timeout is 5 s; the margin is for the loaded CI box.
const REFUSED_WITHIN: Duration = Duration::from_secs(60);

/// The projector with `cql` must stop with an error naming the node and `cause` on one line
/// (the line its binary prints before exiting 1), within a bounded time; the api must stay up
/// but not ready, `/readyz` answering 503 with that line as its last error.
async fn refused(what: &str, topics: &Topics, cql: CqlArgs, cause: &[&str]) {
    let node = cql.nodes[0].clone();
    let mut settings = projection::settings(topics, &cql.keyspace, Command::Run);
    settings.cql = cql.clone();
    settings.store.consistency = ConsistencyLevel::One;
    let started = Instant::now();
    let running = projection::start_with(settings).unwrap();
    let outcome = tokio::time::timeout(REFUSED_WITHIN, running.task)
        .await
        .unwrap_or_else(|_| panic!("{what}: the projector still runs after {REFUSED_WITHIN:?}"))
        .unwrap();
    let error = outcome.expect_err(what).to_string();
    println!(
        "secure_cql: {what}: projector refused in {:?}: {error}",
        started.elapsed()
    );
    check_message(what, &error, &node, cause);

    let mut config = Api::config(&cql.keyspace);
    config.cql = cql;
    let started = Instant::now();
    let api = Api::start_with(config).await.unwrap();
    let deadline = Deadline::after(REFUSED_WITHIN);
    let readyz = loop {
        let reply = api.get("/readyz").await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            reply.text()
        );
        let body = reply.json();
        if body["last_error"].is_string() {
            break body;
        }
        assert!(!deadline.passed(), "{what}: /readyz names no error: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = readyz["last_error"].as_str().unwrap().to_owned();
    println!(
        "secure_cql: {what}: api not ready after {:?}: {error}",
        started.elapsed()
    );
    check_message(what, &error, &node, cause);
    assert_eq!(readyz["status"], "not ready");
    assert_eq!(readyz["store_reachable"], false);
    api.stop().await.unwrap();
}

fn check_message(what: &str, error: &str, node: &str, cause: &[&str]) {
    assert!(!error.contains('\n'), "{what}: one line: {error}");
    assert!(
        error.contains(node),
        "{what}: names the node {node}: {error}"
    );
    assert!(
        cause.iter().any(|c| error.contains(c)),
        "{what}: says the cause (one of {cause:?}): {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_cassandra_serves_a_release_and_refuses_bad_credentials_certificates_and_plaintext()
 {
    let release = Release::load(FILE).unwrap();
    let engines = Engines::start_secure_cassandra().await.unwrap();
    let topics = Topics::new("secure_cql");
    let path = fixtures::path(FILE);
    assert_eq!(
        topics.ingest(ImportConfig::new([&path])).await.unwrap(),
        ingest::Outcome::Complete
    );
    let control = projection::control_keyspace("secure_cql");
    let good = engines.secure_cql_args(&control);
    let session = good
        .session_builder(ConsistencyLevel::One)
        .unwrap()
        .build()
        .await
        .unwrap();

    // Each refused before anything is written: no control keyspace appears.
    let dir = tempfile::tempdir().unwrap();
    let wrong_password = CqlArgs {
        password: Some(Secret("not-the-password".into())),
        ..good.clone()
    };
    refused(
        "wrong password",
        &topics,
        wrong_password,
        &["Authentication failed"],
    )
    .await;
    let untrusted = CqlArgs {
        tls_ca: Some(other_ca(dir.path()).unwrap()),
        ..good.clone()
    };
    refused(
        "untrusted CA",
        &topics,
        untrusted,
        &["invalid peer certificate: UnknownIssuer"],
    )
    .await;
    let plaintext = CqlArgs {
        tls_ca: None,
        ..good.clone()
    };
    refused(
        "plaintext client",
        &topics,
        plaintext,
        // The node resets a connection that does not start with a TLS handshake.
        &["Connection reset", "Connection broken"],
    )
    .await;
    assert!(
        !projection::keyspace_exists(&session, &control)
            .await
            .unwrap(),
        "a refused client created {control}"
    );

    // The good settings: projected as the file says, and served as the file says. The api
    // reads its password from a file, as from a mounted secret.
    let mut settings = projection::settings(&topics, &control, Command::Run);
    settings.cql = good.clone();
    settings.store.consistency = ConsistencyLevel::One;
    let projector = projection::start_with(settings).unwrap();
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    projection::wait_for_revisions(
        &session,
        &control,
        &expected,
        Deadline::after(Duration::from_secs(300)),
    )
    .await
    .unwrap();
    let active = projection::active(&session, &control)
        .await
        .unwrap()
        .unwrap();
    projection::check_serves(&session, &active.1, std::slice::from_ref(&release))
        .await
        .unwrap();

    let password_file = dir.path().join("cql-password");
    std::fs::write(&password_file, format!("{SECURE_CQL_PASSWORD}\n")).unwrap();
    let mut config = Api::config(&control);
    config.cql = CqlArgs {
        password: None,
        password_file: Some(password_file),
        read_consistency: ConsistencyLevel::One,
        ..good.clone()
    };
    let api = Api::start_with(config).await.unwrap();
    api.wait_for_revisions(&expected, Deadline::after(Duration::from_secs(120)))
        .await
        .unwrap();
    let id = release.collection_id();
    let objects = format!("/api/v21/collections/{id}/objects/");
    let reply = api.get(&objects).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let served = reply.json()["objects"].as_array().unwrap().clone();
    let history = Expected::new(vec![&release]);
    check_objects(&objects, &served, &release.versions(), &history.history()).unwrap();

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
}
