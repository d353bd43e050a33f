//! `ingest workbench --include-unreleased` against the Workbench REST API double serving real
//! ATT&CK releases, on the real broker: object edits between releases, their polling and faults.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::ingest_workbench_releases::{
    MirrorRun, double_with, events_so_far, expected_members, ics_and_mobile, mirror_of,
    releases_on, start_mirror, stop_mirror, sync_once, version_keys,
};
use ingest::config::WorkbenchConfig as MirrorConfig;
use schemas::Event;
use taxiway_tests::Deadline;
use taxiway_tests::fixtures::{Release, id_of};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::workbench_double::{Fault, WorkbenchConfig, WorkbenchDouble};
use tokio_util::sync::CancellationToken;

/// [`start_mirror`] polling every 100 ms, with `--include-unreleased` scanning every `interval`.
/// The mirror of `double` with `--include-unreleased`.
fn unreleased_mirror_of(double: &WorkbenchDouble) -> MirrorConfig {
    MirrorConfig {
        include_unreleased: true,
        ..mirror_of(double)
    }
}

fn start_unreleased_mirror(
    topics: &Topics,
    double: &WorkbenchDouble,
    interval: Duration,
) -> (CancellationToken, MirrorRun) {
    start_mirror(
        topics,
        MirrorConfig {
            poll_interval: Duration::from_millis(100),
            unreleased_poll_interval: interval,
            ..unreleased_mirror_of(double)
        },
    )
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
        sync_once(&topics, mirror_of(&double)).await.unwrap(),
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
        sync_once(&topics, mirror_of(&double)).await.unwrap(),
        ingest::Outcome::Complete
    );
    assert_eq!(topics.object_records().await.unwrap().len(), released.len());

    assert_eq!(
        sync_once(&topics, unreleased_mirror_of(&double),)
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
        sync_once(&topics, unreleased_mirror_of(&double),)
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
    let (shutdown, running) = start_unreleased_mirror(&topics, &double, Duration::from_millis(100));

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
        sync_once(&topics, unreleased_mirror_of(&double),)
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
        sync_once(&topics, unreleased_mirror_of(&double),)
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
    let (shutdown, running) =
        start_unreleased_mirror(&topics, &double, Duration::from_secs(60 * 60));
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
