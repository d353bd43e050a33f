//! What has already been published, rebuilt from the compacted objects topic at start, so ingest
//! keeps no private state that could drift from the log.

use std::collections::BTreeSet;

use hashbrown::HashMap;
use smallvec::SmallVec;

use schemas::{CollectionUpserted, Event};

mod replay;

pub use replay::watermarks;

/// The content a version is served with: enough to tell "already known" from "re-issued".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownVersion {
    pub digest: [u8; 32],
    pub date_added: i64,
}

/// One content published for one (object, version). A version has several when MITRE re-issued
/// it: every content stays known, so a re-import of any release recognises its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KnownContent {
    digest: [u8; 32],
    /// [`UNSEEN`] while only a release named the content and its event was not observed.
    date_added: i64,
    /// Published as an older release's content: never the served one.
    archival: bool,
    /// The newest release timestamp of the releases naming this content, if any does.
    released_at: Option<i64>,
}

/// `date_added` of a content a release names but whose event was not observed.
const UNSEEN: i64 = i64::MIN;

/// A collection's last published metadata, the newest `date_added` used in it, and the
/// contents published in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownCollection {
    pub metadata: Option<CollectionUpserted>,
    pub last_date_added: i64,
    /// Object id → (version in microseconds, one content published for it); objects have a few.
    /// hashbrown rather than std's map: borrowed-key inserts (`entry_ref`) and a faster default
    /// hasher, since ingest consults this for every object it reads. The first entry is kept
    /// inline: most objects have one version with one content per collection, and a vector per
    /// object was an allocation of fresh memory for every object of a first import.
    versions: HashMap<String, SmallVec<[(i64, KnownContent); 1]>>,
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
    /// To be published with this `date_added`. `supersedes`: the `date_added` of the served
    /// content of the same (object, version), which this corrects. `archival`: content of an
    /// older release than the one that brought the served content, kept for that release only.
    Publish {
        date_added: i64,
        supersedes: Option<i64>,
        archival: bool,
    },
}

/// The content a version is served with: the newest non-archival one whose event was seen.
fn served<'a>(
    contents: impl Iterator<Item = &'a (i64, KnownContent)>,
    version_micros: i64,
) -> Option<&'a KnownContent> {
    contents
        .filter(|(v, c)| *v == version_micros && !c.archival && c.date_added != UNSEEN)
        .map(|(_, c)| c)
        .max_by_key(|c| c.date_added)
}

impl KnownCollection {
    /// The content (object, version) is served with, if any was published.
    pub fn version(&self, object_id: &str, version_micros: i64) -> Option<KnownVersion> {
        served(self.versions.get(object_id)?.iter(), version_micros).map(|c| KnownVersion {
            digest: c.digest,
            date_added: c.date_added,
        })
    }

    /// The entry of one content, created as unseen when new.
    fn content_mut(
        &mut self,
        object_id: &str,
        version_micros: i64,
        digest: [u8; 32],
    ) -> &mut KnownContent {
        let contents = self.versions.entry_ref(object_id).or_default();
        let i = match contents
            .iter()
            .position(|(v, c)| *v == version_micros && c.digest == digest)
        {
            Some(i) => i,
            None => {
                contents.push((
                    version_micros,
                    KnownContent {
                        digest,
                        date_added: UNSEEN,
                        archival: true,
                        released_at: None,
                    },
                ));
                contents.len() - 1
            }
        };
        &mut contents[i].1
    }

    /// Takes a published content into account. The same content published twice (which the
    /// planner avoids) keeps its later `date_added` and is archival only if both were.
    fn record(
        &mut self,
        object_id: &str,
        version_micros: i64,
        digest: [u8; 32],
        date_added: i64,
        archival: bool,
    ) {
        self.last_date_added = self.last_date_added.max(date_added);
        let slot = self.content_mut(object_id, version_micros, digest);
        slot.archival = if slot.date_added == UNSEEN {
            archival
        } else {
            slot.archival && archival
        };
        slot.date_added = slot.date_added.max(date_added);
    }

    /// Takes a release naming a content into account.
    fn released(
        &mut self,
        object_id: &str,
        version_micros: i64,
        digest: [u8; 32],
        release_timestamp: i64,
    ) {
        let slot = self.content_mut(object_id, version_micros, digest);
        slot.released_at = slot.released_at.max(Some(release_timestamp));
    }

    /// Decides whether (object, version) with this content, read from the release at
    /// `release_timestamp` (`None`: not from a release), is to be published, and if so records
    /// it as published with the next `date_added` (see [`KnownCollection::next_date_added`]).
    ///
    /// Content only moves forward: the served content is replaced (a correction) only by
    /// content from outside releases, or from a release newer than every release naming the
    /// served content. New content from an older release is that release's own, published as
    /// archival; content already published is known, unless a newer release brings it back.
    /// So re-importing known files publishes nothing, in any order. One lookup per object: an
    /// import calls this for every object of a bundle.
    pub fn publish(
        &mut self,
        object_id: &str,
        version_micros: i64,
        digest: [u8; 32],
        release_timestamp: Option<i64>,
        now_micros: i64,
    ) -> Publication {
        let contents = self.versions.entry_ref(object_id).or_default();
        let seen = contents
            .iter()
            .any(|(v, c)| *v == version_micros && c.digest == digest && c.date_added != UNSEEN);
        let current = served(contents.iter(), version_micros);
        // Whether this release is newer than every release that named the served content
        // (`None`: not comparable, because either side is not from a release).
        let newer = match (release_timestamp, current.and_then(|c| c.released_at)) {
            (Some(ours), Some(theirs)) => Some(ours > theirs),
            _ => None,
        };
        let (supersedes, archival) = match current {
            Some(c) if c.digest == digest => return Publication::Known,
            Some(c) if seen => match newer {
                Some(true) => (Some(c.date_added), false),
                _ => return Publication::Known,
            },
            Some(c) => match newer {
                Some(false) => (None, true),
                _ => (Some(c.date_added), false),
            },
            None if seen => return Publication::Known,
            None => (None, false),
        };
        let date_added = next_date_added(&mut self.last_date_added, now_micros);
        self.record(object_id, version_micros, digest, date_added, archival);
        Publication::Publish {
            date_added,
            supersedes,
            archival,
        }
    }

    /// Reserves the `date_added` of the collection's next event: now, or just after the
    /// last one if the clock has not moved on (or went back), so that `date_added` is strictly
    /// increasing per collection and a client paging by `added_after` can never split a tie.
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
                v.content_sha256,
                v.date_added,
                v.archival,
            ),
            Event::Release(r) => {
                let known = self.collection_mut(&r.collection_id);
                for m in &r.members {
                    if let Some(digest) = m.content_sha256 {
                        known.released(&m.object_id, m.version_micros, digest, r.release_timestamp);
                    }
                }
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

    pub fn size(&self) -> CheckpointSize {
        CheckpointSize {
            collections: self.collections.len(),
            versions: self
                .collections
                .values()
                .flat_map(|c| c.versions.values())
                // Distinct versions: a re-issued version has several contents.
                .map(|contents| {
                    contents
                        .iter()
                        .enumerate()
                        .filter(|(i, (v, _))| !contents[..*i].iter().any(|(w, _)| w == v))
                        .count()
                })
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
            archival: false,
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
        assert_eq!(
            known.publish("x--1", 5, [1; 32], None, 50),
            Publication::Known
        );
        // The clock is behind the last date_added: the next one still follows it.
        assert_eq!(
            known.publish("x--1", 5, [2; 32], None, 50),
            Publication::Publish {
                date_added: 101,
                supersedes: Some(100),
                archival: false,
            }
        );
        assert_eq!(
            known.publish("x--2", 5, [2; 32], None, 500),
            Publication::Publish {
                date_added: 500,
                supersedes: None,
                archival: false,
            }
        );
        assert_eq!(
            known.publish("x--2", 5, [2; 32], None, 600),
            Publication::Known
        );
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
        assert_eq!(checkpoint.collection_mut("c").next_date_added(500), 1_001);
        assert_eq!(checkpoint.collection_mut("c").next_date_added(500), 1_002);
        assert_eq!(checkpoint.collection_mut("c").next_date_added(5_000), 5_000);
        assert_eq!(checkpoint.collection_mut("other").next_date_added(3), 3);
    }
}
