//! The whole pipeline on secured engines: ingest publishes over SASL_SSL (SCRAM-SHA-512), the
//! projector reads over SASL_SSL and writes over authenticated TLS CQL, the api reads over
//! authenticated TLS CQL; every TAXII response is byte for byte what a plaintext pipeline over
//! the same topic serves, and the objects are the files'. The projector with a wrong Kafka
//! password ends at once with one line naming the broker and the cause, and writes nothing.
//!
//! The engines are a private Kafka and Cassandra in `dev/services`' secure modes
//! (`taxiway_tests::engines`), as the `secure_kafka` and `secure_cql` suites start them; the
//! plaintext run reads the same broker's PLAINTEXT listener and writes to the shared Cassandra.

use std::time::{Duration, Instant};

use ingest::config::ImportConfig;
use projector::config::Command;
use reqwest::StatusCode;
use scylla::client::session::Session;
use serde_json::Value;
use service::{ConsistencyLevel, KafkaArgs, KafkaSaslMechanism, KafkaSecurityProtocol, Secret};
use tokio_util::sync::CancellationToken;

use taxiway_tests::Deadline;
use taxiway_tests::api::{Api, Expected, Reply, TAXII, check_objects};
use taxiway_tests::engines::{Engines, KAFKA_SCRAM_PASSWORD, KAFKA_SCRAM_USER};
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

/// Two releases of one collection: the pinned roots and the history root have something to
/// tell apart.
const FILES: [&str; 2] = ["ics-attack-17.1.json.zst", "ics-attack-18.1.json.zst"];

/// Generous bound on the refused projector: the refusal comes within a second or two, its
/// Kafka timeout is far longer, so a projector that waits for it fails this bound.
const REFUSAL_BOUND: Duration = Duration::from_secs(40);
const REFUSED_KAFKA_TIMEOUT: Duration = Duration::from_secs(90);

/// How many objects of the collection are also fetched alone and with their versions.
const SINGLE_OBJECTS: usize = 5;

/// Kafka settings as an operator gives them for the secure listener.
fn secure_kafka(engines: &Engines, topics: &Topics, password: &str) -> KafkaArgs {
    KafkaArgs {
        brokers: engines.kafka_secure_brokers().unwrap(),
        objects_topic: topics.objects.clone(),
        dead_letter_topic: topics.dead_letter.clone(),
        security_protocol: KafkaSecurityProtocol::SaslSsl,
        sasl_mechanism: Some(KafkaSaslMechanism::ScramSha512),
        sasl_username: Some(KAFKA_SCRAM_USER.to_owned()),
        sasl_password: Some(Secret(password.to_owned())),
        ssl_ca: Some(engines.kafka_ca_file()),
        ..KafkaArgs::default()
    }
}

/// The projector with a wrong Kafka password: refused within the bound with one line naming
/// the broker and the cause (the line its binary prints before exiting 1), no password in
/// it, and no keyspace of its control name created.
async fn wrong_kafka_password_is_refused(engines: &Engines, topics: &Topics, session: &Session) {
    let control = projection::control_keyspace("secure_pipeline_refused");
    let mut settings = projection::settings(topics, &control, Command::Run);
    settings.kafka = secure_kafka(engines, topics, "wrong-password");
    settings.kafka.timeout = REFUSED_KAFKA_TIMEOUT;
    settings.cql = engines.secure_cql_args(&control);
    let started = Instant::now();
    let running = projection::start_with(settings).unwrap();
    let outcome = tokio::time::timeout(REFUSAL_BOUND, running.task)
        .await
        .unwrap_or_else(|_| panic!("the projector still runs after {REFUSAL_BOUND:?}"))
        .unwrap();
    let error = outcome
        .expect_err("a wrong Kafka password is refused")
        .to_string();
    println!(
        "secure_pipeline: wrong Kafka password refused in {:?}: {error}",
        started.elapsed()
    );
    let broker = engines.kafka_secure_brokers().unwrap();
    assert!(!error.contains('\n'), "one line: {error}");
    assert!(
        error.contains(&broker),
        "names the broker {broker}: {error}"
    );
    assert!(
        error.to_lowercase().contains("authentication"),
        "says the cause: {error}"
    );
    assert!(
        !error.contains("wrong-password") && !error.contains(KAFKA_SCRAM_PASSWORD),
        "no password in: {error}"
    );
    assert!(
        !projection::keyspace_exists(session, &control)
            .await
            .unwrap(),
        "the refused projector created {control}"
    );
}

/// The paths a TAXII client reads, found by walking the api as a client would: discovery,
/// every root and its collections, each collection's objects and manifest, and a few objects
/// alone and with their versions.
async fn paths_of(api: &Api) -> Vec<String> {
    let mut paths = vec!["/taxii2/".to_owned()];
    let discovery = api.get("/taxii2/").await.unwrap().json();
    let roots: Vec<String> = discovery["api_roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    for root in roots {
        paths.push(root.clone());
        let listing = format!("{root}collections/");
        paths.push(listing.clone());
        let collections = api.get(&listing).await.unwrap().json();
        for collection in collections["collections"].as_array().unwrap() {
            let id = collection["id"].as_str().unwrap();
            let base = format!("{root}collections/{id}/");
            paths.push(base.clone());
            paths.push(format!("{base}manifest/"));
            let objects = format!("{base}objects/");
            paths.push(objects.clone());
            let served = api.get(&objects).await.unwrap().json();
            for object in served["objects"]
                .as_array()
                .unwrap()
                .iter()
                .take(SINGLE_OBJECTS)
            {
                let object_id = object["id"].as_str().unwrap();
                paths.push(format!("{objects}{object_id}/"));
                paths.push(format!("{objects}{object_id}/versions/"));
            }
        }
    }
    paths
}

/// What of a reply a client depends on: status, media type, the date_added headers, the body.
fn served(reply: &Reply) -> (StatusCode, Option<&str>, Option<&str>, Option<&str>, &[u8]) {
    (
        reply.status,
        reply.header("content-type"),
        reply.header("x-taxii-date-added-first"),
        reply.header("x-taxii-date-added-last"),
        &reply.body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_over_sasl_ssl_and_tls_cql_serves_what_plaintext_serves() {
    let releases: Vec<Release> = FILES.iter().map(|f| Release::load(f).unwrap()).collect();
    let engines = Engines::start_secure().await.unwrap();
    let topics = Topics::new("secure_pipeline");

    // Import over SASL_SSL.
    for file in FILES {
        let mut settings = topics.settings(ImportConfig::new([fixtures::path(file)]));
        settings.kafka = secure_kafka(&engines, &topics, KAFKA_SCRAM_PASSWORD);
        let summary = ingest::run(settings, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(summary.outcome(), ingest::Outcome::Complete, "{file}");
    }
    let plain_brokers = engines.kafka_brokers();
    let events: Vec<schemas::Event> =
        taxiway_tests::topic::read_all(&plain_brokers, &topics.objects)
            .await
            .unwrap()
            .iter()
            .map(|r| schemas::decode_event(&r.payload).unwrap())
            .collect();
    let expected = projection::final_revisions(&events);

    let secure_control = projection::control_keyspace("secure_pipeline");
    let secure_session = engines
        .secure_cql_args(&secure_control)
        .session_builder(ConsistencyLevel::One)
        .unwrap()
        .build()
        .await
        .unwrap();
    wrong_kafka_password_is_refused(&engines, &topics, &secure_session).await;

    // The secured pipeline: SASL_SSL Kafka, authenticated TLS CQL.
    let mut settings = projection::settings(&topics, &secure_control, Command::Run);
    settings.kafka = secure_kafka(&engines, &topics, KAFKA_SCRAM_PASSWORD);
    settings.cql = engines.secure_cql_args(&secure_control);
    let secure_projector = projection::start_with(settings).unwrap();
    projection::wait_for_revisions(
        &secure_session,
        &secure_control,
        &expected,
        Deadline::after(Duration::from_secs(300)),
    )
    .await
    .unwrap();
    let mut config = Api::config(&secure_control);
    config.cql = engines.secure_cql_args(&secure_control);
    let secure_api = Api::start_with(config).await.unwrap();
    secure_api
        .wait_for_revisions(&expected, Deadline::after(Duration::from_secs(120)))
        .await
        .unwrap();

    // The plaintext pipeline over the same topic: the broker's PLAINTEXT listener, the
    // shared Cassandra without credentials.
    let plain_control = projection::control_keyspace("plain_pipeline");
    let mut settings = projection::settings(&topics, &plain_control, Command::Run);
    settings.kafka.brokers = plain_brokers.clone();
    let plain_projector = projection::start_with(settings).unwrap();
    let plain_session = projection::session().await.unwrap();
    projection::wait_for_revisions(
        &plain_session,
        &plain_control,
        &expected,
        Deadline::after(Duration::from_secs(300)),
    )
    .await
    .unwrap();
    let plain_api = Api::start(&plain_control).await.unwrap();
    plain_api
        .wait_for_revisions(&expected, Deadline::after(Duration::from_secs(120)))
        .await
        .unwrap();

    // What the secured pipeline serves is the files' content.
    let latest = &releases[FILES.len() - 1];
    let history = Expected::new(releases.iter().collect());
    let objects = format!("/api/v21/collections/{}/objects/", latest.collection_id());
    let reply = secure_api.get(&objects).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let json: Value = reply.json();
    check_objects(
        &objects,
        json["objects"].as_array().unwrap(),
        &latest.versions(),
        &history.history(),
    )
    .unwrap();

    // And byte for byte what the plaintext pipeline serves, on every path a client reads.
    let paths = paths_of(&secure_api).await;
    assert_eq!(
        paths,
        paths_of(&plain_api).await,
        "the same roots and collections"
    );
    let mut roots = vec!["/api/v21/".to_owned(), "/api/v21/history/".to_owned()];
    for release in &releases {
        let label = release.collection().unwrap()["x_mitre_version"]
            .as_str()
            .unwrap()
            .to_owned();
        roots.push(format!("/api/v21/attack-{label}/"));
    }
    for root in &roots {
        assert!(paths.contains(root), "{root} is among {paths:?}");
    }
    for path in &paths {
        let secure = secure_api.get(path).await.unwrap();
        let plain = plain_api.get(path).await.unwrap();
        assert_eq!(secure.status, StatusCode::OK, "{path}: {}", secure.text());
        assert_eq!(secure.header("content-type"), Some(TAXII), "{path}");
        assert!(
            served(&secure) == served(&plain),
            "{path}: the secured pipeline serves {} {:?}, the plaintext one {} {:?}",
            secure.status,
            secure.text().chars().take(300).collect::<String>(),
            plain.status,
            plain.text().chars().take(300).collect::<String>(),
        );
    }
    println!(
        "secure_pipeline: {} paths served identically over {} events",
        paths.len(),
        events.len()
    );
    assert_eq!(secure_projector.dead_lettered(), 0);

    secure_api.stop().await.unwrap();
    plain_api.stop().await.unwrap();
    secure_projector.stop().await.unwrap();
    plain_projector.stop().await.unwrap();
    projection::drop_keyspaces(&plain_session, &plain_control)
        .await
        .unwrap();
    drop(engines);
}
