//! `projector run` against the real broker and Cassandra: real ATT&CK releases ingested, projections
//! checked against expectations computed from the bundle files themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ingest::config::ImportConfig;
use projector::config::Command;
use schemas::Event;
use serde_json::Value;
use taxiway_tests::Deadline;
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection::{self, StoredRelease};

async fn ingest(topics: &Topics, file: &str) {
    let path = fixtures::path(file);
    topics
        .ingest(ImportConfig::new([&path]))
        .await
        .expect("ingest import");
}

/// Projects everything on `topics` into a fresh control keyspace and returns the active
/// generation's keyspace once every collection reached its final revision.
async fn project(topics: &Topics, prefix: &str) -> (projection::Running, String, String) {
    let control = projection::control_keyspace(prefix);
    let running = projection::start(topics, &control, Command::Run).expect("start projector");
    let events = topics.events().await.expect("read topic");
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    let session = projection::session().await.expect("CQL session");
    let keyspace = projection::wait_for_revisions(
        &session,
        &control,
        &expected,
        Deadline::after(Duration::from_secs(240)),
    )
    .await
    .expect("projection catches up");
    (running, control, keyspace)
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).expect("stored JSON parses")
}

/// The largest date_added of each (object, version) on the topic: where the manifest must list it.
fn latest_date_added(
    events: &[(taxiway_tests::topic::Record, Event)],
) -> BTreeMap<(String, String), i64> {
    let mut out: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (_, e) in events {
        // An archival content (an older release's, imported late) is never listed.
        if let Event::ObjectVersion(v) = e
            && !v.archival
        {
            let slot = out
                .entry((v.object_id.clone(), v.version.clone()))
                .or_insert(v.date_added);
            *slot = (*slot).max(v.date_added);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ics_releases_imported_out_of_order_project_every_version_and_release() {
    let topics = Topics::new("proj_ics");
    // Newest first, then the oldest, then the middle one: neither import order nor label
    // order may decide which release is the latest.
    for file in [
        "ics-attack-18.1.json.zst",
        "ics-attack-17.1.json.zst",
        "ics-attack-18.0.json.zst",
    ] {
        ingest(&topics, file).await;
    }
    let (running, _control, keyspace) = project(&topics, "proj_ics").await;
    let session = projection::session().await.unwrap();

    // Files by release age; the newest file containing an (id, version) has its current content.
    let files: Vec<Release> = [
        "ics-attack-17.1.json.zst",
        "ics-attack-18.0.json.zst",
        "ics-attack-18.1.json.zst",
    ]
    .into_iter()
    .map(|f| Release::load(f).unwrap())
    .collect();
    let collection_id = files[2].collection_id();
    let mut expected: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for file in &files {
        expected.extend(file.by_version());
    }
    let reissued = files[0]
        .by_version()
        .iter()
        .filter(|(k, v)| files[1].by_version().get(*k).is_some_and(|n| n != *v))
        .count();
    assert_eq!(reissued, 70, "ICS 17.1 → 18.0 re-issues 70 versions");

    let stored = projection::object_versions(&session, &keyspace)
        .await
        .unwrap();
    assert_eq!(
        stored.keys().cloned().collect::<BTreeSet<_>>(),
        expected.keys().cloned().collect::<BTreeSet<_>>(),
        "exactly the (object, version) pairs of the three files"
    );
    for (key, object) in &expected {
        assert_eq!(&parse(&stored[key]), *object, "content of {key:?}");
    }

    let events = topics.events().await.unwrap();
    let latest = latest_date_added(&events);
    let manifest = projection::manifest(&session, &keyspace, &collection_id)
        .await
        .unwrap();
    assert_eq!(
        manifest.len(),
        expected.len(),
        "every version in the manifest"
    );
    for (key, dates) in &manifest {
        assert_eq!(
            dates,
            &vec![latest[key]],
            "{key:?} listed once, under its latest date_added"
        );
    }

    let releases = projection::releases(&session, &keyspace, &collection_id)
        .await
        .unwrap();
    let labels: Vec<&str> = releases.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        ["18.1", "18.0", "17.1"],
        "newest release_timestamp first"
    );
    for (release, file) in releases.iter().zip(files.iter().rev()) {
        assert!(release.complete, "{} complete", release.label);
        assert_eq!(
            release.members,
            file.versions(),
            "members of {}",
            release.label
        );
    }
    let latest_release: &StoredRelease = releases.iter().find(|r| r.complete).unwrap();
    assert_eq!(latest_release.label, "18.1");

    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_versions_reissued_with_the_same_modified_get_the_newer_content() {
    let topics = Topics::new("proj_mobile");
    ingest(&topics, "mobile-attack-17.0.json.zst").await;
    ingest(&topics, "mobile-attack-17.1.json.zst").await;
    let (running, _control, keyspace) = project(&topics, "proj_mobile").await;
    let session = projection::session().await.unwrap();

    let old = Release::load("mobile-attack-17.0.json.zst").unwrap();
    let new = Release::load("mobile-attack-17.1.json.zst").unwrap();
    let old_versions = old.by_version();
    let new_versions = new.by_version();
    let reissued: Vec<_> = new_versions
        .iter()
        .filter(|(k, v)| old_versions.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !reissued.is_empty(),
        "Mobile 17.1 re-issues versions of 17.0"
    );

    let stored = projection::object_versions(&session, &keyspace)
        .await
        .unwrap();
    for key in &reissued {
        assert_eq!(
            &parse(&stored[key]),
            new_versions[key],
            "{key:?} has 17.1's content"
        );
    }
    for (key, object) in &old_versions {
        if !new_versions.contains_key(key) {
            assert_eq!(&parse(&stored[key]), *object, "{key:?} only in 17.0");
        }
    }
    let releases = projection::releases(&session, &keyspace, &new.collection_id())
        .await
        .unwrap();
    assert_eq!(releases.len(), 2);
    assert!(releases.iter().all(|r| r.complete));
    assert_eq!(releases[0].label, "17.1");
    assert_eq!(releases[0].members, new.versions());
    running.stop().await.unwrap();
}
