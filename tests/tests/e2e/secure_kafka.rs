//! Ingest over a SASL_SSL (SCRAM-SHA-512) listener publishes what a plaintext run publishes, and
//! what the file defines; a wrong password, a CA that did not sign the broker's certificate and
//! a plaintext client on the TLS port each end the run at once, long before its Kafka timeout,
//! with one line naming the broker and the cause; none writes anything.
//!
//! The broker is a private one in `dev/services`' secure mode (`taxiway_tests::engines`): it
//! listens on PLAINTEXT too, which the test uses to read the topics and as the comparison run.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ingest::config::ImportConfig;
use schemas::Event;
use service::{KafkaSaslMechanism, KafkaSecurityProtocol, Secret};
use taxiway_tests::engines::{Engines, KAFKA_SCRAM_PASSWORD, KAFKA_SCRAM_USER, other_ca};
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::topic::read_all;
use tokio_util::sync::CancellationToken;

const FILE: &str = "ics-attack-17.1.json.zst";

/// Generous bound on a refused run: the refusal itself comes within a second or two, the
/// Kafka timeout of these runs is far longer, so a run that waits for it fails this bound.
const REFUSAL_BOUND: Duration = Duration::from_secs(40);
const REFUSED_RUN_KAFKA_TIMEOUT: Duration = Duration::from_secs(90);

fn import_settings(topics: &Topics, brokers: &str) -> ingest::Settings {
    let mut settings = topics.settings(ImportConfig::new(vec![fixtures::path(FILE)]));
    settings.kafka.brokers = brokers.to_owned();
    settings
}

fn secure_settings(
    topics: &Topics,
    engines: &Engines,
    password: &str,
    ca: &Path,
) -> ingest::Settings {
    let mut settings = import_settings(topics, &engines.kafka_secure_brokers().unwrap());
    settings.kafka.security_protocol = KafkaSecurityProtocol::SaslSsl;
    settings.kafka.sasl_mechanism = Some(KafkaSaslMechanism::ScramSha512);
    settings.kafka.sasl_username = Some(KAFKA_SCRAM_USER.to_owned());
    settings.kafka.sasl_password = Some(Secret(password.to_owned()));
    settings.kafka.ssl_ca = Some(ca.to_owned());
    settings
}

/// The topic's events, decoded, in a form that does not depend on the run (its id, the time
/// of publishing).
async fn events_of(brokers: &str, topic: &str) -> Vec<String> {
    let mut out: Vec<String> = read_all(brokers, topic)
        .await
        .unwrap()
        .iter()
        .map(|r| match schemas::decode_event(&r.payload).unwrap() {
            Event::Collection(c) => format!(
                "{} collection {} {:?}",
                r.partition, c.collection_id, c.title
            ),
            Event::ObjectVersion(v) => format!(
                "{} version {} {} {} {}",
                r.partition, v.collection_id, v.object_id, v.version, v.object_json
            ),
            Event::Release(e) => format!(
                "{} release {} {} chunk {}/{} members {:?}",
                r.partition,
                e.collection_id,
                e.label,
                e.chunk_index,
                e.chunk_count,
                e.members
                    .iter()
                    .map(|m| (&m.object_id, &m.version))
                    .collect::<Vec<_>>()
            ),
        })
        .collect();
    out.sort();
    out
}

/// (object id, version) of every object version event on the topic.
async fn versions_on(brokers: &str, topic: &str) -> BTreeSet<(String, String)> {
    read_all(brokers, topic)
        .await
        .unwrap()
        .iter()
        .filter_map(|r| match schemas::decode_event(&r.payload).unwrap() {
            Event::ObjectVersion(v) => Some((v.object_id, v.version)),
            _ => None,
        })
        .collect()
}

/// Runs a refused import and returns its error, checking the bound, the one line, and that
/// it names the broker and, in one of `causes`, why.
async fn refused(settings: ingest::Settings, causes: &[&str]) -> String {
    let brokers = settings.kafka.brokers.clone();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        REFUSAL_BOUND,
        ingest::run(settings, CancellationToken::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("a refused import still ran after {REFUSAL_BOUND:?}"));
    let Err(error) = outcome else {
        panic!("a refused import succeeded");
    };
    let message = error.to_string();
    println!("refused after {:?}: {message}", started.elapsed());
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains(&brokers), "names the broker: {message}");
    let lower = message.to_lowercase();
    assert!(
        causes.iter().any(|c| lower.contains(&c.to_lowercase())),
        "names the cause ({causes:?}): {message}"
    );
    assert!(
        !message.contains(KAFKA_SCRAM_PASSWORD) && !message.contains("wrong-password"),
        "no password in: {message}"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_sasl_ssl_publishes_what_plaintext_does_and_refusals_name_their_cause() {
    let engines = Engines::start_secure_kafka().await.unwrap();
    let plain = engines.kafka_brokers();
    let ca = engines.kafka_ca_file();
    let release = Release::load(FILE).unwrap();

    // Refusals first, each on topics of its own that must stay absent.
    let wrong_password = Topics::new("secure-wrong-password");
    let mut settings = secure_settings(&wrong_password, &engines, "wrong-password", &ca);
    settings.kafka.timeout = REFUSED_RUN_KAFKA_TIMEOUT;
    refused(settings, &["authentication"]).await;
    let untrusted = Topics::new("secure-untrusted-ca");
    let dir = tempfile::tempdir().unwrap();
    let other_ca = other_ca(dir.path()).unwrap();
    let mut settings = secure_settings(&untrusted, &engines, KAFKA_SCRAM_PASSWORD, &other_ca);
    settings.kafka.timeout = REFUSED_RUN_KAFKA_TIMEOUT;
    refused(settings, &["certificate verify failed"]).await;
    let plaintext_on_tls = Topics::new("secure-plaintext-client");
    let mut settings = import_settings(&plaintext_on_tls, &engines.kafka_secure_brokers().unwrap());
    settings.kafka.timeout = REFUSED_RUN_KAFKA_TIMEOUT;
    refused(settings, &["is a TLS listener"]).await;
    for topics in [&wrong_password, &untrusted, &plaintext_on_tls] {
        for topic in [&topics.objects, &topics.dead_letter] {
            let records = read_all(&plain, topic).await.unwrap();
            assert!(records.is_empty(), "{topic}: {} records", records.len());
        }
    }

    // The same file over SASL_SSL and over PLAINTEXT, on topics of their own.
    let secure = Topics::new("secure-import");
    let outcome = ingest::run(
        secure_settings(&secure, &engines, KAFKA_SCRAM_PASSWORD, &ca),
        CancellationToken::new(),
    )
    .await
    .unwrap()
    .outcome();
    println!("over SASL_SSL: {outcome:?}");
    let plaintext = Topics::new("plain-import");
    ingest::run(
        import_settings(&plaintext, &plain),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(
        versions_on(&plain, &secure.objects).await,
        release.versions()
    );
    let over_tls = events_of(&plain, &secure.objects).await;
    assert_eq!(over_tls, events_of(&plain, &plaintext.objects).await);
    assert!(over_tls.iter().any(|e| e.contains(" release ")));
}
