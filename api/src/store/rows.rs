//! Turning the projector's rows into what the API serves, without I/O: the parts of an index
//! that every store assembles the same way, so that stores differ only in how they read rows.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::{ContentKey, ReleaseRow, StoreError, VersionRow};

/// A `content_index` row: object id, version, content digest, date_added, STIX type, spec
/// version, version text.
pub type IndexRow = (
    String,
    i64,
    Vec<u8>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A version as an index holds it (no JSON), with the defaults of rows written before the
/// version text and spec version were stored.
pub fn index_row(
    object_id: String,
    version: i64,
    stix_type: String,
    spec: Option<String>,
    text: Option<String>,
    date_added: i64,
    content: Option<[u8; 32]>,
) -> VersionRow {
    VersionRow {
        version_text: text
            .unwrap_or_else(|| schemas::Timestamp::from_micros(version).to_canonical()),
        object_id,
        version,
        stix_type,
        spec_version: spec.unwrap_or_else(|| "2.1".to_owned()),
        date_added,
        object_json: Bytes::new(),
        content,
    }
}

/// The error of a content a store does not hold (a projection that lost rows).
pub fn no_content(key: &ContentKey<'_>) -> StoreError {
    StoreError::new(
        "reading object JSON",
        format!(
            "no stored content for {} version {}{}",
            key.object_id,
            key.version,
            if key.content.is_some() {
                " (a release's own content)"
            } else {
                ""
            }
        ),
    )
}

/// A release's members (`release_members` rows, in their order), each with the content it
/// shipped when `release_member_contents` names one.
pub fn members(
    members: Vec<(String, i64)>,
    contents: Vec<(String, i64, Option<Vec<u8>>)>,
) -> Vec<(String, i64, Option<[u8; 32]>)> {
    let contents: HashMap<(String, i64), [u8; 32]> = contents
        .into_iter()
        .filter_map(|(object_id, version, digest)| {
            Some(((object_id, version), digest?.try_into().ok()?))
        })
        .collect();
    members
        .into_iter()
        .map(|(object_id, version)| {
            let content = contents.get(&(object_id.clone(), version)).copied();
            (object_id, version, content)
        })
        .collect()
}

/// Whether any release names the content it shipped: only then can a version have contents
/// other than its newest worth reading.
pub fn names_other_contents(releases: &[ReleaseRow]) -> bool {
    releases
        .iter()
        .flat_map(|r| &r.members)
        .any(|(_, _, c)| c.is_some())
}

/// The index rows of the contents releases shipped that are not the newest content of their
/// version (`versions`: the newest, from the manifest), from the collection's `content_index`.
pub fn other_contents(
    versions: &[VersionRow],
    releases: &[ReleaseRow],
    index: impl IntoIterator<Item = IndexRow>,
) -> Vec<VersionRow> {
    let named: HashSet<(&str, i64, [u8; 32])> = releases
        .iter()
        .flat_map(|r| &r.members)
        .filter_map(|(o, v, c)| Some((o.as_str(), *v, (*c)?)))
        .collect();
    if named.is_empty() {
        return Vec::new();
    }
    let newest: HashMap<(&str, i64), i64> = versions
        .iter()
        .map(|v| ((v.object_id.as_str(), v.version), v.date_added))
        .collect();
    index
        .into_iter()
        .filter_map(
            |(object_id, version, digest, date_added, stix_type, spec, text)| {
                let digest: [u8; 32] = digest.try_into().ok()?;
                let date_added = date_added?;
                if !named.contains(&(object_id.as_str(), version, digest))
                    // The newest content is the manifest's row: same date_added.
                    || newest.get(&(object_id.as_str(), version)) == Some(&date_added)
                {
                    return None;
                }
                Some(index_row(
                    object_id,
                    version,
                    stix_type?,
                    spec,
                    text,
                    date_added,
                    Some(digest),
                ))
            },
        )
        .collect()
}
