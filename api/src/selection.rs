//! The selection engine: which versions of which objects a listing selects from a view of a
//! collection, and the selections kept for paging. Pure: no HTTP, no I/O.
//!
//! One engine for every root and for objects, manifest and versions alike. The order of a
//! listing is (date_added, object id, version): date_added is unique per version within a
//! collection, so the order is total and a cursor position splits no tie.
//!
//! Semantics, per object, in this order: versions in the view → `match[spec_version]` (default:
//! only the object's newest spec_version in the view) → `added_after` (strictly after) →
//! `match[version]` (`last` by default, `all` by default on the versions endpoint; a comma list is
//! a union) → `match[id]` / `match[type]` select the objects.
//!
//! A page request re-selects nothing when the same (collection revision, view, filter) was asked
//! before: the selection is an `Arc<[u32]>` of version indices and a page is a binary search in
//! it, so walking the 5,000 pages of Enterprise at `limit=5` costs one filter pass instead of
//! 5,000. Keys include the revision, so a reload never serves stale results; old entries just
//! age out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::filters::Filter;
use crate::snapshot::View;

/// Whether the object has at least one version in the view.
pub fn holds_object(view: View<'_>, object_id: &str) -> bool {
    view.snapshot
        .find_object(object_id)
        .is_some_and(|o| view.has_object(o))
}

/// The filter of a request whose path names one object: `match[id]` and `match[type]` from the
/// query don't apply.
pub fn for_object(filter: Filter, object_id: &str) -> Filter {
    Filter {
        ids: Some(vec![object_id.to_owned()]),
        types: None,
        ..filter
    }
}

/// The versions of `view` that `filter` selects, in listing order.
pub fn select(view: View<'_>, filter: &Filter) -> Vec<u32> {
    let snapshot = view.snapshot;
    let candidates: Vec<u32> = match &filter.ids {
        Some(ids) => ids
            .iter()
            .filter_map(|id| snapshot.find_object(id))
            .collect(),
        None => (0..snapshot.objects.len() as u32).collect(),
    };
    let mut selected = Vec::new();
    let mut in_view: Vec<u32> = Vec::new();
    let mut kept: Vec<u32> = Vec::new();
    for o in candidates {
        let object = &snapshot.objects[o as usize];
        if let Some(types) = &filter.types
            && types
                .binary_search_by(|t| t.as_str().cmp(&object.stix_type))
                .is_err()
        {
            continue;
        }
        in_view.clear();
        in_view.extend((object.first..object.first + object.count).filter(|&v| view.contains(v)));
        let Some(newest_spec) = in_view
            .iter()
            .map(|&v| snapshot.versions[v as usize].spec)
            .max()
        else {
            continue;
        };
        kept.clear();
        kept.extend(in_view.iter().copied().filter(|&v| {
            let entry = &snapshot.versions[v as usize];
            let spec_ok = match &filter.spec_versions {
                Some(specs) => specs.contains(&entry.spec),
                None => entry.spec == newest_spec,
            };
            spec_ok && filter.added_after.is_none_or(|t| entry.date_added > t)
        }));
        let m = &filter.versions;
        if m.all {
            selected.extend_from_slice(&kept);
            continue;
        }
        // `kept` is oldest version first; walk it once and keep what any selector wants.
        let last = kept.len().wrapping_sub(1);
        for (i, &v) in kept.iter().enumerate() {
            let version = snapshot.versions[v as usize].version;
            if (m.first && i == 0) || (m.last && i == last) || m.at.binary_search(&version).is_ok()
            {
                selected.push(v);
            }
        }
    }
    selected.sort_unstable_by(|&a, &b| {
        let (va, vb) = (
            &snapshot.versions[a as usize],
            &snapshot.versions[b as usize],
        );
        (va.date_added, va.object, va.version).cmp(&(vb.date_added, vb.object, vb.version))
    });
    selected
}

/// A small FIFO-evicting map from query fingerprint to selection.
#[derive(Debug)]
pub struct ResultCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, Arc<[u32]>>,
    order: VecDeque<u64>,
}

impl ResultCache {
    pub fn new(capacity: usize) -> Self {
        ResultCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached selection for `key`, or `compute()`'s, stored. The bool says whether it was a hit.
    pub fn get_or_compute(
        &self,
        key: u64,
        compute: impl FnOnce() -> Vec<u32>,
    ) -> (Arc<[u32]>, bool) {
        if let Some(hit) = self.lock().map.get(&key) {
            return (hit.clone(), true);
        }
        // Computed outside the lock: two concurrent misses may both compute, which is cheaper
        // than serialising every request behind one filter pass.
        let value: Arc<[u32]> = compute().into();
        if self.capacity > 0 {
            let mut inner = self.lock();
            if inner.map.insert(key, value.clone()).is_none() {
                inner.order.push_back(key);
            }
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.map.remove(&old);
                }
            }
        }
        (value, false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds no invariant a panic elsewhere could break.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::filters::VersionMatch;
    use crate::snapshot::Snapshot;
    use crate::store::{CollectionData, ReleaseRow, VersionRow};
    use bytes::Bytes;
    use proptest::prelude::*;
    use schemas::SpecVersion;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    pub(crate) struct Row {
        pub(crate) object: usize,
        pub(crate) version: i64,
        pub(crate) spec: SpecVersion,
        pub(crate) date_added: i64,
        pub(crate) member: bool,
    }

    pub(crate) const TYPES: [&str; 3] = ["attack-pattern", "malware", "tool"];

    pub(crate) fn object_id(o: usize) -> String {
        format!("{}--{o:04}", TYPES[o % 3])
    }

    pub(crate) fn rows() -> impl Strategy<Value = Vec<Row>> {
        prop::collection::vec((0usize..8, 0i64..6, any::<bool>(), any::<bool>()), 0..40)
            .prop_flat_map(|raw| {
                let n = raw.len();
                (
                    Just(raw),
                    Just((0..n as i64).collect::<Vec<_>>()).prop_shuffle(),
                )
            })
            .prop_map(|(raw, dates)| {
                let mut seen = BTreeSet::new();
                raw.into_iter()
                    .zip(dates)
                    .filter(|((o, v, _, _), _)| seen.insert((*o, *v)))
                    .map(|((object, version, v21, member), d)| Row {
                        object,
                        version,
                        spec: if v21 {
                            SpecVersion::V2_1
                        } else {
                            SpecVersion::V2_0
                        },
                        date_added: d * 10,
                        member,
                    })
                    .collect()
            })
    }

    pub(crate) fn filters() -> impl Strategy<Value = Filter> {
        (
            prop::option::of(0i64..400),
            prop::option::of(prop::collection::btree_set(0usize..9, 0..3)),
            prop::option::of(prop::collection::btree_set(0usize..3, 0..2)),
            (
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                prop::collection::btree_set(0i64..7, 0..2),
            ),
            prop::option::of(prop::collection::btree_set(any::<bool>(), 1..3)),
        )
            .prop_map(
                |(after, ids, types, (all, first, last, at), specs)| Filter {
                    added_after: after,
                    ids: ids.map(|s| s.into_iter().map(object_id).collect()),
                    types: types.map(|s| s.into_iter().map(|t| TYPES[t].to_owned()).collect()),
                    versions: VersionMatch {
                        all,
                        first,
                        last,
                        at: at.into_iter().collect(),
                    },
                    spec_versions: specs.map(|s| {
                        s.into_iter()
                            .map(|b| {
                                if b {
                                    SpecVersion::V2_1
                                } else {
                                    SpecVersion::V2_0
                                }
                            })
                            .collect()
                    }),
                },
            )
    }

    pub(crate) fn snapshot(rows: &[Row]) -> Snapshot {
        Snapshot::build(CollectionData {
            versions: rows
                .iter()
                .map(|r| VersionRow {
                    object_id: object_id(r.object),
                    version: r.version,
                    version_text: r.version.to_string(),
                    stix_type: TYPES[r.object % 3].to_owned(),
                    spec_version: r.spec.as_str().to_owned(),
                    date_added: r.date_added,
                    object_json: Bytes::new(),
                    content: None,
                })
                .collect(),
            releases: vec![ReleaseRow {
                release_timestamp: 1,
                label: "r".into(),
                complete: true,
                members: rows
                    .iter()
                    .filter(|r| r.member)
                    .map(|r| (object_id(r.object), r.version, None))
                    .collect(),
            }],
            ..Default::default()
        })
    }

    /// The specification read literally, with no indexes: a list of (object id, version).
    pub(crate) fn naive(rows: &[Row], pinned: bool, f: &Filter) -> Vec<(String, i64)> {
        let visible: Vec<&Row> = rows.iter().filter(|r| !pinned || r.member).collect();
        let mut out: Vec<&Row> = Vec::new();
        for o in 0..9 {
            let id = object_id(o);
            if f.ids.as_ref().is_some_and(|ids| !ids.contains(&id)) {
                continue;
            }
            if f.types
                .as_ref()
                .is_some_and(|t| !t.iter().any(|t| t == TYPES[o % 3]))
            {
                continue;
            }
            let mine: Vec<&Row> = visible.iter().copied().filter(|r| r.object == o).collect();
            let Some(newest) = mine.iter().map(|r| r.spec).max() else {
                continue;
            };
            let mut kept: Vec<&Row> = mine
                .into_iter()
                .filter(|r| match &f.spec_versions {
                    Some(s) => s.contains(&r.spec),
                    None => r.spec == newest,
                })
                .filter(|r| f.added_after.is_none_or(|t| r.date_added > t))
                .collect();
            kept.sort_by_key(|r| r.version);
            let min = kept.iter().map(|r| r.version).min();
            let max = kept.iter().map(|r| r.version).max();
            out.extend(kept.iter().copied().filter(|r| {
                f.versions.all
                    || (f.versions.first && Some(r.version) == min)
                    || (f.versions.last && Some(r.version) == max)
                    || f.versions.at.contains(&r.version)
            }));
        }
        out.sort_by_key(|r| r.date_added);
        out.into_iter()
            .map(|r| (object_id(r.object), r.version))
            .collect()
    }

    pub(crate) fn ids(s: &Snapshot, selected: &[u32]) -> Vec<(String, i64)> {
        selected
            .iter()
            .map(|&v| {
                (
                    s.objects[s.versions[v as usize].object as usize]
                        .id
                        .to_string(),
                    s.versions[v as usize].version,
                )
            })
            .collect()
    }

    proptest! {
        #[test]
        fn selection_matches_the_naive_model(rows in rows(), f in filters(), pinned in any::<bool>()) {
            let s = snapshot(&rows);
            let view = if pinned { s.release_view(&s.releases[0]) } else { s.history_view() };
            prop_assert_eq!(ids(&s, &select(view, &f)), naive(&rows, pinned, &f));
        }

        #[test]
        fn a_named_object_selects_as_match_id_without_match_type(
            rows in rows(), f in filters(), object in 0usize..9, pinned in any::<bool>()
        ) {
            let s = snapshot(&rows);
            let view = if pinned { s.release_view(&s.releases[0]) } else { s.history_view() };
            let id = object_id(object);
            let narrowed = for_object(f.clone(), &id);
            let model = Filter { ids: Some(vec![id.clone()]), types: None, ..f };
            prop_assert_eq!(ids(&s, &select(view, &narrowed)), naive(&rows, pinned, &model));
            let in_view = rows.iter().any(|r| r.object == object && (!pinned || r.member));
            prop_assert_eq!(holds_object(view, &id), in_view);
        }

        #[test]
        fn a_selection_is_in_the_view_and_strictly_in_listing_order(
            rows in rows(), f in filters(), pinned in any::<bool>()
        ) {
            let s = snapshot(&rows);
            let view = if pinned { s.release_view(&s.releases[0]) } else { s.history_view() };
            let selected = select(view, &f);
            prop_assert!(selected.iter().all(|&v| view.contains(v)));
            prop_assert!(selected.windows(2).all(|w| s.position(w[0]) < s.position(w[1])));
        }
    }

    #[test]
    fn added_after_is_exclusive() {
        let rows = vec![
            Row {
                object: 0,
                version: 1,
                spec: SpecVersion::V2_1,
                date_added: 10,
                member: true,
            },
            Row {
                object: 1,
                version: 1,
                spec: SpecVersion::V2_1,
                date_added: 20,
                member: true,
            },
        ];
        let s = snapshot(&rows);
        let f = Filter {
            added_after: Some(10),
            ..Filter::default()
        };
        assert_eq!(
            ids(&s, &select(s.history_view(), &f)),
            vec![(object_id(1), 1)]
        );
    }

    #[test]
    fn entries_are_evicted_oldest_first() {
        let cache = ResultCache::new(2);
        assert!(!cache.get_or_compute(1, || vec![1]).1);
        assert!(cache.get_or_compute(1, || vec![9]).1);
        cache.get_or_compute(2, || vec![2]);
        cache.get_or_compute(3, || vec![3]);
        let (value, hit) = cache.get_or_compute(1, || vec![7]);
        assert!(!hit);
        assert_eq!(&*value, &[7]);
    }
}
