//! One collection at one revision, indexed in memory, and the views the three kinds of root see.
//!
//! Object JSON is held once per collection as `Bytes`; the default, pinned and history views of a
//! collection differ only in a membership bit set over the same versions, so pinned roots cost
//! one bit per version, not a copy of the objects. A version MITRE re-issued with other content
//! has one entry per content a release shipped: the history view holds the newest content, each
//! release view the content that release shipped. A *lean* snapshot (over the memory bound,
//! see [`crate::refresh`]) holds the same index without the object JSON, which listings fetch
//! from the store for the versions they send.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use schemas::SpecVersion;

use crate::cursor::Position;
use crate::media::{STIX_20, STIX_21};
use crate::store::{CollectionData, CollectionMeta, ContentKey, Generation, Store};

/// One object of a collection; its versions are `versions[first..first + count]`, oldest first.
#[derive(Debug, Clone)]
pub struct ObjectEntry {
    pub id: Box<str>,
    pub stix_type: Box<str>,
    pub first: u32,
    pub count: u32,
}

/// One version of one object.
#[derive(Debug, Clone)]
pub struct VersionEntry {
    /// Index into [`Snapshot::objects`].
    pub object: u32,
    pub version: i64,
    pub version_text: Box<str>,
    pub spec: SpecVersion,
    pub date_added: i64,
    /// Empty in a lean snapshot.
    pub json: Bytes,
    /// `None`: the newest content of the version. `Some`: another content that a release
    /// shipped (see [`crate::store::VersionRow::content`]).
    pub content: Option<Box<[u8; 32]>>,
}

/// A fixed-size set of version indices.
#[derive(Debug, Clone, Default)]
pub struct BitSet(Vec<u64>);

impl BitSet {
    pub fn with_len(len: usize) -> Self {
        BitSet(vec![0; len.div_ceil(64)])
    }
    pub fn insert(&mut self, i: u32) {
        let i = i as usize;
        if let Some(word) = self.0.get_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
    }
    pub fn contains(&self, i: u32) -> bool {
        let i = i as usize;
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// A complete release: its identity and members.
#[derive(Debug, Clone)]
pub struct Release {
    pub timestamp: i64,
    pub label: String,
    pub members: BitSet,
    /// The spec versions of its members ([`spec_bit`]).
    pub specs: u8,
}

/// The bit of a spec version in a set of them.
fn spec_bit(spec: SpecVersion) -> u8 {
    match spec {
        SpecVersion::V2_0 => 1,
        SpecVersion::V2_1 => 2,
    }
}

/// A collection at one revision.
#[derive(Debug)]
pub struct Snapshot {
    pub meta: CollectionMeta,
    pub revision: i64,
    /// Sorted by id.
    pub objects: Vec<ObjectEntry>,
    /// Grouped by object (in `objects` order), oldest version first.
    pub versions: Vec<VersionEntry>,
    /// Complete releases, newest `release_timestamp` first (label breaks ties).
    pub releases: Vec<Release>,
    /// The history view's members when some entries are other contents for releases; `None`
    /// when every entry is the newest content of its version.
    pub history: Option<BitSet>,
    /// The spec versions of the history view ([`spec_bit`]).
    pub history_specs: u8,
    /// Approximate heap size (index and held JSON), for the memory bound and metrics.
    pub approx_bytes: usize,
    /// Where the object JSON comes from.
    pub content: Content,
}

/// Where the object JSON of a snapshot's versions comes from.
pub enum Content {
    /// Held in each [`VersionEntry::json`].
    Held,
    /// Not held (the collection did not fit in the memory bound): fetched from the store, from
    /// the generation the index was loaded from, for each response that sends objects.
    Lean {
        store: Arc<dyn Store>,
        generation: Generation,
    },
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Held => f.write_str("Held"),
            Content::Lean { generation, .. } => f
                .debug_struct("Lean")
                .field("generation", generation)
                .finish_non_exhaustive(),
        }
    }
}

/// Which versions of a collection a root serves.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub snapshot: &'a Snapshot,
    /// `None`: every version (history root, or default root of a collection without releases).
    pub members: Option<&'a BitSet>,
    /// Stable name of the view for ETags and cursor binding.
    pub key: ViewKey<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewKey<'a> {
    All,
    Release { timestamp: i64, label: &'a str },
}

impl Snapshot {
    /// Indexes a collection's rows. Duplicate (object, version) rows keep the later date_added,
    /// as the projector does for corrected content.
    pub fn build(data: CollectionData) -> Snapshot {
        let CollectionData {
            meta,
            revision,
            mut versions,
            releases,
        } = data;
        // Newest contents before other contents of the same version, each by date_added.
        versions.sort_by(|a, b| {
            (a.object_id.as_str(), a.version, a.content, a.date_added).cmp(&(
                b.object_id.as_str(),
                b.version,
                b.content,
                b.date_added,
            ))
        });
        // After the sort, the last of equal (object, version, content) rows has the largest
        // date_added: for the newest content, the latest correction, as the projector keeps it.
        versions.dedup_by(|later, earlier| {
            if later.object_id == earlier.object_id
                && later.version == earlier.version
                && later.content == earlier.content
            {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        let mut objects: Vec<ObjectEntry> = Vec::new();
        let mut entries = Vec::with_capacity(versions.len());
        let mut approx_bytes = 0usize;
        for row in versions {
            let same = objects.last().is_some_and(|o| *o.id == *row.object_id);
            if !same {
                objects.push(ObjectEntry {
                    id: row.object_id.clone().into_boxed_str(),
                    stix_type: row.stix_type.clone().into_boxed_str(),
                    first: entries.len() as u32,
                    count: 0,
                });
                approx_bytes += row.object_id.len() + row.stix_type.len() + 48;
            }
            let object = (objects.len() - 1) as u32;
            if let Some(o) = objects.last_mut() {
                o.count += 1;
            }
            let spec = SpecVersion::parse(&row.spec_version).unwrap_or_else(|| {
                tracing::warn!(object = %row.object_id, spec_version = %row.spec_version,
                    "unknown spec_version, serving as 2.1");
                SpecVersion::V2_1
            });
            approx_bytes += row.object_json.len() + row.version_text.len() + 64;
            entries.push(VersionEntry {
                object,
                version: row.version,
                version_text: row.version_text.into_boxed_str(),
                spec,
                date_added: row.date_added,
                json: row.object_json,
                content: row.content.map(Box::new),
            });
        }
        let history = entries.iter().any(|e| e.content.is_some()).then(|| {
            let mut members = BitSet::with_len(entries.len());
            for (i, e) in entries.iter().enumerate() {
                if e.content.is_none() {
                    members.insert(i as u32);
                }
            }
            members
        });
        let history_specs = entries
            .iter()
            .filter(|e| e.content.is_none())
            .fold(0, |specs, e| specs | spec_bit(e.spec));
        let mut snapshot = Snapshot {
            meta,
            revision,
            objects,
            versions: entries,
            releases: Vec::new(),
            history,
            history_specs,
            approx_bytes,
            content: Content::Held,
        };
        let mut built: Vec<Release> = releases
            .into_iter()
            .filter(|r| r.complete)
            .map(|r| {
                let mut members = BitSet::with_len(snapshot.versions.len());
                let mut specs = 0;
                let mut missing = 0;
                for (object_id, version, content) in &r.members {
                    match snapshot.find_content(object_id, *version, content.as_ref()) {
                        Some(i) => {
                            members.insert(i);
                            specs |= spec_bit(snapshot.versions[i as usize].spec);
                        }
                        None => missing += 1,
                    }
                }
                if missing > 0 {
                    tracing::warn!(collection = %snapshot.meta.id, label = %r.label, missing,
                        "release members without a stored version are not served");
                }
                Release {
                    timestamp: r.release_timestamp,
                    label: r.label,
                    members,
                    specs,
                }
            })
            .collect();
        built.sort_by(|a, b| {
            b.timestamp
                .cmp(&a.timestamp)
                .then_with(|| a.label.cmp(&b.label))
        });
        snapshot.approx_bytes += built.len() * snapshot.versions.len() / 8;
        snapshot.releases = built;
        snapshot
    }

    /// Whether the object JSON is fetched per response rather than held.
    pub fn is_lean(&self) -> bool {
        matches!(self.content, Content::Lean { .. })
    }

    /// The key of an entry's content in the store.
    pub fn key(&self, version: u32) -> ContentKey<'_> {
        let v = &self.versions[version as usize];
        ContentKey {
            object_id: &self.objects[v.object as usize].id,
            version: v.version,
            content: v.content.as_deref(),
        }
    }

    /// The index of an object by id.
    pub fn find_object(&self, id: &str) -> Option<u32> {
        self.objects
            .binary_search_by(|o| (*o.id).cmp(id))
            .ok()
            .map(|i| i as u32)
    }

    /// The index of one version of one object: its newest content.
    pub fn find_version(&self, id: &str, version: i64) -> Option<u32> {
        self.find_content(id, version, None)
    }

    /// The index of one content of one version: the entry of that content when it is not the
    /// newest, else (or for `None`) the newest content's entry. An object holds a few entries.
    pub fn find_content(&self, id: &str, version: i64, content: Option<&[u8; 32]>) -> Option<u32> {
        let o = &self.objects[self.find_object(id)? as usize];
        let range = o.first..o.first + o.count;
        let entry = |i: &u32| &self.versions[*i as usize];
        content
            .and_then(|c| {
                range
                    .clone()
                    .find(|i| entry(i).version == version && entry(i).content.as_deref() == Some(c))
            })
            .or_else(|| {
                range
                    .clone()
                    .find(|i| entry(i).version == version && entry(i).content.is_none())
            })
    }

    /// The newest complete release with this label (two releases may share a label).
    pub fn release(&self, label: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.label == label)
    }

    /// Every version with its newest content, as the history root sees it.
    pub fn history_view(&self) -> View<'_> {
        View {
            snapshot: self,
            members: self.history.as_ref(),
            key: ViewKey::All,
        }
    }

    /// One release's members.
    pub fn release_view<'a>(&'a self, release: &'a Release) -> View<'a> {
        View {
            snapshot: self,
            members: Some(&release.members),
            key: ViewKey::Release {
                timestamp: release.timestamp,
                label: &release.label,
            },
        }
    }

    /// The position of a version in the listing order (date_added, object id, version).
    pub fn position(&self, version: u32) -> Position {
        let v = &self.versions[version as usize];
        Position {
            date_added: v.date_added,
            object_id: self.objects[v.object as usize].id.to_string(),
            version: v.version,
        }
    }

    /// Compares a version with a cursor position without allocating.
    pub fn cmp_position(&self, version: u32, p: &Position) -> std::cmp::Ordering {
        let v = &self.versions[version as usize];
        v.date_added
            .cmp(&p.date_added)
            .then_with(|| (*self.objects[v.object as usize].id).cmp(p.object_id.as_str()))
            .then_with(|| v.version.cmp(&p.version))
    }
}

impl View<'_> {
    pub fn contains(&self, version: u32) -> bool {
        self.members.is_none_or(|m| m.contains(version))
    }

    /// Whether the object has at least one version in this view.
    pub fn has_object(&self, object: u32) -> bool {
        let o = &self.snapshot.objects[object as usize];
        (o.first..o.first + o.count).any(|v| self.contains(v))
    }
}

/// Which view of a snapshot a root sees, without borrowing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewSel {
    All,
    /// Index into [`Snapshot::releases`].
    Release(usize),
}

impl Snapshot {
    /// The view `sel` names; an out-of-range release index (impossible by construction) is empty.
    pub fn view(&self, sel: ViewSel) -> View<'_> {
        match sel {
            ViewSel::All => self.history_view(),
            ViewSel::Release(i) => match self.releases.get(i) {
                Some(r) => self.release_view(r),
                None => View {
                    snapshot: self,
                    members: Some(&EMPTY),
                    key: ViewKey::All,
                },
            },
        }
    }

    /// The default root's view selector: the latest complete release by release timestamp
    /// (never by label text), or every version of a collection without releases. `None` for a
    /// collection delivered as releases before its first one is complete: a client must never
    /// take a half-imported collection for a whole one.
    pub fn default_sel(&self) -> Option<ViewSel> {
        match (self.releases.is_empty(), self.meta.released) {
            (false, _) => Some(ViewSel::Release(0)),
            (true, false) => Some(ViewSel::All),
            (true, true) => None,
        }
    }

    /// The media types of the objects the view `sel` serves, 2.0 before 2.1; STIX 2.1 alone
    /// for an empty view, as a collection without objects announces what it would serve.
    pub fn media_types(&self, sel: ViewSel) -> Vec<String> {
        let specs = match sel {
            ViewSel::All => self.history_specs,
            ViewSel::Release(i) => self.releases.get(i).map_or(0, |r| r.specs),
        };
        let types: Vec<String> = [(SpecVersion::V2_0, STIX_20), (SpecVersion::V2_1, STIX_21)]
            .into_iter()
            .filter(|(s, _)| specs & spec_bit(*s) != 0)
            .map(|(_, media_type)| media_type.to_owned())
            .collect();
        if types.is_empty() {
            vec![STIX_21.to_owned()]
        } else {
            types
        }
    }

    /// The pinned root's view selector for `label`, if this collection has that release.
    pub fn release_sel(&self, label: &str) -> Option<ViewSel> {
        self.releases
            .iter()
            .position(|r| r.label == label)
            .map(ViewSel::Release)
    }
}

static EMPTY: BitSet = BitSet(Vec::new());

impl ViewKey<'_> {
    /// A stable text for hashing.
    pub fn text(&self) -> String {
        match self {
            ViewKey::All => "all".to_owned(),
            ViewKey::Release { timestamp, label } => format!("release:{timestamp}:{label}"),
        }
    }
}

/// RFC 3339 with exactly six fraction digits: `date_added` round-trips through `added_after`.
pub fn format_micros(micros: i64) -> String {
    let text = schemas::Timestamp::from_micros(micros).to_string();
    // Display writes `.mmmZ` for whole milliseconds and `.uuuuuuZ` otherwise.
    match text.strip_suffix('Z') {
        Some(body) if body.rsplit('.').next().is_some_and(|f| f.len() == 3) => {
            format!("{body}000Z")
        }
        _ => text,
    }
}

/// Every loaded collection, by id, as of one refresh.
#[derive(Debug, Default)]
pub struct Catalog {
    /// The generation the collections were loaded from.
    pub generation: Option<crate::store::Generation>,
    pub collections: BTreeMap<String, Arc<Snapshot>>,
    /// False until the first successful load from the store.
    pub loaded: bool,
}

impl Catalog {
    /// Release labels across collections, newest release first, each once.
    pub fn labels(&self) -> Vec<String> {
        let mut labels: Vec<(i64, &str)> = Vec::new();
        for s in self.collections.values() {
            for r in &s.releases {
                match labels.iter_mut().find(|(_, l)| *l == r.label) {
                    Some(entry) => entry.0 = entry.0.max(r.timestamp),
                    None => labels.push((r.timestamp, &r.label)),
                }
            }
        }
        labels.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        labels.into_iter().map(|(_, l)| l.to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ReleaseRow, VersionRow};

    fn row(id: &str, version: i64, date_added: i64) -> VersionRow {
        VersionRow {
            object_id: id.into(),
            version,
            version_text: version.to_string(),
            stix_type: "indicator".into(),
            spec_version: "2.1".into(),
            date_added,
            object_json: Bytes::from(format!(
                "{{\"id\":\"{id}\",\"v\":{version},\"d\":{date_added}}}"
            )),
            content: None,
        }
    }

    #[test]
    fn dates_have_six_fraction_digits() {
        assert_eq!(
            format_micros(1_735_689_600_123_000),
            "2025-01-01T00:00:00.123000Z"
        );
        assert_eq!(
            format_micros(1_735_689_600_123_456),
            "2025-01-01T00:00:00.123456Z"
        );
    }

    #[test]
    fn duplicate_versions_keep_the_later_date_added() {
        let s = Snapshot::build(CollectionData {
            versions: vec![
                row("a", 1, 5),
                row("a", 1, 9),
                row("a", 1, 7),
                row("b", 2, 1),
            ],
            ..Default::default()
        });
        assert_eq!(s.versions.len(), 2);
        assert_eq!(s.versions[0].date_added, 9);
    }

    #[test]
    fn latest_release_is_by_timestamp_not_label_text() {
        let rel = |ts, label: &str| ReleaseRow {
            release_timestamp: ts,
            label: label.into(),
            complete: true,
            members: vec![("a".into(), 1, None)],
        };
        let mut incomplete = rel(100, "99.0");
        incomplete.complete = false;
        let s = Snapshot::build(CollectionData {
            versions: vec![row("a", 1, 1)],
            releases: vec![rel(10, "9.0"), rel(20, "19.1"), incomplete],
            ..Default::default()
        });
        assert_eq!(s.default_sel(), Some(ViewSel::Release(0)));
        assert_eq!(s.releases[0].label, "19.1");
        assert!(
            s.release("99.0").is_none(),
            "incomplete releases are never served"
        );
    }

    #[test]
    fn a_shared_label_resolves_to_the_newer_release() {
        let s = Snapshot::build(CollectionData {
            versions: vec![row("a", 1, 1), row("a", 2, 2)],
            releases: vec![
                ReleaseRow {
                    release_timestamp: 1,
                    label: "x".into(),
                    complete: true,
                    members: vec![("a".into(), 1, None)],
                },
                ReleaseRow {
                    release_timestamp: 2,
                    label: "x".into(),
                    complete: true,
                    members: vec![("a".into(), 2, None)],
                },
            ],
            ..Default::default()
        });
        let r = s.release("x").unwrap();
        assert_eq!(r.timestamp, 2);
        assert!(r.members.contains(1) && !r.members.contains(0));
    }

    fn content(id: &str, version: i64, date_added: i64, digest: u8) -> VersionRow {
        VersionRow {
            content: Some([digest; 32]),
            ..row(id, version, date_added)
        }
    }

    #[test]
    fn each_release_serves_the_content_it_shipped_and_history_the_newest() {
        let release = |ts, label: &str, digest: Option<u8>| ReleaseRow {
            release_timestamp: ts,
            label: label.into(),
            complete: true,
            members: vec![("a".into(), 1, digest.map(|d| [d; 32]))],
        };
        let s = Snapshot::build(CollectionData {
            // The newest content (date_added 5), and the older release's (archival, later
            // date_added 9: imported after the newer release).
            versions: vec![row("a", 1, 5), content("a", 1, 9, 7)],
            releases: vec![release(10, "1.0", Some(7)), release(20, "2.0", Some(8))],
            ..Default::default()
        });
        let json = |sel| {
            let view = s.view(sel);
            let served: Vec<u32> = (0..s.versions.len() as u32)
                .filter(|&v| view.contains(v))
                .collect();
            assert_eq!(served.len(), 1, "{sel:?}: one entry per version");
            s.versions[served[0] as usize].date_added
        };
        assert_eq!(json(ViewSel::All), 5);
        assert_eq!(
            json(s.release_sel("2.0").unwrap()),
            5,
            "digest 8 is the newest"
        );
        assert_eq!(json(s.release_sel("1.0").unwrap()), 9);
        assert_eq!(
            s.find_version("a", 1)
                .map(|i| s.versions[i as usize].date_added),
            Some(5)
        );
    }

    #[test]
    fn a_released_collection_is_on_the_default_root_only_once_a_release_is_complete() {
        let mut data = CollectionData {
            versions: vec![row("a", 1, 1)],
            ..Default::default()
        };
        assert_eq!(
            Snapshot::build(data.clone()).default_sel(),
            Some(ViewSel::All)
        );
        data.meta.released = true;
        assert_eq!(Snapshot::build(data.clone()).default_sel(), None);
        data.releases.push(ReleaseRow {
            release_timestamp: 1,
            label: "1.0".into(),
            complete: false,
            members: vec![("a".into(), 1, None)],
        });
        assert_eq!(Snapshot::build(data.clone()).default_sel(), None);
        data.releases[0].complete = true;
        assert_eq!(
            Snapshot::build(data).default_sel(),
            Some(ViewSel::Release(0))
        );
    }

    #[test]
    fn media_types_name_the_spec_versions_each_view_serves() {
        let mut old = row("b", 1, 2);
        old.spec_version = "2.0".into();
        let s = Snapshot::build(CollectionData {
            versions: vec![row("a", 1, 1), old],
            releases: vec![ReleaseRow {
                release_timestamp: 1,
                label: "1.0".into(),
                complete: true,
                members: vec![("b".into(), 1, None)],
            }],
            ..Default::default()
        });
        assert_eq!(s.media_types(ViewSel::All), [STIX_20, STIX_21]);
        assert_eq!(s.media_types(ViewSel::Release(0)), [STIX_20]);
    }
}
