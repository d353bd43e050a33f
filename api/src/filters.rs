//! TAXII filtering (§3.4) and paging: parse the query string, select versions from a view, cut pages.
//!
//! One engine for every root and for objects, manifest and versions alike. The order of a
//! listing is (date_added, object id, version): date_added is unique per version within a
//! collection, so the order is total and a cursor position splits no tie.
//!
//! Semantics, per object, in this order: versions in the view → `match[spec_version]` (default:
//! only the object's newest spec_version in the view) → `added_after` (strictly after) →
//! `match[version]` (`last` by default, `all` by default on the versions endpoint; a comma list is
//! a union) → `match[id]` / `match[type]` select the objects.

use schemas::{SpecVersion, Timestamp};
use sha2::{Digest, Sha256};

use crate::cursor::Position;
use crate::error::ApiError;
use crate::snapshot::{Snapshot, View};

/// Which endpoint a query is for: it decides the default of `match[version]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Objects,
    Object,
    Versions,
    Manifest,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Objects => "objects",
            Endpoint::Object => "object",
            Endpoint::Versions => "versions",
            Endpoint::Manifest => "manifest",
        }
    }
}

/// `match[version]`: a union of selectors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionMatch {
    pub all: bool,
    pub first: bool,
    pub last: bool,
    /// Exact versions, microseconds, sorted and deduplicated.
    pub at: Vec<i64>,
}

impl VersionMatch {
    pub fn last() -> Self {
        VersionMatch {
            last: true,
            ..Default::default()
        }
    }
    pub fn all() -> Self {
        VersionMatch {
            all: true,
            ..Default::default()
        }
    }
}

/// The selection part of a query (everything but `limit` and `next`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Microseconds; only versions with a strictly later date_added.
    pub added_after: Option<i64>,
    /// Sorted, deduplicated.
    pub ids: Option<Vec<String>>,
    /// Sorted, deduplicated.
    pub types: Option<Vec<String>>,
    pub versions: VersionMatch,
    /// Sorted, deduplicated; `None` = the newest spec_version of each object.
    pub spec_versions: Option<Vec<SpecVersion>>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            added_after: None,
            ids: None,
            types: None,
            versions: VersionMatch::last(),
            spec_versions: None,
        }
    }
}

/// A parsed query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub filter: Filter,
    /// Already capped at the server maximum; `None` = everything in one response.
    pub limit: Option<usize>,
    pub next: Option<String>,
}

impl Filter {
    /// A stable digest of the filter, for cursors and ETags: equal across replicas and builds.
    pub fn canonical(&self) -> String {
        let mut text = String::new();
        if let Some(t) = self.added_after {
            text.push_str(&format!("added_after={t};"));
        }
        if let Some(ids) = &self.ids {
            text.push_str(&format!("id={};", ids.join(",")));
        }
        if let Some(types) = &self.types {
            text.push_str(&format!("type={};", types.join(",")));
        }
        let v = &self.versions;
        text.push_str(&format!(
            "version={}{}{}{:?};",
            u8::from(v.all),
            u8::from(v.first),
            u8::from(v.last),
            v.at
        ));
        if let Some(specs) = &self.spec_versions {
            let specs: Vec<&str> = specs.iter().map(|s| s.as_str()).collect();
            text.push_str(&format!("spec={};", specs.join(",")));
        }
        text
    }
}

/// A 64-bit digest of some context strings (collection, root, endpoint, filter).
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update((p.len() as u64).to_be_bytes());
        hasher.update(p.as_bytes());
    }
    let digest = hasher.finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(word)
}

fn timestamp(parameter: &str, text: &str) -> Result<i64, ApiError> {
    Timestamp::parse(text)
        .map(Timestamp::as_micros)
        .map_err(|e| {
            ApiError::bad_parameter(
                parameter,
                format!("{e}; expected e.g. 2025-01-31T12:00:00.000Z"),
            )
        })
}

fn list(parameter: &str, value: &str) -> Result<Vec<String>, ApiError> {
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            if item.is_empty() {
                Err(ApiError::bad_parameter(
                    parameter,
                    "empty item in a comma-separated list",
                ))
            } else {
                Ok(item.to_owned())
            }
        })
        .collect()
}

fn merge(target: &mut Option<Vec<String>>, items: Vec<String>) {
    let list = target.get_or_insert_with(Vec::new);
    list.extend(items);
    list.sort();
    list.dedup();
}

/// Parses a raw query string. Repeated `match[…]` parameters add to the list; unknown
/// parameters are ignored, as the specification allows.
pub fn parse_query(
    raw: Option<&str>,
    endpoint: Endpoint,
    max_limit: usize,
) -> Result<Query, ApiError> {
    let mut filter = Filter::default();
    let mut versions: Option<VersionMatch> = None;
    let mut limit = None;
    let mut next = None;
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let value = value.trim();
        match name.as_ref() {
            "added_after" => filter.added_after = Some(timestamp("added_after", value)?),
            "match[id]" => merge(&mut filter.ids, list("match[id]", value)?),
            "match[type]" => merge(&mut filter.types, list("match[type]", value)?),
            "match[version]" => {
                let m = versions.get_or_insert_with(VersionMatch::default);
                for item in list("match[version]", value)? {
                    match item.as_str() {
                        "all" => m.all = true,
                        "first" => m.first = true,
                        "last" => m.last = true,
                        other => m.at.push(timestamp("match[version]", other)?),
                    }
                }
                m.at.sort_unstable();
                m.at.dedup();
            }
            "match[spec_version]" => {
                let specs = filter.spec_versions.get_or_insert_with(Vec::new);
                for item in list("match[spec_version]", value)? {
                    specs.push(SpecVersion::parse(&item).ok_or_else(|| {
                        ApiError::bad_parameter(
                            "match[spec_version]",
                            format!("{item:?} is not 2.0 or 2.1"),
                        )
                    })?);
                }
                specs.sort_unstable();
                specs.dedup();
            }
            "limit" => {
                let n: i64 = value.parse().map_err(|_| {
                    ApiError::bad_parameter("limit", format!("{value:?} is not a positive integer"))
                })?;
                if n <= 0 {
                    return Err(ApiError::bad_parameter(
                        "limit",
                        format!("{n} is not a positive integer"),
                    ));
                }
                limit = Some(
                    usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(max_limit.max(1)),
                );
            }
            "next" => {
                if value.is_empty() {
                    return Err(ApiError::bad_parameter("next", "empty cursor"));
                }
                next = Some(value.to_owned());
            }
            _ => {}
        }
    }
    filter.versions = versions.unwrap_or(match endpoint {
        Endpoint::Versions => VersionMatch::all(),
        _ => VersionMatch::last(),
    });
    Ok(Query {
        filter,
        limit,
        next,
    })
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

/// One page of a selection: `selected[start..end]`, and whether anything follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub start: usize,
    pub end: usize,
    pub more: bool,
}

/// Cuts the page after `after` (exclusive) of at most `limit` items.
pub fn page(
    snapshot: &Snapshot,
    selected: &[u32],
    after: Option<&Position>,
    limit: Option<usize>,
) -> Page {
    let start = match after {
        Some(p) => selected.partition_point(|&v| snapshot.cmp_position(v, p).is_le()),
        None => 0,
    };
    let end = match limit {
        Some(n) => start.saturating_add(n).min(selected.len()),
        None => selected.len(),
    };
    Page {
        start,
        end,
        more: end < selected.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CollectionData, ReleaseRow, VersionRow};
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn parse(q: &str) -> Result<Query, ApiError> {
        parse_query(Some(q), Endpoint::Objects, 1000)
    }

    fn parameter_of(e: ApiError) -> String {
        match e {
            ApiError::BadParameter { parameter, .. } => parameter,
            other => panic!("expected a bad parameter, got {other:?}"),
        }
    }

    #[test]
    fn limit_must_be_a_positive_integer_and_is_capped() {
        for bad in ["limit=0", "limit=-3", "limit=NaN", "limit=", "limit=1.5"] {
            assert_eq!(parameter_of(parse(bad).unwrap_err()), "limit", "{bad}");
        }
        assert_eq!(parse("limit=5").unwrap().limit, Some(5));
        assert_eq!(parse("limit=5000000").unwrap().limit, Some(1000));
    }

    #[test]
    fn timestamps_take_three_or_six_fraction_digits() {
        let q = parse(
            "added_after=2025-01-01T00:00:00.123456Z&match[version]=2025-01-01T00:00:00.123Z,first",
        )
        .unwrap();
        assert_eq!(q.filter.added_after, Some(1_735_689_600_123_456));
        assert_eq!(q.filter.versions.at, vec![1_735_689_600_123_000]);
        assert!(q.filter.versions.first && !q.filter.versions.last);
        assert_eq!(
            parameter_of(parse("added_after=yesterday").unwrap_err()),
            "added_after"
        );
        assert_eq!(
            parameter_of(parse("match[version]=newest").unwrap_err()),
            "match[version]"
        );
        assert_eq!(
            parameter_of(parse("match[spec_version]=3.0").unwrap_err()),
            "match[spec_version]"
        );
        assert_eq!(
            parameter_of(parse("match[type]=a,,b").unwrap_err()),
            "match[type]"
        );
    }

    #[test]
    fn version_default_depends_on_the_endpoint() {
        assert_eq!(parse("").unwrap().filter.versions, VersionMatch::last());
        let q = parse_query(None, Endpoint::Versions, 10).unwrap();
        assert_eq!(q.filter.versions, VersionMatch::all());
    }

    #[test]
    fn repeated_match_parameters_add_up() {
        let q = parse("match[type]=b,a&match[type]=c&match%5Bid%5D=x").unwrap();
        assert_eq!(q.filter.types.unwrap(), ["a", "b", "c"]);
        assert_eq!(q.filter.ids.unwrap(), ["x"]);
    }

    // --- the engine against a naive model -------------------------------------------------

    #[derive(Debug, Clone)]
    struct Row {
        object: usize,
        version: i64,
        spec: SpecVersion,
        date_added: i64,
        member: bool,
    }

    const TYPES: [&str; 3] = ["attack-pattern", "malware", "tool"];

    fn object_id(o: usize) -> String {
        format!("{}--{o:04}", TYPES[o % 3])
    }

    fn rows() -> impl Strategy<Value = Vec<Row>> {
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

    fn filters() -> impl Strategy<Value = Filter> {
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

    fn snapshot(rows: &[Row]) -> Snapshot {
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
                })
                .collect(),
            releases: vec![ReleaseRow {
                release_timestamp: 1,
                label: "r".into(),
                complete: true,
                members: rows
                    .iter()
                    .filter(|r| r.member)
                    .map(|r| (object_id(r.object), r.version))
                    .collect(),
            }],
            ..Default::default()
        })
    }

    /// The specification read literally, with no indexes: a list of (object id, version).
    fn naive(rows: &[Row], pinned: bool, f: &Filter) -> Vec<(String, i64)> {
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

    fn ids(s: &Snapshot, selected: &[u32]) -> Vec<(String, i64)> {
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
        fn paging_walks_every_selected_version_once(rows in rows(), f in filters(), limit in 1usize..6) {
            let s = snapshot(&rows);
            let all = select(s.history_view(), &f);
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let p = page(&s, &all, after.as_ref(), Some(limit));
                walked.extend_from_slice(&all[p.start..p.end]);
                if !p.more { break; }
                after = Some(s.position(all[p.end - 1]));
            }
            prop_assert_eq!(walked, all);
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
}
