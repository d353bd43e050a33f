//! What has already been published, rebuilt from the compacted objects topic at start, so ingest
//! keeps no private state that could drift from the log.

use std::collections::BTreeSet;

use hashbrown::HashMap;
use smallvec::SmallVec;

use schemas::{CollectionUpserted, Event};

mod replay;

pub use replay::watermarks;

/// One published version of one object: enough to tell "already known" from "re-issued".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownVersion {
    pub digest: [u8; 32],
    pub date_added: i64,
}

/// A collection's last published metadata, the newest `date_added` used in it, and the
/// versions published in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownCollection {
    pub metadata: Option<CollectionUpserted>,
    pub last_date_added: i64,
    /// Object id → (version in microseconds, what was published); objects have a few versions.
    /// hashbrown rather than std's map: borrowed-key inserts (`entry_ref`) and a faster default
    /// hasher, since ingest consults this for every object it reads. The first version is kept
    /// inline: most objects have one per collection, and a vector per object was an allocation
    /// of fresh memory for every object of a first import.
    versions: HashMap<String, SmallVec<[(i64, KnownVersion); 1]>>,
}

/// Now, or just after `last` when the clock has not moved past it; `last` becomes the result.
/// (A free function: `publish` holds a borrow of the versions map while it calls this.)
fn next_date_added(last: &mut i64, now_micros: i64) -> i64 {
    *last = now_micros.max(last.saturating_add(1));
    *last
}

/// What [`KnownCollection::publish`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// The same content is already published: nothing to do.
    Known,
    /// To be published with this `date_added`; `supersedes`: the `date_added` of different
    /// content published before under the same (object, version), which this corrects.
    Publish {
        date_added: i64,
        supersedes: Option<i64>,
    },
}

impl KnownCollection {
    pub fn version(&self, object_id: &str, version_micros: i64) -> Option<KnownVersion> {
        self.versions
            .get(object_id)?
            .iter()
            .find(|(v, _)| *v == version_micros)
            .map(|(_, known)| *known)
    }

    /// Takes a published version into account: for the same (object, version) the later
    /// `date_added` wins, which is also what compaction keeps.
    fn record(&mut self, object_id: &str, version_micros: i64, known: KnownVersion) {
        self.last_date_added = self.last_date_added.max(known.date_added);
        let versions = self.versions.entry_ref(object_id).or_default();
        match versions.iter_mut().find(|(v, _)| *v == version_micros) {
            Some((_, slot)) if known.date_added >= slot.date_added => *slot = known,
            Some(_) => {}
            None => versions.push((version_micros, known)),
        }
    }

    /// Decides whether (object, version) with this content is to be published, and if so
    /// records it as published with the next `date_added` (see [`Checkpoint::next_date_added`]).
    /// One lookup per object: an import calls this for every object of a bundle.
    pub fn publish(
        &mut self,
        object_id: &str,
        version_micros: i64,
        digest: [u8; 32],
        now_micros: i64,
    ) -> Publication {
        let versions = self.versions.entry_ref(object_id).or_default();
        let existing = versions.iter_mut().find(|(v, _)| *v == version_micros);
        let supersedes = match &existing {
            Some((_, known)) if known.digest == digest => return Publication::Known,
            Some((_, known)) => Some(known.date_added),
            None => None,
        };
        let date_added = next_date_added(&mut self.last_date_added, now_micros);
        let known = KnownVersion { digest, date_added };
        match existing {
            Some((_, slot)) => *slot = known,
            None => versions.push((version_micros, known)),
        }
        Publication::Publish {
            date_added,
            supersedes,
        }
    }

    /// [`Checkpoint::next_date_added`] for this collection.
    pub fn next_date_added(&mut self, now_micros: i64) -> i64 {
        next_date_added(&mut self.last_date_added, now_micros)
    }
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

/// The set of (collection, object, version) published, with content digests, collections and
/// complete releases.
#[derive(Debug, Default)]
pub struct Checkpoint {
    collections: HashMap<String, KnownCollection>,
    releases: HashMap<ReleaseId, ReleaseProgress>,
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
            Event::ObjectVersion(v) => self.collection_mut(&v.collection_id).record(
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

    pub fn version(
        &self,
        collection_id: &str,
        object_id: &str,
        version: i64,
    ) -> Option<KnownVersion> {
        self.collections
            .get(collection_id)?
            .version(object_id, version)
    }

    /// The collections in which some version of the object has been published, in id order:
    /// how a Workbench edit, whose new version names no collection, finds where it belongs.
    pub fn collections_of<'a>(&'a self, object_id: &'a str) -> impl Iterator<Item = &'a str> {
        let mut held: Vec<&str> = self
            .collections
            .iter()
            .filter(|(_, c)| c.versions.contains_key(object_id))
            .map(|(id, _)| id.as_str())
            .collect();
        held.sort_unstable();
        held.into_iter()
    }

    /// The collection's entry, created empty when it is new.
    pub fn collection_mut(&mut self, collection_id: &str) -> &mut KnownCollection {
        self.collections.entry_ref(collection_id).or_default()
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

    /// Whether any complete release of the collection has this label (whatever its timestamp):
    /// how a release listed without a timestamp is recognised.
    pub fn release_labelled(&self, collection_id: &str, label: &str) -> bool {
        self.releases.keys().any(|id| {
            id.collection_id == collection_id && id.label == label && self.release_complete(id)
        })
    }

    /// Reserves the `date_added` of the next version of a collection: now, or just after the
    /// last one if the clock has not moved on (or went back), so that `date_added` is strictly
    /// increasing per collection and a client paging by `added_after` can never split a tie.
    pub fn next_date_added(&mut self, collection_id: &str, now_micros: i64) -> i64 {
        self.collection_mut(collection_id)
            .next_date_added(now_micros)
    }

    pub fn size(&self) -> CheckpointSize {
        CheckpointSize {
            collections: self.collections.len(),
            versions: self
                .collections
                .values()
                .flat_map(|c| c.versions.values())
                .map(|versions| versions.len())
                .sum(),
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
    fn publish_skips_the_same_content_corrects_other_content_and_keeps_date_added_increasing() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.observe(&version("x--1", 5, 100, 1));
        let known = checkpoint.collection_mut("c");
        assert_eq!(known.publish("x--1", 5, [1; 32], 50), Publication::Known);
        // The clock is behind the last date_added: the next one still follows it.
        assert_eq!(
            known.publish("x--1", 5, [2; 32], 50),
            Publication::Publish {
                date_added: 101,
                supersedes: Some(100)
            }
        );
        assert_eq!(
            known.publish("x--2", 5, [2; 32], 500),
            Publication::Publish {
                date_added: 500,
                supersedes: None
            }
        );
        assert_eq!(known.publish("x--2", 5, [2; 32], 600), Publication::Known);
        assert_eq!(
            checkpoint.version("c", "x--1", 5),
            Some(KnownVersion {
                digest: [2; 32],
                date_added: 101
            })
        );
        assert_eq!(checkpoint.collection("c").unwrap().last_date_added, 500);
        assert_eq!(checkpoint.size().versions, 2);
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
        let held: Vec<&str> = checkpoint.collections_of("x--1").collect();
        assert_eq!(held, ["c", "d"]);
        assert_eq!(checkpoint.collections_of("x--2").count(), 0);
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
    fn a_release_is_known_by_label_only_once_complete_and_only_in_its_collection() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.observe(&chunk(0, 2));
        assert!(!checkpoint.release_labelled("c", "1.0"));
        checkpoint.observe(&chunk(1, 2));
        assert!(checkpoint.release_labelled("c", "1.0"));
        assert!(!checkpoint.release_labelled("c", "1.1"));
        assert!(!checkpoint.release_labelled("d", "1.0"));
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
