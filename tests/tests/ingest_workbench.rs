//! `ingest workbench` against the Workbench REST API double serving real ATT&CK releases, on the
//! real broker: releases, polling, restarts, faults and authentication.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::Parser;
use schemas::Event;
use taxiway_tests::attack_data::{self, Release, id_of, version_of};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::workbench_double::{Fault, ServiceAccount, WorkbenchConfig, WorkbenchDouble};
use taxiway_tests::{Deadline, kafka_brokers};
use tokio_util::sync::CancellationToken;

const APIKEY: &str = "secret-squirrel";

/// What the Workbench exports for a collection version: the collection object, then every
/// `x_mitre_contents` reference that resolves (the marking definition is not listed, so it is
/// not part of a Workbench release).
fn expected_members(release: &Release) -> BTreeSet<(String, String)> {
    let collection = release.collection().unwrap();
    let present = release.versions();
    let mut members: BTreeSet<(String, String)> = collection["x_mitre_contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["object_ref"].as_str().unwrap().to_owned(),
                c["object_modified"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|key| present.contains(key))
        .collect();
    members.insert((id_of(collection), version_of(collection)));
    members
}

fn releases_on(
    events: &[(taxiway_tests::topic::Record, Event)],
) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut releases: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for (_, e) in events {
        if let Event::Release(r) = e {
            releases
                .entry(format!("{} {}", r.collection_id, r.label))
                .or_default()
                .extend(
                    r.members
                        .iter()
                        .map(|m| (m.object_id.clone(), m.version.clone())),
                );
        }
    }
    releases
}

fn version_keys(events: &[(taxiway_tests::topic::Record, Event)]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ObjectVersion(v) => Some((v.object_id.clone(), v.version.clone())),
            _ => None,
        })
        .collect()
}

async fn double_with(files: &[&str], config: WorkbenchConfig) -> WorkbenchDouble {
    let double = WorkbenchDouble::start(config).await.unwrap();
    for file in files {
        double
            .add_collection_version_from_bundle(attack_data::path(file))
            .unwrap();
    }
    double
}

async fn sync_once(
    topics: &Topics,
    double: &WorkbenchDouble,
    extra: &[&str],
) -> anyhow::Result<ingest::Outcome> {
    let mut args = vec![
        "workbench",
        "--url",
        double.base_url(),
        "--apikey",
        APIKEY,
        "--once",
    ];
    args.extend_from_slice(extra);
    topics.ingest(&args).await
}

#[tokio::test]
async fn each_collection_version_becomes_a_release_and_a_new_version_adds_only_what_is_new() {
    let double = double_with(
        &[
            "ics-attack-17.1.json.zst",
            "ics-attack-18.1.json.zst",
            "mobile-attack-17.0.json.zst",
        ],
        WorkbenchConfig::default(),
    )
    .await;
    let topics = Topics::new("wb_sync");
    assert_eq!(
        sync_once(&topics, &double, &[]).await.unwrap(),
        ingest::Outcome::Complete
    );

    let ics171 = Release::load("ics-attack-17.1.json.zst").unwrap();
    let ics180 = Release::load("ics-attack-18.0.json.zst").unwrap();
    let ics181 = Release::load("ics-attack-18.1.json.zst").unwrap();
    let mobile = Release::load("mobile-attack-17.0.json.zst").unwrap();
    let events = topics.events().await.unwrap();
    let expected: BTreeMap<String, BTreeSet<(String, String)>> = [&ics171, &ics181, &mobile]
        .iter()
        .map(|r| {
            let c = r.collection().unwrap();
            (
                format!(
                    "{} {}",
                    r.collection_id(),
                    c["x_mitre_version"].as_str().unwrap()
                ),
                expected_members(r),
            )
        })
        .collect();
    assert_eq!(releases_on(&events), expected);
    let published: BTreeSet<(String, String)> = version_keys(&events).into_iter().collect();
    let all_members: BTreeSet<(String, String)> = expected.values().flatten().cloned().collect();
    assert_eq!(published, all_members);

    // A mirror must not leave traces in the Workbench: every export asked previewOnly=true.
    let bundles: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|r| r.route() == "/api/collection-bundles")
        .collect();
    assert_eq!(bundles.len(), 3);
    assert!(
        bundles
            .iter()
            .all(|r| r.query_param("previewOnly").as_deref() == Some("true"))
    );
    for r in [&ics171, &ics181, &mobile] {
        let c = r.collection().unwrap();
        assert!(
            double
                .exports_of(&r.collection_id(), c["modified"].as_str().unwrap())
                .is_empty()
        );
    }

    // A new collection version appears between polls: exactly its new versions and one release.
    let before = topics.object_records().await.unwrap().len();
    double
        .add_collection_version_from_bundle(attack_data::path("ics-attack-18.0.json.zst"))
        .unwrap();
    assert_eq!(
        sync_once(&topics, &double, &[]).await.unwrap(),
        ingest::Outcome::Complete
    );
    let events = topics.events().await.unwrap();
    let new_keys: Vec<(String, String)> = version_keys(&events)
        .into_iter()
        .filter(|k| !published.contains(k))
        .collect();
    let expected_new: BTreeSet<(String, String)> = expected_members(&ics180)
        .difference(&all_members)
        .cloned()
        .collect();
    assert_eq!(
        new_keys.iter().cloned().collect::<BTreeSet<_>>(),
        expected_new
    );
    assert_eq!(new_keys.len(), expected_new.len(), "each new version once");
    let releases = releases_on(&events);
    assert_eq!(releases.len(), 4);
    assert_eq!(
        releases[&format!("{} 18.0", ics180.collection_id())],
        expected_members(&ics180)
    );
    let after_new_version = topics.object_records().await.unwrap().len();
    assert!(after_new_version > before);

    // A restart (a new run rebuilding its checkpoint from the topic) republishes nothing.
    assert_eq!(
        sync_once(&topics, &double, &[]).await.unwrap(),
        ingest::Outcome::Complete
    );
    assert_eq!(
        topics.object_records().await.unwrap().len(),
        after_new_version
    );

    // An empty collections answer deletes nothing and publishes nothing.
    double.set_fault(Fault::EmptyCollectionList);
    assert_eq!(
        sync_once(&topics, &double, &[]).await.unwrap(),
        ingest::Outcome::Complete
    );
    assert_eq!(
        topics.object_records().await.unwrap().len(),
        after_new_version
    );
}

#[tokio::test]
async fn a_failing_bundle_skips_only_that_version_and_is_mirrored_once_it_recovers() {
    let double = double_with(
        &["ics-attack-18.1.json.zst", "mobile-attack-17.1.json.zst"],
        WorkbenchConfig::default(),
    )
    .await;
    let ics = Release::load("ics-attack-18.1.json.zst").unwrap();
    let mobile = Release::load("mobile-attack-17.1.json.zst").unwrap();
    double.set_fault(Fault::BundleServerError {
        collection_id: ics.collection_id(),
    });
    let topics = Topics::new("wb_fault");
    assert_eq!(
        sync_once(&topics, &double, &[]).await.unwrap(),
        ingest::Outcome::InputsFailed,
        "a --once sync that could not mirror everything says so"
    );
    let labels: Vec<String> = releases_on(&topics.events().await.unwrap())
        .into_keys()
        .collect();
    assert_eq!(labels, [format!("{} 17.1", mobile.collection_id())]);

    double.clear_faults();
    assert_eq!(
        sync_once(&topics, &double, &[]).await.unwrap(),
        ingest::Outcome::Complete
    );
    let releases = releases_on(&topics.events().await.unwrap());
    assert_eq!(
        releases[&format!("{} 18.1", ics.collection_id())],
        expected_members(&ics)
    );
}

#[tokio::test]
async fn challenge_apikey_authentication_is_used_and_a_wrong_key_is_a_clear_error() {
    let double = double_with(
        &["ics-attack-18.1.json.zst"],
        WorkbenchConfig::challenge(vec![ServiceAccount::taxii_server()]),
    )
    .await;
    let topics = Topics::new("wb_challenge");
    let err = topics
        .ingest(&[
            "workbench",
            "--url",
            double.base_url(),
            "--auth",
            "challenge",
            "--apikey",
            "wrong",
            "--once",
        ])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("apikey-token") && err.contains("400"), "{err}");

    assert_eq!(
        sync_once(&topics, &double, &["--auth", "challenge"])
            .await
            .unwrap(),
        ingest::Outcome::Complete
    );
    let ics = Release::load("ics-attack-18.1.json.zst").unwrap();
    let releases = releases_on(&topics.events().await.unwrap());
    assert_eq!(
        releases[&format!("{} 18.1", ics.collection_id())],
        expected_members(&ics)
    );
    let schemes: BTreeSet<Option<String>> = double
        .requests()
        .into_iter()
        .filter(|r| r.route().starts_with("/api/collection"))
        .map(|r| r.authorization_scheme)
        .collect();
    assert_eq!(schemes, [Some("Bearer".to_owned())].into_iter().collect());
}

#[tokio::test]
async fn polling_publishes_a_new_collection_version_within_seconds() {
    let double = double_with(&["ics-attack-18.0.json.zst"], WorkbenchConfig::default()).await;
    let topics = Topics::new("wb_poll");
    let brokers = kafka_brokers();
    let cli = ingest::config::Cli::try_parse_from([
        "ingest",
        "--brokers",
        &brokers,
        "--objects-topic",
        &topics.objects,
        "--dead-letter-topic",
        &topics.dead_letter,
        "workbench",
        "--url",
        double.base_url(),
        "--apikey",
        APIKEY,
        "--poll-interval",
        "200ms",
    ])
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(ingest::run(
        cli,
        ingest::metrics::Metrics::new().unwrap(),
        shutdown.clone(),
    ));

    let has_release = |events: &[(taxiway_tests::topic::Record, Event)], label: &str| {
        events
            .iter()
            .any(|(_, e)| matches!(e, Event::Release(r) if r.label == label))
    };
    let deadline = Deadline::after(Duration::from_secs(60));
    while !has_release(&topics.events().await.unwrap(), "18.0") {
        assert!(!deadline.passed(), "first sync did not publish 18.0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let added = std::time::Instant::now();
    double
        .add_collection_version_from_bundle(attack_data::path("ics-attack-18.1.json.zst"))
        .unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    while !has_release(&topics.events().await.unwrap(), "18.1") {
        assert!(!deadline.passed(), "the poll did not publish 18.1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "new collection version published {:?} after it appeared",
        added.elapsed()
    );
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("ingest stops on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, ingest::Outcome::Complete);
    let latest_polls = double
        .requests()
        .iter()
        .filter(|r| {
            r.route() == "/api/collections"
                && r.query_param("versions").as_deref() == Some("latest")
        })
        .count();
    assert!(
        latest_polls >= 1,
        "the cheap latest-only list is what polls use"
    );
}
