//! `ingest workbench` against the Workbench REST API double serving real ATT&CK releases, on the
//! real broker: releases, polling, restarts, faults and authentication.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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

/// The events so far, for wait loops: a topic ingest has only just created can answer a
/// metadata request with a transient error (`NotLeaderForPartition`), which reads as "not yet".
async fn events_so_far(topics: &Topics) -> Vec<(taxiway_tests::topic::Record, Event)> {
    topics.events().await.unwrap_or_default()
}

async fn double_with(files: &[&str], config: WorkbenchConfig) -> WorkbenchDouble {
    let double = WorkbenchDouble::start(config).await.unwrap();
    for file in files {
        double
            .add_collection_version_from_bundle(fixtures::path(file))
            .unwrap();
    }
    double
}

/// A double serving ICS 18.1 and Mobile 17.1, and those two releases.
async fn ics_and_mobile() -> (WorkbenchDouble, Release, Release) {
    let ics = "ics-attack-18.1.json.zst";
    let mobile = "mobile-attack-17.1.json.zst";
    let double = double_with(&[ics, mobile], WorkbenchConfig::default()).await;
    (
        double,
        Release::load(ics).unwrap(),
        Release::load(mobile).unwrap(),
    )
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

/// A running `ingest workbench`.
type MirrorRun = tokio::task::JoinHandle<Result<ingest::Summary, ingest::Error>>;

/// `ingest workbench` against the double, running until the returned token is cancelled.
fn start_mirror(
    topics: &Topics,
    double: &WorkbenchDouble,
    extra: &[&str],
) -> (CancellationToken, MirrorRun) {
    let mut args = vec!["workbench", "--url", double.base_url(), "--apikey", APIKEY];
    args.extend_from_slice(extra);
    let cli = topics.cli(&args).unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(ingest::run(cli, shutdown.clone()));
    (shutdown, running)
}

/// Stops a [`start_mirror`] run and checks that it ends cleanly.
async fn stop_mirror(shutdown: CancellationToken, running: MirrorRun) {
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("ingest stops on shutdown")
        .unwrap()
        .unwrap()
        .outcome();
    assert_eq!(outcome, ingest::Outcome::Complete);
}

/// [`start_mirror`] polling every 100 ms, with `--include-unreleased` scanning every `interval`.
fn start_unreleased_mirror(
    topics: &Topics,
    double: &WorkbenchDouble,
    interval: &str,
) -> (CancellationToken, MirrorRun) {
    start_mirror(
        topics,
        double,
        &[
            "--poll-interval",
            "100ms",
            "--include-unreleased",
            "--unreleased-poll-interval",
            interval,
        ],
    )
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
        .add_collection_version_from_bundle(fixtures::path("ics-attack-18.0.json.zst"))
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
    let (double, ics, mobile) = ics_and_mobile().await;
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
    let (shutdown, running) = start_mirror(&topics, &double, &["--poll-interval", "200ms"]);

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

/// The collections whose release files hold object `id`: where an edit of it belongs.
fn collections_holding(releases: &[&Release], id: &str) -> BTreeSet<String> {
    releases
        .iter()
        .filter(|r| r.objects.iter().any(|o| id_of(o) == id))
        .map(|r| r.collection_id())
        .collect()
}

/// (collection, object, version) of every object version event.
fn collection_version_keys(
    events: &[(taxiway_tests::topic::Record, Event)],
) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ObjectVersion(v) => Some((
                v.collection_id.clone(),
                v.object_id.clone(),
                v.version.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// The events not among the first `before` records (compared by partition and offset: a
/// topic reads partition by partition, so new records are not all at the end).
fn added_since<'a>(
    before: &[taxiway_tests::topic::Record],
    events: &'a [(taxiway_tests::topic::Record, Event)],
) -> Vec<&'a Event> {
    let old: BTreeSet<(i32, i64)> = before.iter().map(|r| (r.partition, r.offset)).collect();
    events
        .iter()
        .filter(|(r, _)| !old.contains(&(r.partition, r.offset)))
        .map(|(_, e)| e)
        .collect()
}

/// Edits object `id` in the double: a new version with a later `modified`, as the Workbench
/// frontend saves it (no `workspace.collections`). Returns its `modified`.
fn edit(double: &WorkbenchDouble, id: &str, description: &str) -> String {
    let description = description.to_owned();
    double
        .edit_object(id, move |stix| {
            stix["description"] = serde_json::Value::String(description)
        })
        .unwrap()
        .modified
}

#[tokio::test]
async fn with_include_unreleased_an_edit_is_one_new_version_per_collection_holding_it_and_no_release()
 {
    let (double, ics, mobile) = ics_and_mobile().await;
    let topics = Topics::new("wb_unreleased");
    assert_eq!(
        sync_once(&topics, &double, &[]).await.unwrap(),
        ingest::Outcome::Complete
    );
    let released = topics.object_records().await.unwrap();

    // An identity both releases share, and a relationship (attack-objects appends those).
    let identity = ics.first_id_of_type("identity");
    let relationship = ics.first_id_of_type("relationship");
    let edits: Vec<(String, String)> = [&identity, &relationship]
        .into_iter()
        .map(|id| (id.clone(), edit(&double, id, "edited between releases")))
        .collect();
    let expected: BTreeSet<(String, String, String)> = edits
        .iter()
        .flat_map(|(id, modified)| {
            collections_holding(&[&ics, &mobile], id)
                .into_iter()
                .map(move |c| (c, id.clone(), modified.clone()))
        })
        .collect();
    assert_eq!(
        expected.len(),
        3,
        "the identity is in both collections, the relationship in ICS only"
    );

    // Without the flag, an edit is not a release and nothing is published.
    assert_eq!(
        sync_once(&topics, &double, &[]).await.unwrap(),
        ingest::Outcome::Complete
    );
    assert_eq!(topics.object_records().await.unwrap().len(), released.len());

    assert_eq!(
        sync_once(&topics, &double, &["--include-unreleased"])
            .await
            .unwrap(),
        ingest::Outcome::Complete
    );
    let events = topics.events().await.unwrap();
    let added_keys: Vec<(String, String, String)> = added_since(&released, &events)
        .into_iter()
        .map(|e| match e {
            Event::ObjectVersion(v) => {
                // Exactly the content the Workbench holds for that version.
                let served = double.object_version(&v.object_id, &v.version).unwrap();
                let published: serde_json::Value = serde_json::from_str(&v.object_json).unwrap();
                assert_eq!(published, served);
                assert!(!v.correction);
                (
                    v.collection_id.clone(),
                    v.object_id.clone(),
                    v.version.clone(),
                )
            }
            other => panic!("only object versions, no release or metadata: {other:?}"),
        })
        .collect();
    assert_eq!(
        added_keys.len(),
        expected.len(),
        "each edit once per collection"
    );
    assert_eq!(added_keys.into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(
        releases_on(&events).len(),
        2,
        "the releases are the two collection versions"
    );

    // A restart rebuilds the checkpoint from the topic and republishes nothing.
    let after = events.len();
    assert_eq!(
        sync_once(&topics, &double, &["--include-unreleased"])
            .await
            .unwrap(),
        ingest::Outcome::Complete
    );
    assert_eq!(topics.object_records().await.unwrap().len(), after);
    assert!(topics.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn polling_publishes_an_edit_once_from_the_recent_page_without_rescanning_every_object() {
    let double = double_with(&["ics-attack-18.1.json.zst"], WorkbenchConfig::default()).await;
    let ics = Release::load("ics-attack-18.1.json.zst").unwrap();
    let topics = Topics::new("wb_unreleased_poll");
    let (shutdown, running) = start_unreleased_mirror(&topics, &double, "100ms");

    let recent_polls = |double: &WorkbenchDouble| double.count_requests("/api/recent-activity");
    // Started: the release is out and the first scan read every object.
    let deadline = Deadline::after(Duration::from_secs(60));
    while releases_on(&events_so_far(&topics).await).is_empty() || recent_polls(&double) == 0 {
        assert!(!deadline.passed(), "no release or no recent-activity poll");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = topics.object_records().await.unwrap();

    let technique = ics.first_id_of_type("attack-pattern");
    let modified = edit(&double, &technique, "edited while ingest runs");
    let key = (ics.collection_id(), technique.clone(), modified.clone());
    let deadline = Deadline::after(Duration::from_secs(60));
    while !collection_version_keys(&events_so_far(&topics).await).contains(&key) {
        assert!(!deadline.passed(), "the edit was not published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Later polls read the same page again and publish nothing more.
    let polls = recent_polls(&double);
    let deadline = Deadline::after(Duration::from_secs(60));
    while recent_polls(&double) < polls + 3 {
        assert!(!deadline.passed(), "polling stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_mirror(shutdown, running).await;

    let events = topics.events().await.unwrap();
    let added = added_since(&before, &events);
    assert_eq!(added.len(), 1, "exactly the edit, once: {added:?}");
    assert!(
        matches!(added[0], Event::ObjectVersion(v)
            if (&v.collection_id, &v.object_id, &v.version) == (&key.0, &key.1, &key.2)),
        "an object version, no release: {added:?}"
    );
    let requests = double.requests();
    let full_scans: Vec<_> = requests
        .iter()
        .filter(|r| r.route() == "/api/attack-objects")
        .collect();
    assert_eq!(full_scans.len(), 1, "every object is read once at start");
    for r in requests
        .iter()
        .filter(|r| r.route() == "/api/attack-objects" || r.route() == "/api/recent-activity")
    {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.query_param("includeRevoked").as_deref(), Some("true"));
        assert_eq!(r.query_param("includeDeprecated").as_deref(), Some("true"));
    }
}

#[tokio::test]
async fn edits_of_an_unpublished_collection_wait_for_its_release_and_invalid_edits_are_dead_lettered()
 {
    let (double, ics, mobile) = ics_and_mobile().await;
    double.set_fault(Fault::BundleServerError {
        collection_id: mobile.collection_id(),
    });
    let technique = ics.first_id_of_type("attack-pattern");
    let invalid = double
        .edit_object(&technique, |stix| {
            stix["spec_version"] = serde_json::Value::String("9.9".into())
        })
        .unwrap()
        .modified;
    let topics = Topics::new("wb_unreleased_wait");
    assert_eq!(
        sync_once(&topics, &double, &["--include-unreleased"])
            .await
            .unwrap(),
        ingest::Outcome::InputsFailed,
        "the Mobile release failed"
    );
    let events = topics.events().await.unwrap();
    let published: BTreeSet<(String, String, String)> =
        collection_version_keys(&events).into_iter().collect();
    let ics_members: BTreeSet<(String, String, String)> = expected_members(&ics)
        .into_iter()
        .map(|(id, v)| (ics.collection_id(), id, v))
        .collect();
    assert_eq!(
        published, ics_members,
        "nothing of Mobile before its release, and not the invalid edit"
    );
    let letters = topics.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.contains(&technique) && letters[0].reason.contains("spec_version"),
        "{}",
        letters[0].reason
    );
    let payload: serde_json::Value =
        serde_json::from_slice(letters[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(
        payload,
        double.object_version(&technique, &invalid).unwrap()
    );

    // Once Mobile is released, its objects are known through the release: the scan adds nothing.
    double.clear_faults();
    assert_eq!(
        sync_once(&topics, &double, &["--include-unreleased"])
            .await
            .unwrap(),
        ingest::Outcome::Complete
    );
    let events = topics.events().await.unwrap();
    let mobile_members: BTreeSet<(String, String, String)> = expected_members(&mobile)
        .into_iter()
        .map(|(id, v)| (mobile.collection_id(), id, v))
        .collect();
    let published: BTreeSet<(String, String, String)> =
        collection_version_keys(&events).into_iter().collect();
    assert_eq!(
        published,
        ics_members.union(&mobile_members).cloned().collect()
    );
}

#[tokio::test]
async fn a_failing_workbench_is_not_rescanned_on_every_poll_and_the_mirror_recovers() {
    let double = double_with(&["ics-attack-18.1.json.zst"], WorkbenchConfig::default()).await;
    double.set_fault(Fault::ServiceUnavailable);
    let topics = Topics::new("wb_unreleased_backoff");
    // The mirror polls every 100 ms; the unreleased scan's own interval is an hour, so the
    // failed first scan may only be retried that much later, not on the next mirror poll.
    let (shutdown, running) = start_unreleased_mirror(&topics, &double, "1h");
    let deadline = Deadline::after(Duration::from_secs(60));
    while double.count_requests("/api/collections") < 10 {
        assert!(
            !deadline.passed(),
            "the mirror stopped polling a failing Workbench"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        double.count_requests("/api/attack-objects"),
        1,
        "one failed full scan, not one per mirror poll"
    );

    double.clear_faults();
    let ics = Release::load("ics-attack-18.1.json.zst").unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    while releases_on(&events_so_far(&topics).await).is_empty() {
        assert!(!deadline.passed(), "the mirror did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_mirror(shutdown, running).await;
    let events = topics.events().await.unwrap();
    assert_eq!(
        version_keys(&events).into_iter().collect::<BTreeSet<_>>(),
        expected_members(&ics),
        "the release's versions, once the Workbench answers again"
    );
    assert_eq!(
        releases_on(&events).into_values().collect::<Vec<_>>(),
        [expected_members(&ics)]
    );
    assert_eq!(double.count_requests("/api/attack-objects"), 1);
}
