//! What has already been published, rebuilt from the compacted objects topic at start, so ingest
//! keeps no private state that could drift from the log.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};

use schemas::{CollectionUpserted, Event};

/// One published version of one object: enough to tell "already known" from "re-issued".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownVersion {
    pub digest: [u8; 32],
    pub date_added: i64,
}

/// A collection's last published metadata and the newest `date_added` used in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownCollection {
    pub metadata: Option<CollectionUpserted>,
    pub last_date_added: i64,
}

/// A release's identity: a collection version is keyed by its timestamp, not only its label,
/// because two versions of a collection may carry the same label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseId {
    pub collection_id: String,
    pub release_timestamp: i64,
    pub label: String,
}

#[derive(Debug, Clone, Default)]
struct ReleaseProgress {
    chunk_count: i32,
    seen: BTreeSet<i32>,
}

/// Looks up a `(object id, version)` key without making an owned copy of the id: hashes and
/// compares exactly as the tuple does. (hashbrown rather than std's map for this, and for its
/// faster default hasher: ingest consults the checkpoint for every object it reads.)
#[derive(Clone, Copy)]
struct VersionKey<'a>(&'a str, i64);

impl Hash for VersionKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // A tuple hashes its fields in order; `str` and `String` hash alike.
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<(String, i64)> for VersionKey<'_> {
    fn equivalent(&self, key: &(String, i64)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// The set of (collection, object, version) published, with content digests, collections and
/// complete releases.
#[derive(Debug, Default)]
pub struct Checkpoint {
    versions: HashMap<String, HashMap<(String, i64), KnownVersion>>,
    collections: HashMap<String, KnownCollection>,
    releases: HashMap<ReleaseId, ReleaseProgress>,
    /// Object id → the collections holding some version of it: how a Workbench edit, whose new
    /// version names no collection, finds the collections it belongs to.
    object_collections: HashMap<String, BTreeSet<String>>,
}

/// Counts for logs: how much the checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSize {
    pub collections: usize,
    pub versions: usize,
    pub releases: usize,
}

impl Checkpoint {
    /// Takes an event into account, as read from the topic or as just published.
    ///
    /// For the same (collection, object, version) the event with the later `date_added` wins,
    /// which is also what compaction keeps: the checkpoint agrees with the topic whatever order
    /// the events are observed in.
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::Collection(c) => {
                self.collections
                    .entry(c.collection_id.clone())
                    .or_default()
                    .metadata = Some(c.clone());
            }
            Event::ObjectVersion(v) => self.record_version(
                &v.collection_id,
                &v.object_id,
                v.version_micros,
                KnownVersion {
                    digest: v.content_sha256,
                    date_added: v.date_added,
                },
            ),
            Event::Release(r) => {
                let progress = self
                    .releases
                    .entry(ReleaseId {
                        collection_id: r.collection_id.clone(),
                        release_timestamp: r.release_timestamp,
                        label: r.label.clone(),
                    })
                    .or_default();
                progress.chunk_count = r.chunk_count;
                progress.seen.insert(r.chunk_index);
            }
        }
    }

    /// Takes a published version into account: what [`Checkpoint::observe`] does with an
    /// `ObjectVersionAdded`, for callers that have its fields but not the event.
    pub fn record_version(
        &mut self,
        collection_id: &str,
        object_id: &str,
        version_micros: i64,
        known: KnownVersion,
    ) {
        let collection = self.collections.entry_ref(collection_id).or_default();
        collection.last_date_added = collection.last_date_added.max(known.date_added);
        let holders = self.object_collections.entry_ref(object_id).or_default();
        if !holders.contains(collection_id) {
            holders.insert(collection_id.to_owned());
        }
        let versions = self.versions.entry_ref(collection_id).or_default();
        match versions.get_mut(&VersionKey(object_id, version_micros)) {
            Some(slot) if known.date_added >= slot.date_added => *slot = known,
            Some(_) => {}
            None => {
                versions.insert((object_id.to_owned(), version_micros), known);
            }
        }
    }

    pub fn version(
        &self,
        collection_id: &str,
        object_id: &str,
        version: i64,
    ) -> Option<KnownVersion> {
        self.versions
            .get(collection_id)?
            .get(&VersionKey(object_id, version))
            .copied()
    }

    /// The collections in which some version of the object has been published.
    pub fn collections_of(&self, object_id: &str) -> Option<&BTreeSet<String>> {
        self.object_collections.get(object_id)
    }

    pub fn collection(&self, collection_id: &str) -> Option<&KnownCollection> {
        self.collections.get(collection_id)
    }

    /// A release is known once every one of its chunks has been published.
    pub fn release_complete(&self, id: &ReleaseId) -> bool {
        self.releases.get(id).is_some_and(|p| {
            p.chunk_count > 0
                && p.seen.len() == p.chunk_count as usize
                && p.seen.iter().all(|i| (0..p.chunk_count).contains(i))
        })
    }

    /// Whether any complete release of the collection has this timestamp (whatever its label):
    /// the Workbench identifies a collection version by id and `modified`.
    pub fn release_at(&self, collection_id: &str, release_timestamp: i64) -> bool {
        self.releases.keys().any(|id| {
            id.collection_id == collection_id
                && id.release_timestamp == release_timestamp
                && self.release_complete(id)
        })
    }

    /// Reserves the `date_added` of the next version of a collection: now, or just after the
    /// last one if the clock has not moved on (or went back), so that `date_added` is strictly
    /// increasing per collection and a client paging by `added_after` can never split a tie.
    pub fn next_date_added(&mut self, collection_id: &str, now_micros: i64) -> i64 {
        let collection = self.collections.entry_ref(collection_id).or_default();
        let next = now_micros.max(collection.last_date_added.saturating_add(1));
        collection.last_date_added = next;
        next
    }

    pub fn size(&self) -> CheckpointSize {
        CheckpointSize {
            collections: self.collections.len(),
            versions: self.versions.values().map(HashMap::len).sum(),
            releases: self
                .releases
                .keys()
                .filter(|id| self.release_complete(id))
                .count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{ObjectVersionAdded, ReleasePublished, Source, SourceKind};

    fn source() -> Source {
        Source {
            kind: SourceKind::Bundle,
            uri: "test.json".into(),
            sha256: None,
            position: None,
        }
    }

    fn version(object: &str, version: i64, date_added: i64, digest: u8) -> Event {
        Event::ObjectVersion(ObjectVersionAdded {
            collection_id: "c".into(),
            object_id: object.into(),
            stix_type: "x".into(),
            spec_version: "2.1".into(),
            version: version.to_string(),
            version_micros: version,
            date_added,
            content_sha256: [digest; 32],
            object_json: "{}".into(),
            source: source(),
            ingest_run_id: "run".into(),
            correction: false,
            supersedes_date_added: None,
        })
    }

    fn chunk(index: i32, count: i32) -> Event {
        Event::Release(ReleasePublished {
            collection_id: "c".into(),
            label: "1.0".into(),
            release_timestamp: 7,
            release_version: "7".into(),
            chunk_index: index,
            chunk_count: count,
            member_count: 0,
            members: vec![],
            source: source(),
            ingest_run_id: "run".into(),
            date_added: 0,
        })
    }

    #[test]
    fn the_later_date_added_wins_in_any_order() {
        let older = version("x--1", 5, 10, 1);
        let newer = version("x--1", 5, 20, 2);
        for order in [[&older, &newer], [&newer, &older]] {
            let mut checkpoint = Checkpoint::default();
            for e in order {
                checkpoint.observe(e);
            }
            let known = checkpoint.version("c", "x--1", 5).unwrap();
            assert_eq!(known.digest, [2; 32]);
            assert_eq!(known.date_added, 20);
        }
    }

    #[test]
    fn the_collections_of_an_object_are_those_holding_any_of_its_versions() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.observe(&version("x--1", 5, 10, 1));
        checkpoint.observe(&version("x--1", 6, 11, 1));
        let Event::ObjectVersion(mut elsewhere) = version("x--1", 5, 12, 1) else {
            unreachable!()
        };
        elsewhere.collection_id = "d".into();
        checkpoint.observe(&Event::ObjectVersion(elsewhere));
        let held: Vec<&str> = checkpoint
            .collections_of("x--1")
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(held, ["c", "d"]);
        assert!(checkpoint.collections_of("x--2").is_none());
    }

    #[test]
    fn a_release_is_complete_only_with_all_its_chunks() {
        let id = ReleaseId {
            collection_id: "c".into(),
            release_timestamp: 7,
            label: "1.0".into(),
        };
        let mut checkpoint = Checkpoint::default();
        checkpoint.observe(&chunk(0, 3));
        checkpoint.observe(&chunk(2, 3));
        assert!(!checkpoint.release_complete(&id));
        assert!(!checkpoint.release_at("c", 7));
        checkpoint.observe(&chunk(1, 3));
        assert!(checkpoint.release_complete(&id));
        assert!(checkpoint.release_at("c", 7));
        assert_eq!(checkpoint.size().releases, 1);
    }

    #[test]
    fn date_added_is_strictly_increasing_even_when_the_clock_stalls_or_goes_back() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.observe(&version("x--1", 1, 1_000, 1));
        assert_eq!(checkpoint.next_date_added("c", 500), 1_001);
        assert_eq!(checkpoint.next_date_added("c", 500), 1_002);
        assert_eq!(checkpoint.next_date_added("c", 5_000), 5_000);
        assert_eq!(checkpoint.next_date_added("other", 3), 3);
    }
}
