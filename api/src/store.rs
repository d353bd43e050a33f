//! Where collections come from: the [`Store`] trait the API reads through, and its row types.
//!
//! Handlers never see a driver type: the refresher asks a `Store` for collection revisions and,
//! when one moved, for the collection's index (every version without its JSON), builds an
//! in-memory snapshot from it, and fills in the object JSON with
//! [`Store::fetch_objects`] if the memory bound allows; otherwise the snapshot stays lean and
//! listings fetch the JSON of the versions they send, page by page. [`cql::CqlStore`] reads the
//! projector's tables (the only module importing `scylla`); [`memory::MemoryStore`] serves tests.
//!
//! The parts of an index every store assembles the same way from the projector's rows, without
//! I/O, are here too ([`index_row`], [`members`], [`other_contents`]), so that stores differ only
//! in how they read rows (the node's embedded store uses them as well).

pub mod cql;
pub mod memory;

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::future::BoxFuture;

/// The generation of projection tables readers use (`taxiway.active_generation`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Generation {
    pub number: i32,
    pub keyspace: String,
}

/// A collection and how far its content has been projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRevision {
    pub collection_id: String,
    /// Moves forward whenever the collection's content changes.
    pub revision: i64,
}

/// A collection's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionMeta {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub alias: Option<String>,
    pub media_types: Vec<String>,
    /// Delivered as releases: the default root shows it only once a release is complete.
    pub released: bool,
}

/// One version of one object, as projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub object_id: String,
    /// Microseconds since the epoch (the STIX `modified`, else `created`, else 0).
    pub version: i64,
    /// The canonical text of `version`, as served in manifests and `versions`.
    pub version_text: String,
    pub stix_type: String,
    pub spec_version: String,
    /// Microseconds; unique per version within the collection.
    pub date_added: i64,
    /// Compact JSON of the object, served as is; empty in an index ([`Store::load_index`]).
    pub object_json: Bytes,
    /// `None`: the version's newest content (history root). `Some(digest)`: another content of
    /// the version that a release shipped (MITRE re-issued it), served only by that release.
    pub content: Option<[u8; 32]>,
}

/// What [`Store::fetch_objects`] reads: one content of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentKey<'a> {
    pub object_id: &'a str,
    pub version: i64,
    /// As [`VersionRow::content`].
    pub content: Option<&'a [u8; 32]>,
}

/// One release of a collection and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    pub release_timestamp: i64,
    pub label: String,
    /// Only complete releases are ever served.
    pub complete: bool,
    /// `(object_id, version, content)` of every member: the digest of the content the release
    /// shipped, `None` when unknown (events written before releases named it: the newest).
    pub members: Vec<(String, i64, Option<[u8; 32]>)>,
}

/// Everything needed to serve one collection at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionData {
    pub meta: CollectionMeta,
    pub revision: i64,
    pub versions: Vec<VersionRow>,
    pub releases: Vec<ReleaseRow>,
}

/// A store failure (unreachable, timeout, unexpected rows).
#[derive(Debug, thiserror::Error)]
#[error("{context}: {message}")]
pub struct StoreError {
    pub context: String,
    pub message: String,
}

impl StoreError {
    pub fn new(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        StoreError {
            context: context.into(),
            message: message.to_string(),
        }
    }
}

/// The read side of the projections. Object-safe (boxed futures) so the server holds an
/// `Arc<dyn Store>` and tests substitute an in-memory one.
pub trait Store: Send + Sync + 'static {
    /// The generation readers should use now; a change means "reload everything from there".
    fn active_generation(&self) -> BoxFuture<'_, Result<Generation, StoreError>>;

    /// Every collection of `generation` with its revision. Cheap: polled every few hundred ms.
    fn list_collections<'a>(
        &'a self,
        generation: &'a Generation,
    ) -> BoxFuture<'a, Result<Vec<CollectionRevision>, StoreError>>;

    /// One collection's metadata, releases and every version *without* its object JSON
    /// (`object_json` empty): the index a snapshot is built from, small enough to hold for any
    /// collection. `None` if the collection vanished meanwhile.
    fn load_index<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CollectionData>, StoreError>>;

    /// The object JSON of `versions` of one collection, in the order asked; an error if any of
    /// them has no stored content. Implementations bound their requests in flight; callers
    /// bound how many versions they ask for at once.
    fn fetch_objects<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
        versions: &'a [ContentKey<'a>],
    ) -> BoxFuture<'a, Result<Vec<Bytes>, StoreError>>;
}

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
