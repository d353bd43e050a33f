//! The projection tables in memory, with CQL's write semantics, for the projector's batch writer.
//!
//! Each table is a sorted map keyed by the CQL table's primary key, so a range over a partition
//! yields its rows in clustering order. Every row (and each separately written cell: a
//! collection's revision, a release's completion) keeps the timestamp it was written at, and a
//! write replaces it only with a timestamp not below its own: CQL's last-write-wins, which makes
//! the projection independent of event order and duplication (`projector::rows`). A manifest
//! delete leaves its timestamp behind, shadowing any insert at or below it, as a CQL tombstone
//! does. CQL breaks a tie between two different values at one timestamp by comparing the values;
//! here the later write wins. Taxiway never writes two different values of one row at one
//! timestamp: every timestamp is the row's own `date_added`, `updated_at` or sequence value.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use projector::rows::{
    CollectionRow, ContentIndexRow, ManifestKey, ManifestRow, Mutation, ObjectContentRow,
    ObjectVersionRow, ReleaseKey, ReleaseRow,
};
use projector::tables::Tables;

use crate::memory::Activity;

/// A value and the timestamp it was written with.
#[derive(Debug, Clone)]
pub(crate) struct Cell<V> {
    pub(crate) value: V,
    pub(crate) ts: i64,
}

/// Writes `value` at `ts` unless the slot holds a later write.
fn write<V>(slot: &mut Option<Cell<V>>, value: V, ts: i64) {
    if slot.as_ref().is_none_or(|c| ts >= c.ts) {
        *slot = Some(Cell { value, ts });
    }
}

/// `collections`: the metadata row and the revision, written separately.
#[derive(Debug, Default)]
pub(crate) struct CollectionCells {
    pub(crate) meta: Option<Cell<CollectionRow>>,
    pub(crate) revision: Option<Cell<i64>>,
}

/// A row whose object JSON is held apart, once per content: the `object_versions` row and the
/// `object_contents` row of one content share the bytes, and the API's snapshot holds
/// references to them rather than copies. The row keeps no collection or object id either: the
/// map's key has them. On the eight releases of `docs/benchmarks.md` this
/// took the node's resident memory from 4.6× the JSON it serves to the figure there.
#[derive(Debug, Clone)]
pub(crate) struct WithJson<R> {
    /// The row, its `object_json` left empty.
    pub(crate) row: R,
    pub(crate) json: Bytes,
}

/// `object_versions`: the newest content's row and the set of every `date_added`.
#[derive(Debug, Default)]
pub(crate) struct VersionCells {
    pub(crate) row: Option<Cell<WithJson<ObjectVersionRow>>>,
    pub(crate) date_addeds: BTreeSet<i64>,
}

/// `manifest`: the row, and the timestamp of the latest delete.
#[derive(Debug, Default)]
pub(crate) struct ManifestCells {
    pub(crate) row: Option<Cell<ManifestRow>>,
    pub(crate) deleted: Option<i64>,
}

impl ManifestCells {
    /// The row, unless a delete at or after its timestamp shadows it.
    pub(crate) fn visible(&self) -> Option<&ManifestRow> {
        let row = self.row.as_ref()?;
        match self.deleted {
            Some(deleted) if deleted >= row.ts => None,
            _ => Some(&row.value),
        }
    }
}

/// `releases`: the row, and the completion flag written by its own update.
#[derive(Debug, Default)]
pub(crate) struct ReleaseCells {
    pub(crate) row: Option<Cell<ReleaseRow>>,
    pub(crate) complete: Option<Cell<bool>>,
}

/// Primary keys of the tables keyed by object: (collection, object, version[, content digest]).
pub(crate) type VersionKey = (String, String, i64);
pub(crate) type ContentKey = (String, String, i64, Vec<u8>);
/// A release's partition key with the row's clustering key.
pub(crate) type MemberKey = (ReleaseKey, String, i64);

/// Every table of one generation.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) collections: BTreeMap<String, CollectionCells>,
    pub(crate) delivery: BTreeMap<String, Option<Cell<bool>>>,
    pub(crate) versions: BTreeMap<VersionKey, VersionCells>,
    pub(crate) contents: BTreeMap<ContentKey, Option<Cell<WithJson<ObjectContentRow>>>>,
    /// Keyed (collection, object, version, digest): the partition is the collection, and the
    /// clustering key sorts within it.
    pub(crate) content_index: BTreeMap<ContentKey, Option<Cell<ContentIndexRow>>>,
    pub(crate) manifest_buckets: BTreeSet<(String, i64)>,
    pub(crate) manifest: BTreeMap<ManifestKey, ManifestCells>,
    pub(crate) releases: BTreeMap<ReleaseKey, ReleaseCells>,
    pub(crate) release_chunks: BTreeMap<(ReleaseKey, i32), Option<Cell<i32>>>,
    pub(crate) release_members: BTreeMap<MemberKey, Option<Cell<String>>>,
    pub(crate) release_member_contents: BTreeMap<MemberKey, Option<Cell<Vec<u8>>>>,
}

impl Rows {
    /// The bytes of one content's JSON: those already held for it, else a copy of `text`.
    fn json(&self, key: &VersionKey, digest: &[u8], text: &str) -> Bytes {
        let held = self
            .versions
            .get(key)
            .and_then(|cells| cells.row.as_ref())
            .filter(|row| row.value.row.content_sha256 == digest)
            .map(|row| row.value.json.clone())
            .or_else(|| {
                let content = (key.0.clone(), key.1.clone(), key.2, digest.to_vec());
                let cell = self.contents.get(&content)?.as_ref()?;
                Some(cell.value.json.clone())
            });
        held.unwrap_or_else(|| Bytes::copy_from_slice(text.as_bytes()))
    }

    fn apply(&mut self, m: &Mutation) {
        let ts = m.timestamp();
        match m {
            Mutation::Collection(c) => {
                let cells = self.collections.entry(c.collection_id.clone()).or_default();
                write(&mut cells.meta, c.clone(), ts);
            }
            Mutation::Revision {
                collection_id,
                revision,
            } => {
                let cells = self.collections.entry(collection_id.clone()).or_default();
                write(&mut cells.revision, *revision, ts);
            }
            Mutation::CollectionDelivery {
                collection_id,
                released,
                ..
            } => {
                let slot = self.delivery.entry(collection_id.clone()).or_default();
                write(slot, *released, ts);
            }
            Mutation::ObjectVersion(v) => {
                let key = (v.collection_id.clone(), v.object_id.clone(), v.version);
                let json = self.json(&key, &v.content_sha256, &v.object_json);
                // Field by field: cloning the row whole would copy its JSON only to drop it.
                let row = ObjectVersionRow {
                    collection_id: String::new(),
                    object_id: String::new(),
                    version: v.version,
                    version_text: v.version_text.clone(),
                    stix_type: v.stix_type.clone(),
                    spec_version: v.spec_version.clone(),
                    date_added: v.date_added,
                    object_json: String::new(),
                    content_sha256: v.content_sha256.clone(),
                };
                let cells = self.versions.entry(key).or_default();
                write(&mut cells.row, WithJson { row, json }, ts);
                cells.date_addeds.insert(v.date_added);
            }
            Mutation::ObjectContent(c) => {
                let version = (c.collection_id.clone(), c.object_id.clone(), c.version);
                let json = self.json(&version, &c.content_sha256, &c.object_json);
                let row = ObjectContentRow {
                    collection_id: String::new(),
                    object_id: String::new(),
                    version: c.version,
                    content_sha256: c.content_sha256.clone(),
                    date_added: c.date_added,
                    object_json: String::new(),
                };
                let key = (version.0, version.1, version.2, c.content_sha256.clone());
                write(
                    self.contents.entry(key).or_default(),
                    WithJson { row, json },
                    ts,
                );
            }
            Mutation::ContentIndex(c) => {
                let key = (
                    c.collection_id.clone(),
                    c.object_id.clone(),
                    c.version,
                    c.content_sha256.clone(),
                );
                // The ids live in the key only.
                let row = ContentIndexRow {
                    collection_id: String::new(),
                    object_id: String::new(),
                    ..c.clone()
                };
                write(self.content_index.entry(key).or_default(), row, ts);
            }
            Mutation::ManifestBucket {
                collection_id,
                bucket,
            } => {
                self.manifest_buckets
                    .insert((collection_id.clone(), *bucket));
            }
            Mutation::ManifestInsert(row) => {
                let cells = self.manifest.entry(row.key.clone()).or_default();
                // The key lives in the map only.
                let lean = ManifestRow {
                    key: ManifestKey {
                        collection_id: String::new(),
                        object_id: String::new(),
                        ..row.key
                    },
                    ..row.clone()
                };
                write(&mut cells.row, lean, ts);
            }
            Mutation::ManifestDelete { key, timestamp } => {
                let cells = self.manifest.entry(key.clone()).or_default();
                cells.deleted = Some(cells.deleted.map_or(*timestamp, |d| d.max(*timestamp)));
            }
            Mutation::Release(r) => {
                let cells = self.releases.entry(r.key.clone()).or_default();
                write(&mut cells.row, r.clone(), ts);
            }
            Mutation::ReleaseComplete { key, .. } => {
                let cells = self.releases.entry(key.clone()).or_default();
                write(&mut cells.complete, true, ts);
            }
            Mutation::ReleaseChunk(c) => {
                let slot = self
                    .release_chunks
                    .entry((c.key.clone(), c.chunk_index))
                    .or_default();
                write(slot, c.members, ts);
            }
            Mutation::ReleaseMember(m) => {
                let key = (m.key.clone(), m.object_id.clone(), m.version);
                write(
                    self.release_members.entry(key).or_default(),
                    m.version_text.clone(),
                    ts,
                );
            }
            Mutation::ReleaseMemberContent(m) => {
                let key = (m.key.clone(), m.object_id.clone(), m.version);
                write(
                    self.release_member_contents.entry(key).or_default(),
                    m.content_sha256.clone(),
                    ts,
                );
            }
        }
    }
}

/// The projection tables of a node, shared by the projector task that writes them and the API
/// that reads them; clones share the tables.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    rows: Arc<RwLock<Rows>>,
    activity: Activity,
}

impl Projection {
    pub fn new() -> Self {
        Self::default()
    }

    /// A poisoned lock only means a writer panicked between two mutations; every mutation is
    /// applied whole, so the rows are as consistent as a CQL table after a failed batch (which
    /// the writer then writes again).
    pub(crate) fn rows(&self) -> RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|e| e.into_inner())
    }

    fn rows_mut(&self) -> RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the writes and loads that allocate, for the memory trim.
    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }
}

impl Tables for Projection {
    fn name(&self) -> &str {
        "memory"
    }

    fn write(&self, m: &Mutation) -> impl Future<Output = projector::Result<()>> + Send {
        self.rows_mut().apply(m);
        self.activity.bump();
        std::future::ready(Ok(()))
    }

    fn date_addeds(
        &self,
        collection_id: &str,
        object_id: &str,
        version: i64,
    ) -> impl Future<Output = projector::Result<Vec<i64>>> + Send {
        let key = (collection_id.to_owned(), object_id.to_owned(), version);
        let found = self
            .rows()
            .versions
            .get(&key)
            .map(|c| c.date_addeds.iter().copied().collect())
            .unwrap_or_default();
        std::future::ready(Ok(found))
    }

    fn release_chunks(
        &self,
        key: &ReleaseKey,
    ) -> impl Future<Output = projector::Result<Vec<i32>>> + Send {
        let rows = self.rows();
        let found = rows
            .release_chunks
            .range((key.clone(), i32::MIN)..=(key.clone(), i32::MAX))
            .filter(|(_, cell)| cell.is_some())
            .map(|((_, index), _)| *index)
            .collect();
        std::future::ready(Ok(found))
    }

    fn missing_tables(&self) -> impl Future<Output = projector::Result<Vec<&'static str>>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

#[cfg(test)]
mod tests;
