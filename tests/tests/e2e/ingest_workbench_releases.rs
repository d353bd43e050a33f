//! `ingest workbench` against the Workbench REST API double serving real ATT&CK releases, on the
//! real broker: collection versions as releases, polling, restarts, faults and authentication.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ingest::config::{AuthMode, Secret, WorkbenchConfig as MirrorConfig};
use schemas::Event;
use taxiway_tests::Deadline;
use taxiway_tests::fixtures::{self, Release, id_of, version_of};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::workbench_double::{Fault, ServiceAccount, WorkbenchConfig, WorkbenchDouble};
use tokio_util::sync::CancellationToken;

const APIKEY: &str = "secret-squirrel";

/// What the Workbench exports for a collection version: the collection object, then every
/// `x_mitre_contents` reference that resolves (the marking definition is not listed, so it is
/// not part of a Workbench release).
pub(crate) fn expected_members(release: &Release) -> BTreeSet<(String, String)> {
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

pub(crate) fn releases_on(
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

pub(crate) fn version_keys(
    events: &[(taxiway_tests::topic::Record, Event)],
) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ObjectVersion(v) => Some((v.object_id.clone(), v.version.clone())),
            _ => None,
        })
        .collect()
}

/// The events so far, for wait loops: a topic ingest has only just created can answer a
/// metadata request with a transient error (`NotLeaderForPartition`), which reads as "not yet".
pub(crate) async fn events_so_far(topics: &Topics) -> Vec<(taxiway_tests::topic::Record, Event)> {
    topics.events().await.unwrap_or_default()
}

pub(crate) async fn double_with(files: &[&str], config: WorkbenchConfig) -> WorkbenchDouble {
    let double = WorkbenchDouble::start(config).await.unwrap();
    for file in files {
        double
            .add_collection_version_from_bundle(fixtures::path(file))
            .unwrap();
    }
    double
}

/// A double serving ICS 18.1 and Mobile 17.1, and those two releases.
pub(crate) async fn ics_and_mobile() -> (WorkbenchDouble, Release, Release) {
    let ics = "ics-attack-18.1.json.zst";
    let mobile = "mobile-attack-17.1.json.zst";
    let double = double_with(&[ics, mobile], WorkbenchConfig::default()).await;
    (
        double,
        Release::load(ics).unwrap(),
        Release::load(mobile).unwrap(),
    )
}

/// `ingest workbench` against the double with its apikey, other settings at their defaults
/// (`MirrorConfig` is ingest's; `WorkbenchConfig` the double's).
pub(crate) fn mirror_of(double: &WorkbenchDouble) -> MirrorConfig {
    MirrorConfig {
        apikey: Some(Secret(APIKEY.to_owned())),
        ..MirrorConfig::new(double.base_url())
    }
}

/// Runs `config` as `ingest workbench --once`.
pub(crate) async fn sync_once(
    topics: &Topics,
    config: MirrorConfig,
) -> anyhow::Result<ingest::Outcome> {
    topics
        .ingest(MirrorConfig {
            once: true,
            ..config
        })
        .await
}

/// A running `ingest workbench`.
pub(crate) type MirrorRun = tokio::task::JoinHandle<Result<ingest::Summary, ingest::Error>>;

/// `ingest workbench` with `config`, running until the returned token is cancelled.
pub(crate) fn start_mirror(
    topics: &Topics,
    config: MirrorConfig,
) -> (CancellationToken, MirrorRun) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(ingest::run(topics.settings(config), shutdown.clone()));
    (shutdown, running)
}

/// Stops a [`start_mirror`] run and checks that it ends cleanly.
pub(crate) async fn stop_mirror(shutdown: CancellationToken, running: MirrorRun) {
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("ingest stops on shutdown")
        .unwrap()
        .unwrap()
        .outcome();
    assert_eq!(outcome, ingest::Outcome::Complete);
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
        sync_once(&topics, mirror_of(&double)).await.unwrap(),
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
        .add_collection_version_from_bundle(fixtures::path("ics-attack-18.0.json.zst"))
        .unwrap();
    assert_eq!(
        sync_once(&topics, mirror_of(&double)).await.unwrap(),
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
        sync_once(&topics, mirror_of(&double)).await.unwrap(),
        ingest::Outcome::Complete
    );
    assert_eq!(
        topics.object_records().await.unwrap().len(),
        after_new_version
    );

    // An empty collections answer deletes nothing and publishes nothing.
    double.set_fault(Fault::EmptyCollectionList);
    assert_eq!(
        sync_once(&topics, mirror_of(&double)).await.unwrap(),
        ingest::Outcome::Complete
    );
    assert_eq!(
        topics.object_records().await.unwrap().len(),
        after_new_version
    );
}

#[tokio::test]
async fn a_failing_bundle_skips_only_that_version_and_is_mirrored_once_it_recovers() {
    let (double, ics, mobile) = ics_and_mobile().await;
    double.set_fault(Fault::BundleServerError {
        collection_id: ics.collection_id(),
    });
    let topics = Topics::new("wb_fault");
    assert_eq!(
        sync_once(&topics, mirror_of(&double)).await.unwrap(),
        ingest::Outcome::InputsFailed,
        "a --once sync that could not mirror everything says so"
    );
    let labels: Vec<String> = releases_on(&topics.events().await.unwrap())
        .into_keys()
        .collect();
    assert_eq!(labels, [format!("{} 17.1", mobile.collection_id())]);

    double.clear_faults();
    assert_eq!(
        sync_once(&topics, mirror_of(&double)).await.unwrap(),
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
        .ingest(MirrorConfig {
            auth: AuthMode::Challenge,
            apikey: Some(Secret("wrong".to_owned())),
            once: true,
            ..MirrorConfig::new(double.base_url())
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("apikey-token") && err.contains("400"), "{err}");

    assert_eq!(
        sync_once(
            &topics,
            MirrorConfig {
                auth: AuthMode::Challenge,
                ..mirror_of(&double)
            },
        )
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
    let (shutdown, running) = start_mirror(
        &topics,
        MirrorConfig {
            poll_interval: Duration::from_millis(200),
            ..mirror_of(&double)
        },
    );

    let has_release = |events: &[(taxiway_tests::topic::Record, Event)], label: &str| {
        events
            .iter()
            .any(|(_, e)| matches!(e, Event::Release(r) if r.label == label))
    };
    let deadline = Deadline::after(Duration::from_secs(60));
    while !has_release(&events_so_far(&topics).await, "18.0") {
        assert!(!deadline.passed(), "first sync did not publish 18.0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let added = std::time::Instant::now();
    double
        .add_collection_version_from_bundle(fixtures::path("ics-attack-18.1.json.zst"))
        .unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    while !has_release(&events_so_far(&topics).await, "18.1") {
        assert!(!deadline.passed(), "the poll did not publish 18.1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "new collection version published {:?} after it appeared",
        added.elapsed()
    );
    stop_mirror(shutdown, running).await;
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
