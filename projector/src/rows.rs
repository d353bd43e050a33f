//! The pure core of the projector: which rows one event writes or deletes, and with which CQL write timestamp.
//!
//! No I/O here. [`store`](crate::store) executes the [`Mutation`]s; `batch` orders them. Order-independence rests on CQL's per-cell last-write-wins by write timestamp:
//! every mutation carries a timestamp taken from the event (never the clock), so replays,
//! duplicates and any interleaving of the same events converge to the same rows. Two
//! projections need a read in between, and their follow-up mutations are computed here too:
//!
//! - the manifest lists a version once, under its largest `date_added`: after writing the
//!   version (which adds its `date_added` to the `date_addeds` set), the set is read and
//!   [`manifest`] inserts the row of the largest value and deletes the rows of every smaller one
//!   at the largest value's timestamp — a delete that beats any late insert of an older row. Of
//!   two racing events, the one that reads second sees both values, so the end state is the same
//!   whatever the order;
//! - a release is complete once all its chunks are written: after writing a chunk, the chunk
//!   indexes present are read and [`completion`] sets `complete = true` when all are there. The
//!   flag is never written false, so it can only appear, never flip back.

use schemas::cql::manifest_bucket;
use schemas::{CollectionUpserted, Event, ObjectVersionAdded, ReleasePublished};

/// One row write or delete on a generation's tables, with its write timestamp (microseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// `collections` metadata, `USING TIMESTAMP updated_at`.
    Collection(CollectionRow),
    /// `collection_delivery` row, `USING TIMESTAMP updated_at`.
    CollectionDelivery {
        collection_id: String,
        released: bool,
        updated_at: i64,
    },
    /// `collections.revision = revision`, `USING TIMESTAMP revision`: only ever moves forward.
    Revision {
        collection_id: String,
        revision: i64,
    },
    /// `object_versions`, `USING TIMESTAMP date_added`, and `date_addeds += {date_added}`.
    ObjectVersion(ObjectVersionRow),
    /// `object_contents` row (one content of a version, archival ones included), `USING
    /// TIMESTAMP date_added`.
    ObjectContent(ObjectContentRow),
    /// `content_index` row of the same content, without its JSON, `USING TIMESTAMP date_added`.
    ContentIndex(ContentIndexRow),
    /// `manifest_buckets` row, `USING TIMESTAMP bucket start` (a pure presence marker).
    ManifestBucket { collection_id: String, bucket: i64 },
    /// `manifest` row, `USING TIMESTAMP date_added`.
    ManifestInsert(ManifestRow),
    /// Deletes a `manifest` row `USING TIMESTAMP timestamp` (the version's largest date_added).
    ManifestDelete { key: ManifestKey, timestamp: i64 },
    /// `releases` row (without `complete`), `USING TIMESTAMP date_added`.
    Release(ReleaseRow),
    /// `release_members` row, `USING TIMESTAMP date_added` of the release.
    ReleaseMember(ReleaseMemberRow),
    /// `release_member_contents` row, `USING TIMESTAMP date_added` of the release.
    ReleaseMemberContent(ReleaseMemberContentRow),
    /// `release_chunks` row, `USING TIMESTAMP date_added` of the release.
    ReleaseChunk(ReleaseChunkRow),
    /// `releases.complete = true`, `USING TIMESTAMP date_added` of the release.
    ReleaseComplete { key: ReleaseKey, date_added: i64 },
}

impl Mutation {
    /// The CQL write timestamp of the mutation.
    pub fn timestamp(&self) -> i64 {
        match self {
            Mutation::Collection(c) => c.updated_at,
            Mutation::CollectionDelivery { updated_at, .. } => *updated_at,
            Mutation::ObjectContent(c) => c.date_added,
            Mutation::ContentIndex(c) => c.date_added,
            Mutation::ReleaseMemberContent(m) => m.date_added,
            Mutation::Revision { revision, .. } => *revision,
            Mutation::ObjectVersion(v) => v.date_added,
            Mutation::ManifestBucket { bucket, .. } => {
                bucket.saturating_mul(schemas::cql::MANIFEST_BUCKET_MICROS)
            }
            Mutation::ManifestInsert(m) => m.key.date_added,
            Mutation::ManifestDelete { timestamp, .. } => *timestamp,
            Mutation::Release(r) => r.date_added,
            Mutation::ReleaseMember(m) => m.date_added,
            Mutation::ReleaseChunk(c) => c.date_added,
            Mutation::ReleaseComplete { date_added, .. } => *date_added,
        }
    }

    /// A short name of the target table and operation, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Mutation::Collection(_) => "collection",
            Mutation::CollectionDelivery { .. } => "collection_delivery",
            Mutation::ObjectContent(_) => "object_content",
            Mutation::ContentIndex(_) => "content_index",
            Mutation::ReleaseMemberContent(_) => "release_member_content",
            Mutation::Revision { .. } => "revision",
            Mutation::ObjectVersion(_) => "object_version",
            Mutation::ManifestBucket { .. } => "manifest_bucket",
            Mutation::ManifestInsert(_) => "manifest_insert",
            Mutation::ManifestDelete { .. } => "manifest_delete",
            Mutation::Release(_) => "release",
            Mutation::ReleaseMember(_) => "release_member",
            Mutation::ReleaseChunk(_) => "release_chunk",
            Mutation::ReleaseComplete { .. } => "release_complete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRow {
    pub collection_id: String,
    pub title: String,
    pub description: Option<String>,
    pub alias: Option<String>,
    pub media_types: Vec<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersionRow {
    pub collection_id: String,
    pub object_id: String,
    pub version: i64,
    pub version_text: String,
    pub stix_type: String,
    pub spec_version: String,
    pub date_added: i64,
    /// Compact JSON ([`schemas::compact_json`]): served by the API as is.
    pub object_json: String,
    pub content_sha256: Vec<u8>,
}

/// One content of one version, in `object_contents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectContentRow {
    pub collection_id: String,
    pub object_id: String,
    pub version: i64,
    pub content_sha256: Vec<u8>,
    pub date_added: i64,
    /// Compact JSON, as in [`ObjectVersionRow`].
    pub object_json: String,
}

/// One content of one version, in `content_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentIndexRow {
    pub collection_id: String,
    pub object_id: String,
    pub version: i64,
    pub content_sha256: Vec<u8>,
    pub date_added: i64,
    pub stix_type: String,
    pub spec_version: String,
    pub version_text: String,
}

/// The primary key of a `manifest` row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManifestKey {
    pub collection_id: String,
    pub bucket: i64,
    pub date_added: i64,
    pub object_id: String,
    pub version: i64,
}

impl ManifestKey {
    pub fn new(collection_id: &str, date_added: i64, object_id: &str, version: i64) -> Self {
        ManifestKey {
            collection_id: collection_id.to_owned(),
            bucket: manifest_bucket(date_added),
            date_added,
            object_id: object_id.to_owned(),
            version,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub key: ManifestKey,
    pub stix_type: String,
    pub spec_version: String,
    pub version_text: String,
}

/// The identity of a release: `releases` clustering key, `release_chunks` and
/// `release_members` partition key. `release_timestamp` stands for `release_version` (its
/// canonical text), so this is the contract's (collection, label, release_version).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseKey {
    pub collection_id: String,
    pub release_timestamp: i64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    pub key: ReleaseKey,
    pub release_version: String,
    pub chunk_count: i32,
    pub member_count: i64,
    pub date_added: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseMemberRow {
    pub key: ReleaseKey,
    pub object_id: String,
    pub version: i64,
    pub version_text: String,
    pub date_added: i64,
}

/// The content a release shipped for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseMemberContentRow {
    pub key: ReleaseKey,
    pub object_id: String,
    pub version: i64,
    pub content_sha256: Vec<u8>,
    pub date_added: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseChunkRow {
    pub key: ReleaseKey,
    pub chunk_index: i32,
    pub members: i32,
    pub date_added: i64,
}

/// The value of the collection's single sequence the event carries (see docs/events.md): the
/// revision a collection reaches once this event and every earlier one are applied.
pub fn sequence(event: &Event) -> i64 {
    match event {
        Event::Collection(c) => c.updated_at,
        Event::ObjectVersion(v) => v.date_added,
        Event::Release(r) => r.date_added,
    }
}

/// The writes of an event that need no read: everything but the manifest rows of a version
/// and the completion of a release. Every content of a version is kept (`object_contents`,
/// `content_index`) for the releases that name it; an archival content (an older release's,
/// published late) goes nowhere else, so it never replaces the newest content.
pub fn writes(event: &Event) -> Vec<Mutation> {
    match event {
        Event::Collection(c) => vec![
            collection(c),
            Mutation::CollectionDelivery {
                collection_id: c.collection_id.clone(),
                released: c.released,
                updated_at: c.updated_at,
            },
        ],
        Event::ObjectVersion(v) if v.archival => {
            object_content(v, schemas::compact_json(&v.object_json)).into()
        }
        Event::ObjectVersion(v) => {
            // Compacted once: the version row and the content row serve the same text.
            let object_json = schemas::compact_json(&v.object_json);
            let mut out = vec![
                Mutation::ObjectVersion(object_version(v, object_json.clone())),
                Mutation::ManifestBucket {
                    collection_id: v.collection_id.clone(),
                    bucket: manifest_bucket(v.date_added),
                },
            ];
            out.extend(object_content(v, object_json));
            out
        }
        Event::Release(r) => {
            let mut out: Vec<Mutation> = release_members(r).collect();
            out.extend(release_rows(r));
            out
        }
    }
}

fn collection(c: &CollectionUpserted) -> Mutation {
    Mutation::Collection(CollectionRow {
        collection_id: c.collection_id.clone(),
        title: c.title.clone(),
        description: c.description.clone(),
        alias: c.alias.clone(),
        media_types: c.media_types.clone(),
        updated_at: c.updated_at,
    })
}

/// The `object_versions` row of the event; `object_json` is its compacted text.
fn object_version(v: &ObjectVersionAdded, object_json: String) -> ObjectVersionRow {
    ObjectVersionRow {
        collection_id: v.collection_id.clone(),
        object_id: v.object_id.clone(),
        version: v.version_micros,
        version_text: v.version.clone(),
        stix_type: v.stix_type.clone(),
        spec_version: v.spec_version.clone(),
        date_added: v.date_added,
        object_json,
        content_sha256: v.content_sha256.to_vec(),
    }
}

/// The `object_contents` and `content_index` rows of the event's content; `object_json` is its
/// compacted text.
fn object_content(v: &ObjectVersionAdded, object_json: String) -> [Mutation; 2] {
    [
        Mutation::ObjectContent(ObjectContentRow {
            collection_id: v.collection_id.clone(),
            object_id: v.object_id.clone(),
            version: v.version_micros,
            content_sha256: v.content_sha256.to_vec(),
            date_added: v.date_added,
            object_json,
        }),
        Mutation::ContentIndex(ContentIndexRow {
            collection_id: v.collection_id.clone(),
            object_id: v.object_id.clone(),
            version: v.version_micros,
            content_sha256: v.content_sha256.to_vec(),
            date_added: v.date_added,
            stix_type: v.stix_type.clone(),
            spec_version: v.spec_version.clone(),
            version_text: v.version.clone(),
        }),
    ]
}

/// The identity of the release a chunk belongs to.
pub fn release_key(r: &ReleasePublished) -> ReleaseKey {
    ReleaseKey {
        collection_id: r.collection_id.clone(),
        release_timestamp: r.release_timestamp,
        label: r.label.clone(),
    }
}

/// One `release_members` row per member of the chunk, and its `release_member_contents` row
/// when the event names the content (written before the chunk row, so a chunk counted present
/// has all its members).
pub fn release_members(r: &ReleasePublished) -> impl Iterator<Item = Mutation> + '_ {
    let key = release_key(r);
    r.members.iter().flat_map(move |m| {
        let member = Mutation::ReleaseMember(ReleaseMemberRow {
            key: key.clone(),
            object_id: m.object_id.clone(),
            version: m.version_micros,
            version_text: m.version.clone(),
            date_added: r.date_added,
        });
        let content = m.content_sha256.map(|digest| {
            Mutation::ReleaseMemberContent(ReleaseMemberContentRow {
                key: key.clone(),
                object_id: m.object_id.clone(),
                version: m.version_micros,
                content_sha256: digest.to_vec(),
                date_added: r.date_added,
            })
        });
        std::iter::once(member).chain(content)
    })
}

/// The `releases` row and this chunk's `release_chunks` row.
pub fn release_rows(r: &ReleasePublished) -> [Mutation; 2] {
    let key = release_key(r);
    [
        Mutation::Release(ReleaseRow {
            key: key.clone(),
            release_version: r.release_version.clone(),
            chunk_count: r.chunk_count,
            member_count: r.member_count,
            date_added: r.date_added,
        }),
        Mutation::ReleaseChunk(ReleaseChunkRow {
            key,
            chunk_index: r.chunk_index,
            members: i32::try_from(r.members.len()).unwrap_or(i32::MAX),
            date_added: r.date_added,
        }),
    ]
}

/// The manifest row of this event's version under this event's `date_added`.
fn manifest_insert(v: &ObjectVersionAdded) -> Mutation {
    Mutation::ManifestInsert(ManifestRow {
        key: ManifestKey::new(
            &v.collection_id,
            v.date_added,
            &v.object_id,
            v.version_micros,
        ),
        stix_type: v.stix_type.clone(),
        spec_version: v.spec_version.clone(),
        version_text: v.version.clone(),
    })
}

/// The manifest rows of a version decided from the event alone, when that is possible: a first
/// publication inserts its row; a correction that names the `date_added` it supersedes inserts
/// its row and deletes the superseded one at its own `date_added` (a delete at the later
/// timestamp beats the superseded insert, whichever arrives first). No read of `date_addeds`
/// and no dependent round trip. `None` for a correction written before schema version 3, which
/// does not say what it supersedes: [`manifest`] after a read decides those.
pub fn manifest_without_read(v: &ObjectVersionAdded) -> Option<Vec<Mutation>> {
    if v.archival {
        // Not the newest content: the manifest does not list it.
        return Some(Vec::new());
    }
    let insert = manifest_insert(v);
    match (v.correction, v.supersedes_date_added) {
        (false, _) => Some(vec![insert]),
        (true, Some(superseded)) => Some(vec![
            insert,
            Mutation::ManifestDelete {
                key: ManifestKey::new(&v.collection_id, superseded, &v.object_id, v.version_micros),
                timestamp: v.date_added,
            },
        ]),
        (true, None) => None,
    }
}

/// The manifest rows of a version once its `date_addeds` (read after writing it, so they
/// include the event's own) are known: insert under the largest, delete under every other, at
/// the largest's timestamp.
pub fn manifest(v: &ObjectVersionAdded, date_addeds: &[i64]) -> Vec<Mutation> {
    let latest = date_addeds
        .iter()
        .copied()
        .chain([v.date_added])
        .max()
        .unwrap_or(v.date_added);
    let mut out = Vec::with_capacity(date_addeds.len());
    if latest == v.date_added {
        out.push(manifest_insert(v));
    }
    for &older in date_addeds.iter().filter(|&&d| d < latest) {
        out.push(Mutation::ManifestDelete {
            key: ManifestKey::new(&v.collection_id, older, &v.object_id, v.version_micros),
            timestamp: latest,
        });
    }
    if latest > v.date_added && !date_addeds.contains(&v.date_added) {
        // Only reachable if the read missed our own write (a consistency level too weak for
        // read-your-writes); deleting our row at `latest` keeps the manifest right anyway.
        out.push(Mutation::ManifestDelete {
            key: ManifestKey::new(
                &v.collection_id,
                v.date_added,
                &v.object_id,
                v.version_micros,
            ),
            timestamp: latest,
        });
    }
    out
}

/// `complete = true` once every chunk index `0..chunk_count` is present.
pub fn completion(r: &ReleasePublished, present: &[i32]) -> Option<Mutation> {
    let all = (0..r.chunk_count).all(|i| present.contains(&i));
    all.then(|| Mutation::ReleaseComplete {
        key: release_key(r),
        date_added: r.date_added,
    })
}

/// The revision write of a collection: the largest sequence value applied (see [`sequence`]).
pub fn revision(collection_id: &str, revision: i64) -> Mutation {
    Mutation::Revision {
        collection_id: collection_id.to_owned(),
        revision,
    }
}

#[cfg(any(test, feature = "generated-logs"))]
pub mod generated;
#[cfg(test)]
mod tests;
