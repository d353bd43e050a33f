//! Tests of the pure core: a tiny model of CQL write semantics, fed permutations and duplicates of event logs.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::rows::generated::{Step, log, log_and_order};
use crate::triage::check;

/// A cell: write timestamp and value (`None` = tombstone).
type Cell = (i64, Option<String>);

/// CQL semantics that matter here: per-cell last-write-wins by timestamp (a tie goes to the
/// tombstone, else to the larger value, as Cassandra resolves it), row deletions shadowing
/// every cell with a timestamp not above theirs, set elements as cells of their own.
#[derive(Default, Debug, Clone)]
struct Model {
    cells: BTreeMap<(String, String, String), Cell>,
    row_deletions: BTreeMap<(String, String), i64>,
}

impl Model {
    fn put(&mut self, table: &str, key: String, column: String, ts: i64, value: Option<String>) {
        let slot = self.cells.entry((table.to_owned(), key, column));
        let new = (ts, value);
        match slot {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(new);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let old = o.get();
                let wins = match new.0.cmp(&old.0) {
                    std::cmp::Ordering::Greater => true,
                    std::cmp::Ordering::Less => false,
                    std::cmp::Ordering::Equal => match (&new.1, &old.1) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(a), Some(b)) => a > b,
                    },
                };
                if wins {
                    o.insert(new);
                }
            }
        }
    }

    fn row(&mut self, table: &str, key: String, ts: i64, columns: Vec<(&str, String)>) {
        // The row marker INSERT writes: a row with only null columns still exists.
        self.put(table, key.clone(), String::new(), ts, Some(String::new()));
        for (column, value) in columns {
            self.put(table, key.clone(), column.to_owned(), ts, Some(value));
        }
    }

    fn apply(&mut self, m: &Mutation) {
        let ts = m.timestamp();
        match m {
            Mutation::Collection(c) => self.row(
                "collections",
                c.collection_id.clone(),
                ts,
                vec![
                    ("title", c.title.clone()),
                    ("description", format!("{:?}", c.description)),
                    ("alias", format!("{:?}", c.alias)),
                    ("media_types", format!("{:?}", c.media_types)),
                    ("updated_at", c.updated_at.to_string()),
                ],
            ),
            // An UPDATE: no row marker.
            Mutation::Revision {
                collection_id,
                revision,
            } => self.put(
                "collections",
                collection_id.clone(),
                "revision".into(),
                ts,
                Some(revision.to_string()),
            ),
            Mutation::ObjectVersion(v) => {
                let key = format!("{}|{}|{}", v.collection_id, v.object_id, v.version);
                for (column, value) in [
                    ("version_text", v.version_text.clone()),
                    ("stix_type", v.stix_type.clone()),
                    ("spec_version", v.spec_version.clone()),
                    ("date_added", v.date_added.to_string()),
                    ("object_json", v.object_json.clone()),
                    ("content_sha256", format!("{:?}", v.content_sha256)),
                ] {
                    self.put(
                        "object_versions",
                        key.clone(),
                        column.into(),
                        ts,
                        Some(value),
                    );
                }
                self.put(
                    "object_versions",
                    key,
                    format!("date_addeds:{:020}", v.date_added),
                    ts,
                    Some(String::new()),
                );
            }
            Mutation::CollectionDelivery {
                collection_id,
                released,
                ..
            } => self.row(
                "collection_delivery",
                collection_id.clone(),
                ts,
                vec![("released", released.to_string())],
            ),
            Mutation::ObjectContent(c) => self.row(
                "object_contents",
                format!(
                    "{}|{}|{}|{:?}",
                    c.collection_id, c.object_id, c.version, c.content_sha256
                ),
                ts,
                vec![
                    ("date_added", c.date_added.to_string()),
                    ("object_json", c.object_json.clone()),
                ],
            ),
            Mutation::ContentIndex(c) => self.row(
                "content_index",
                format!(
                    "{}|{}|{}|{:?}",
                    c.collection_id, c.object_id, c.version, c.content_sha256
                ),
                ts,
                vec![
                    ("date_added", c.date_added.to_string()),
                    ("stix_type", c.stix_type.clone()),
                    ("spec_version", c.spec_version.clone()),
                    ("version_text", c.version_text.clone()),
                ],
            ),
            Mutation::ReleaseMemberContent(m) => self.row(
                "release_member_contents",
                format!("{:?}|{}|{}", m.key, m.object_id, m.version),
                ts,
                vec![("content_sha256", format!("{:?}", m.content_sha256))],
            ),
            Mutation::ManifestBucket {
                collection_id,
                bucket,
            } => self.row(
                "manifest_buckets",
                format!("{collection_id}|{bucket}"),
                ts,
                vec![],
            ),
            Mutation::ManifestInsert(m) => self.row(
                "manifest",
                format!("{:?}", m.key),
                ts,
                vec![
                    ("stix_type", m.stix_type.clone()),
                    ("spec_version", m.spec_version.clone()),
                    ("version_text", m.version_text.clone()),
                ],
            ),
            Mutation::ManifestDelete { key, timestamp } => {
                let slot = self
                    .row_deletions
                    .entry(("manifest".into(), format!("{key:?}")))
                    .or_insert(*timestamp);
                *slot = (*slot).max(*timestamp);
            }
            Mutation::Release(r) => self.row(
                "releases",
                format!("{:?}", r.key),
                ts,
                vec![
                    ("release_version", r.release_version.clone()),
                    ("chunk_count", r.chunk_count.to_string()),
                    ("member_count", r.member_count.to_string()),
                    ("date_added", r.date_added.to_string()),
                ],
            ),
            Mutation::ReleaseMember(m) => self.row(
                "release_members",
                format!("{:?}|{}|{}", m.key, m.object_id, m.version),
                ts,
                vec![("version_text", m.version_text.clone())],
            ),
            Mutation::ReleaseChunk(c) => self.row(
                "release_chunks",
                format!("{:?}|{:05}", c.key, c.chunk_index),
                ts,
                vec![("members", c.members.to_string())],
            ),
            Mutation::ReleaseComplete { key, .. } => self.put(
                "releases",
                format!("{key:?}"),
                "complete".into(),
                ts,
                Some("true".into()),
            ),
        }
    }

    /// What a reader sees: live cells only, rows without any live cell gone.
    fn visible(&self) -> BTreeMap<(String, String), BTreeMap<String, String>> {
        let mut rows: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
        for ((table, key, column), (ts, value)) in &self.cells {
            let deleted = self
                .row_deletions
                .get(&(table.clone(), key.clone()))
                .is_some_and(|d| d >= ts);
            if let (false, Some(value)) = (deleted, value) {
                rows.entry((table.clone(), key.clone()))
                    .or_default()
                    .insert(column.clone(), value.clone());
            }
        }
        rows
    }

    fn date_addeds(&self, v: &ObjectVersionAdded) -> Vec<i64> {
        let key = format!("{}|{}|{}", v.collection_id, v.object_id, v.version_micros);
        let prefix = "date_addeds:";
        self.cells
            .range(
                ("object_versions".to_owned(), key.clone(), prefix.to_owned())
                    ..=("object_versions".to_owned(), key, format!("{prefix}~")),
            )
            .filter_map(|((_, _, column), _)| column[prefix.len()..].parse().ok())
            .collect()
    }

    fn chunks(&self, r: &ReleasePublished) -> Vec<i32> {
        let prefix = format!("{:?}|", release_key(r));
        self.visible()
            .keys()
            .filter(|(table, key)| table == "release_chunks" && key.starts_with(&prefix))
            .filter_map(|(_, key)| key[prefix.len()..].parse().ok())
            .collect()
    }

    /// Projects one event the way `project` does: writes, then the read, then the
    /// follow-up, then the revision.
    fn project(&mut self, event: &Event) {
        for m in writes(event) {
            self.apply(&m);
        }
        match event {
            Event::ObjectVersion(v) => {
                let follow_up =
                    manifest_without_read(v).unwrap_or_else(|| manifest(v, &self.date_addeds(v)));
                for m in follow_up {
                    self.apply(&m);
                }
            }
            Event::Release(r) => {
                if let Some(m) = completion(r, &self.chunks(r)) {
                    self.apply(&m);
                }
            }
            Event::Collection(_) => {}
        }
        self.apply(&revision(event.collection_id(), sequence(event)));
    }
}

fn project_all<'a>(events: impl IntoIterator<Item = &'a Event>) -> Model {
    let mut model = Model::default();
    for e in events {
        model.project(e);
    }
    model
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_order_and_duplication_projects_the_same_state((events, order) in log_and_order()) {
        let in_order = project_all(&events);
        let shuffled = project_all(order.iter().map(|&i| &events[i]));
        prop_assert_eq!(in_order.visible(), shuffled.visible());
    }

    #[test]
    fn the_manifest_holds_each_version_once_under_its_latest_date_added((events, order) in log_and_order()) {
        let state = project_all(order.iter().map(|&i| &events[i])).visible();
        let mut latest: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
        for e in &events {
            if let Event::ObjectVersion(v) = e
                && !v.archival
            {
                let slot = latest
                    .entry((v.collection_id.clone(), v.object_id.clone(), v.version_micros))
                    .or_insert(v.date_added);
                *slot = (*slot).max(v.date_added);
            }
        }
        let expected: BTreeSet<String> = latest
            .iter()
            .map(|((c, o, v), d)| format!("{:?}", ManifestKey::new(c, *d, o, *v)))
            .collect();
        let manifest: BTreeSet<String> = state
            .keys()
            .filter(|(t, _)| t == "manifest")
            .map(|(_, k)| k.clone())
            .collect();
        prop_assert_eq!(manifest, expected);
    }

    #[test]
    fn corrections_without_supersedes_still_project_the_same_state_in_log_order((events, _) in log_and_order()) {
        // Schema version 2 corrections do not name what they supersede: the projector reads
        // date_addeds for them. In the order the log holds them (Kafka's per-partition
        // order), replayed twice, they give the same tables as version 3 events.
        let legacy: Vec<Event> = events
            .iter()
            .map(|e| match e {
                Event::ObjectVersion(v) => Event::ObjectVersion(ObjectVersionAdded {
                    supersedes_date_added: None,
                    ..v.clone()
                }),
                other => other.clone(),
            })
            .collect();
        let replayed = project_all(legacy.iter().chain(legacy.iter()));
        prop_assert_eq!(project_all(&events).visible(), replayed.visible());
    }

    #[test]
    fn every_fully_seen_release_is_complete((events, order) in log_and_order()) {
        let state = project_all(order.iter().map(|&i| &events[i])).visible();
        for e in &events {
            if let Event::Release(r) = e {
                let row = &state[&("releases".to_owned(), format!("{:?}", release_key(r)))];
                prop_assert_eq!(row.get("complete").map(String::as_str), Some("true"));
            }
        }
    }
}

#[test]
fn the_later_date_added_wins_for_the_same_version_in_either_order() {
    let steps = [
        Step::Version {
            collection: 0,
            object: 1,
            version: 0,
            content: 0,
            archival: false,
        },
        Step::Version {
            collection: 0,
            object: 1,
            version: 0,
            content: 1,
            archival: false,
        },
    ];
    let events = log(&steps);
    for order in [[0, 1], [1, 0]] {
        let state = project_all(order.iter().map(|&i| &events[i])).visible();
        let versions: Vec<_> = state
            .iter()
            .filter(|((t, _), _)| t == "object_versions")
            .collect();
        assert_eq!(versions.len(), 1);
        assert!(versions[0].1["object_json"].contains("\"n1\""), "{order:?}");
        let manifest = state.keys().filter(|(t, _)| t == "manifest").count();
        assert_eq!(manifest, 1);
    }
}

#[test]
fn a_partial_release_is_not_complete() {
    let steps = [
        Step::Version {
            collection: 0,
            object: 1,
            version: 0,
            content: 0,
            archival: false,
        },
        Step::Version {
            collection: 0,
            object: 2,
            version: 0,
            content: 0,
            archival: false,
        },
        Step::Version {
            collection: 0,
            object: 3,
            version: 0,
            content: 0,
            archival: false,
        },
        Step::Release {
            collection: 0,
            label: 1,
            members: 3,
        },
    ];
    let events = log(&steps);
    assert_eq!(events.len(), 5, "two chunks");
    let state = project_all(&events[..4]).visible();
    let release = state
        .iter()
        .find(|((t, _), _)| t == "releases")
        .map(|(_, row)| row)
        .unwrap();
    assert_eq!(release.get("complete"), None);
}

#[test]
fn check_rejects_json_that_disagrees_with_the_event() {
    let events = log(&[Step::Version {
        collection: 0,
        object: 1,
        version: 0,
        content: 0,
        archival: false,
    }]);
    assert_eq!(check(&events[0]), Ok(()));
    let Event::ObjectVersion(mut v) = events[0].clone() else {
        unreachable!()
    };
    v.object_id = "attack-pattern--00000000-0000-4000-8000-000000000009".into();
    assert!(
        check(&Event::ObjectVersion(v.clone()))
            .unwrap_err()
            .contains("object_id")
    );
    v.object_json = "{\"type\": \"x\"}".into();
    assert!(
        check(&Event::ObjectVersion(v))
            .unwrap_err()
            .contains("not valid STIX")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn archival_content_is_kept_but_never_changes_what_history_serves((events, order) in log_and_order()) {
        let state = project_all(order.iter().map(|&i| &events[i])).visible();
        let without: Vec<Event> = events
            .iter()
            .filter(|e| !matches!(e, Event::ObjectVersion(v) if v.archival))
            .cloned()
            .collect();
        let reference = project_all(&without).visible();
        let history = |rows: &BTreeMap<(String, String), BTreeMap<String, String>>| {
            rows.iter()
                .filter(|((t, _), _)| t == "object_versions" || t == "manifest")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(history(&state), history(&reference));
        // Every content, archival or not, is kept for the releases naming it.
        let contents: BTreeSet<String> = state
            .keys()
            .filter(|(t, _)| t == "object_contents")
            .map(|(_, k)| k.clone())
            .collect();
        for e in &events {
            if let Event::ObjectVersion(v) = e {
                let key = format!("{}|{}|{}|{:?}", v.collection_id, v.object_id, v.version_micros, v.content_sha256.to_vec());
                prop_assert!(contents.contains(&key), "{} missing", key);
            }
        }
    }
}
