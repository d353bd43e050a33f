//! `ingest import` against the real broker: real ATT&CK releases in, events on the topic
//! checked against expectations computed from the bundle files themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use schemas::{Event, ObjectVersionAdded, ReleasePublished};
use serde_json::Value;
use taxiway_tests::fixtures::{self, Release, id_of, version_of};
use taxiway_tests::pipeline::Topics;

fn versions(events: &[(taxiway_tests::topic::Record, Event)]) -> Vec<&ObjectVersionAdded> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ObjectVersion(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// Releases on the topic by (label, release timestamp), chunks merged, checking that every
/// chunk of each is there exactly once.
fn releases(
    events: &[(taxiway_tests::topic::Record, Event)],
) -> BTreeMap<(String, String), BTreeSet<(String, String)>> {
    let mut chunks: BTreeMap<(String, String), Vec<&ReleasePublished>> = BTreeMap::new();
    for (_, e) in events {
        if let Event::Release(r) = e {
            chunks
                .entry((r.label.clone(), r.release_version.clone()))
                .or_default()
                .push(r);
        }
    }
    chunks
        .into_iter()
        .map(|(id, parts)| {
            let count = parts[0].chunk_count;
            let indexes: BTreeSet<i32> = parts.iter().map(|p| p.chunk_index).collect();
            assert_eq!(indexes, (0..count).collect(), "chunks of release {id:?}");
            assert_eq!(parts.len(), count as usize, "each chunk once: {id:?}");
            let members: BTreeSet<(String, String)> = parts
                .iter()
                .flat_map(|p| {
                    p.members
                        .iter()
                        .map(|m| (m.object_id.clone(), m.version.clone()))
                })
                .collect();
            assert_eq!(members.len() as i64, parts[0].member_count, "{id:?}");
            (id, members)
        })
        .collect()
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).expect("event carries JSON")
}

/// Expected corrections when files are imported in this order: an (id, version) seen before
/// whose content differs from the previous occurrence.
fn expected_corrections(files: &[&Release]) -> usize {
    let mut last: BTreeMap<(String, String), &Value> = BTreeMap::new();
    let mut corrections = 0;
    for file in files {
        for object in &file.objects {
            let key = (id_of(object), version_of(object));
            if let Some(previous) = last.insert(key, object)
                && previous != object
            {
                corrections += 1;
            }
        }
    }
    corrections
}

#[tokio::test]
async fn ics_releases_publish_every_distinct_version_once_and_three_complete_releases() {
    let names = [
        "ics-attack-17.1.json.zst",
        "ics-attack-18.0.json.zst",
        "ics-attack-18.1.json.zst",
    ];
    let files: Vec<Release> = names.iter().map(|n| Release::load(n).unwrap()).collect();
    let topics = Topics::new("ingest_ics");
    let paths: Vec<String> = names
        .iter()
        .map(|n| fixtures::path(n).display().to_string())
        .collect();
    let args: Vec<&str> = std::iter::once("import")
        .chain(paths.iter().map(String::as_str))
        .collect();
    assert_eq!(
        topics.ingest(&args).await.unwrap(),
        ingest::Outcome::Complete
    );

    let events = topics.events().await.unwrap();
    let published = versions(&events);

    // Exactly the distinct (object, version) pairs of the three files.
    let expected: BTreeSet<(String, String)> = files.iter().flat_map(|f| f.versions()).collect();
    let keys: BTreeSet<(String, String)> = published
        .iter()
        .map(|v| (v.object_id.clone(), v.version.clone()))
        .collect();
    assert_eq!(keys, expected);
    let corrections = expected_corrections(&files.iter().collect::<Vec<_>>());
    assert_eq!(
        published.iter().filter(|v| v.correction).count(),
        corrections
    );
    assert_eq!(published.len(), expected.len() + corrections);

    // What compaction keeps (the last record of each key) is the newest file's content.
    let mut newest: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for file in &files {
        newest.extend(file.by_version());
    }
    let mut kept: BTreeMap<(String, String), &ObjectVersionAdded> = BTreeMap::new();
    for v in &published {
        kept.insert((v.object_id.clone(), v.version.clone()), v);
    }
    for (key, v) in &kept {
        assert_eq!(&parse(&v.object_json), newest[key], "content of {key:?}");
    }

    // One collection → one partition, date_added strictly increasing in offset order.
    let partitions: BTreeSet<i32> = events.iter().map(|(r, _)| r.partition).collect();
    assert_eq!(partitions.len(), 1);
    let added: Vec<i64> = published.iter().map(|v| v.date_added).collect();
    assert!(
        added.windows(2).all(|w| w[0] < w[1]),
        "date_added strictly increasing"
    );

    // Three releases whose members are each file's objects, published after their members.
    let on_topic = releases(&events);
    let expected_releases: BTreeMap<(String, String), BTreeSet<(String, String)>> = files
        .iter()
        .map(|f| {
            let c = f.collection().unwrap();
            (
                (
                    c["x_mitre_version"].as_str().unwrap().to_owned(),
                    c["modified"].as_str().unwrap().to_owned(),
                ),
                f.versions(),
            )
        })
        .collect();
    assert_eq!(on_topic, expected_releases);
    let last_version_offset = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::ObjectVersion(_)))
        .map(|(r, _)| r.offset)
        .max()
        .unwrap();
    let first_release_offset = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Release(r) if r.label == "18.1"))
        .map(|(r, _)| r.offset)
        .min()
        .unwrap();
    assert!(first_release_offset > last_version_offset);

    // Importing 18.1 again, in a new run that rebuilds its checkpoint from the topic, adds nothing.
    let before = topics.object_records().await.unwrap().len();
    let again = paths[2].clone();
    assert_eq!(
        topics.ingest(&["import", &again]).await.unwrap(),
        ingest::Outcome::Complete
    );
    assert_eq!(topics.object_records().await.unwrap().len(), before);
}

#[tokio::test]
async fn mobile_content_reissued_under_the_same_modified_is_republished_once_as_a_correction() {
    let old = Release::load("mobile-attack-17.0.json.zst").unwrap();
    let new = Release::load("mobile-attack-17.1.json.zst").unwrap();
    let topics = Topics::new("ingest_mobile");
    for name in ["mobile-attack-17.0.json.zst", "mobile-attack-17.1.json.zst"] {
        let path = fixtures::path(name).display().to_string();
        assert_eq!(
            topics.ingest(&["import", &path]).await.unwrap(),
            ingest::Outcome::Complete
        );
    }
    let events = topics.events().await.unwrap();
    let published = versions(&events);

    let old_by_version = old.by_version();
    let reissued: BTreeSet<(String, String)> = new
        .by_version()
        .into_iter()
        .filter(|(key, object)| old_by_version.get(key).is_some_and(|o| o != object))
        .map(|(key, _)| key)
        .collect();
    assert!(!reissued.is_empty(), "the files do re-issue content");
    let corrections: Vec<&&ObjectVersionAdded> =
        published.iter().filter(|v| v.correction).collect();
    let corrected: BTreeSet<(String, String)> = corrections
        .iter()
        .map(|v| (v.object_id.clone(), v.version.clone()))
        .collect();
    assert_eq!(corrected, reissued);
    assert_eq!(corrections.len(), reissued.len(), "each re-published once");

    // The last record of each key — what compaction keeps — carries 17.1's content.
    let new_by_version = new.by_version();
    let mut kept: BTreeMap<(String, String), &ObjectVersionAdded> = BTreeMap::new();
    for v in &published {
        kept.insert((v.object_id.clone(), v.version.clone()), v);
    }
    for key in &reissued {
        assert_eq!(&parse(&kept[key].object_json), new_by_version[key]);
    }
    // The later date_added of a correction is what lets added_after pollers see it.
    for v in &corrections {
        let first = published
            .iter()
            .find(|p| p.object_id == v.object_id && p.version == v.version && !p.correction)
            .unwrap();
        assert!(v.date_added > first.date_added);
        assert_eq!(
            v.supersedes_date_added,
            Some(first.date_added),
            "a correction names what it replaces"
        );
    }
}

fn write_bundle(objects: &[&str]) -> tempfile_path::TempBundle {
    tempfile_path::TempBundle::new(&format!(
        r#"{{"type":"bundle","id":"bundle--0e7a0000-0000-4000-8000-000000000000","objects":[{}]}}"#,
        objects.join(",")
    ))
}

mod tempfile_path {
    use super::*;
    /// A bundle file in a fresh directory, removed when dropped.
    pub struct TempBundle(tempfile::TempDir);
    impl TempBundle {
        pub fn new(text: &str) -> Self {
            let dir = tempfile::Builder::new()
                .prefix("taxiway-test-")
                .tempdir()
                .unwrap();
            std::fs::File::create(dir.path().join("bundle.json"))
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            TempBundle(dir)
        }
        pub fn path(&self) -> String {
            self.0.path().join("bundle.json").display().to_string()
        }
    }
}

#[tokio::test]
async fn invalid_objects_go_to_the_dead_letter_topic_with_reasons_and_the_rest_is_published() {
    let valid = r#"{"type":"attack-pattern","spec_version":"2.1","id":"attack-pattern--0a3ead4e-6d47-4ccb-854c-a6a4f9d96b22","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z","name":"ok"}"#;
    let missing_id = r#"{"type":"attack-pattern","spec_version":"2.1","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z"}"#;
    let bad_timestamp = r#"{"type":"malware","spec_version":"2.1","id":"malware--1a3ead4e-6d47-4ccb-854c-a6a4f9d96b22","created":"2020-01-01T00:00:00.000Z","modified":"yesterday"}"#;
    let wrong_prefix = r#"{"type":"tool","spec_version":"2.1","id":"malware--2a3ead4e-6d47-4ccb-854c-a6a4f9d96b22","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z"}"#;
    let also_valid = r#"{"type":"tool","spec_version":"2.1","id":"tool--3a3ead4e-6d47-4ccb-854c-a6a4f9d96b22","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z"}"#;
    let bundle = write_bundle(&[valid, missing_id, bad_timestamp, wrong_prefix, also_valid]);
    let topics = Topics::new("ingest_invalid");
    let path = bundle.path();
    let outcome = topics
        .ingest(&[
            "import",
            &path,
            "--collection",
            "my-collection",
            "--title",
            "Mine",
        ])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ingest::Outcome::Complete,
        "invalid objects are not a failed run"
    );

    let letters = topics.dead_letters().await.unwrap();
    let mut by_position: BTreeMap<i64, &schemas::DeadLetter> = BTreeMap::new();
    for l in &letters {
        let source = l.source.as_ref().unwrap();
        assert_eq!(source.uri, path);
        by_position.insert(source.position.unwrap(), l);
    }
    assert_eq!(by_position.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        by_position[&1].reason.contains("id"),
        "{}",
        by_position[&1].reason
    );
    assert!(
        by_position[&2].reason.contains("modified"),
        "{}",
        by_position[&2].reason
    );
    assert!(
        by_position[&3].reason.contains("malware--2a3ead4e"),
        "{}",
        by_position[&3].reason
    );
    assert_eq!(
        parse(std::str::from_utf8(by_position[&2].payload.as_ref().unwrap()).unwrap()),
        parse(bad_timestamp),
        "the rejected object itself travels with the reason"
    );

    let events = topics.events().await.unwrap();
    let ids: BTreeSet<String> = versions(&events)
        .iter()
        .map(|v| v.object_id.clone())
        .collect();
    assert_eq!(
        ids,
        [id_of(&parse(valid)), id_of(&parse(also_valid))]
            .into_iter()
            .collect()
    );
    assert!(
        events
            .iter()
            .all(|(_, e)| e.collection_id() == "my-collection"),
        "the --collection flag names the collection"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_bundle_fails_the_run_and_publishes_nothing_from_it() {
    let not_json = tempfile_path::TempBundle::new("this is not JSON");
    let not_bundle = tempfile_path::TempBundle::new(r#"{"type":"identity","id":"identity--1"}"#);
    let topics = Topics::new("ingest_garbage");
    let (a, b) = (not_json.path(), not_bundle.path());
    let outcome = topics
        .ingest(&["import", &a, &b, "--collection", "c", "--title", "C"])
        .await
        .unwrap();
    assert_eq!(outcome, ingest::Outcome::InputsFailed);
    let events = topics.events().await.unwrap();
    assert!(events.is_empty(), "{} events published", events.len());
}

#[tokio::test]
async fn a_delivery_the_broker_refuses_fails_the_run_naming_the_topic_and_the_reason() {
    // The objects topic exists already, with a message limit below the size of a batch of the
    // bundle's events: the broker refuses them after they were enqueued, so only the delivery
    // reports can tell. The run must fail with that, not return as if it had published.
    let topics = Topics::new("ingest_refused");
    taxiway_tests::topic::create(
        &topics.objects,
        1,
        &[("cleanup.policy", "compact"), ("max.message.bytes", "4096")],
    )
    .await
    .unwrap();
    let path = fixtures::path("ics-attack-18.1.json.zst")
        .display()
        .to_string();
    let error = topics.ingest(&["import", &path]).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("delivering to {}", topics.objects)),
        "{message}"
    );
    assert!(message.to_lowercase().contains("too large"), "{message}");
}
