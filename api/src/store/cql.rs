//! The CQL [`Store`]: reads the projector's tables (`schemas/cql/*.cql`), connecting when the cluster answers. The only module that imports `scylla`.
//!
//! Reads, all single-partition, no `ALLOW FILTERING`:
//! - `{control}.active_generation` → the generation keyspace (polled every tick);
//! - `collections` → revisions (one small table scan per tick);
//! - per collection index: `collections` row → `manifest_buckets` → `manifest` per bucket (every
//!   version's id, type, spec_version and date_added) → `collection_delivery` → `releases` →
//!   `release_members` and `release_member_contents` per complete release → `content_index`
//!   (one scan, only when releases name contents) for the contents of re-issued versions;
//! - object JSON (filling a snapshot, or a lean collection's page): `object_versions` by
//!   primary key, one `version IN ?` read per object, bounded in flight per call and per replica;
//!   a re-issued version's other contents from `object_contents` by primary key.
//!
//! Statements are prepared once per generation keyspace and reused until the generation changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::{Mutex, OnceCell, Semaphore};

use super::{
    CollectionData, CollectionMeta, CollectionRevision, ContentKey, Generation, ReleaseRow, Store,
    StoreError, VersionRow,
};
use service::CqlArgs;

/// Object reads one fetch keeps in flight.
const OBJECT_READS_IN_FLIGHT: usize = 64;

/// Object reads in flight across every fetch of this replica (snapshot loads and lean pages
/// together): many concurrent lean requests must not flood the cluster.
const READS_IN_FLIGHT: usize = 256;

/// A session and the statements of the current generation.
pub struct CqlStore {
    session: Arc<Session>,
    control: String,
    /// Prepared on first use, not at connect: the API may start before the projector created
    /// the keyspace, and must then report "not ready" and retry rather than exit.
    active: Mutex<Option<PreparedStatement>>,
    prepared: Mutex<Option<(String, Arc<Statements>)>>,
    reads: Semaphore,
}

/// `(version, object_json)` of `object_versions`.
type JsonRow = (i64, Option<String>);

/// One content of one version — `(object_id, version, content_sha256)` — and its JSON.
type ContentRow = ((String, i64, [u8; 32]), Option<String>);

struct Statements {
    list: PreparedStatement,
    meta: PreparedStatement,
    buckets: PreparedStatement,
    manifest: PreparedStatement,
    fetch: PreparedStatement,
    releases: PreparedStatement,
    members: PreparedStatement,
    member_contents: PreparedStatement,
    content_index: PreparedStatement,
    content: PreparedStatement,
    delivery: PreparedStatement,
}

fn err(context: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::new(context, e)
}

impl CqlStore {
    /// Connects with the configured read consistency (LOCAL_QUORUM by default, so that a
    /// replica sees what the projector wrote before bumping a revision).
    pub async fn connect(config: &CqlArgs) -> Result<CqlStore, StoreError> {
        let context = format!("connecting to {}", config.nodes.join(","));
        let session = config
            .session_builder(config.read_consistency)
            .map_err(|e| StoreError::new(context.clone(), e))?
            .build()
            .await
            .map_err(|e| StoreError::new(context, e))?;
        Ok(CqlStore {
            session: Arc::new(session),
            control: config.keyspace.clone(),
            active: Mutex::new(None),
            prepared: Mutex::new(None),
            reads: Semaphore::new(READS_IN_FLIGHT),
        })
    }

    async fn active_statement(&self) -> Result<PreparedStatement, StoreError> {
        let mut guard = self.active.lock().await;
        if let Some(p) = guard.as_ref() {
            return Ok(p.clone());
        }
        let prepared = self
            .session
            .prepare(format!(
                "SELECT generation, keyspace_name FROM {}.active_generation WHERE name = 'active'",
                self.control
            ))
            .await
            .map_err(|e| err("preparing the active generation read")(&e))?;
        *guard = Some(prepared.clone());
        Ok(prepared)
    }

    async fn statements(&self, keyspace: &str) -> Result<Arc<Statements>, StoreError> {
        let mut guard = self.prepared.lock().await;
        if let Some((ks, s)) = guard.as_ref()
            && ks == keyspace
        {
            return Ok(s.clone());
        }
        let prepare = |text: String| {
            let session = self.session.clone();
            async move {
                session
                    .prepare(text.clone())
                    .await
                    .map_err(|e| StoreError::new(format!("preparing {text:?}"), e))
            }
        };
        let k = keyspace;
        let s = Arc::new(Statements {
            list: prepare(format!("SELECT collection_id, revision FROM {k}.collections")).await?,
            meta: prepare(format!(
                "SELECT title, description, alias, media_types, revision FROM {k}.collections WHERE collection_id = ?"
            ))
            .await?,
            buckets: prepare(format!("SELECT bucket FROM {k}.manifest_buckets WHERE collection_id = ?")).await?,
            manifest: prepare(format!(
                "SELECT date_added, object_id, version, stix_type, spec_version, version_text \
                 FROM {k}.manifest WHERE collection_id = ? AND bucket = ?"
            ))
            .await?,
            fetch: prepare(format!(
                "SELECT version, object_json FROM {k}.object_versions \
                 WHERE collection_id = ? AND object_id = ? AND version IN ?"
            ))
            .await?,
            releases: prepare(format!(
                "SELECT release_timestamp, label, complete FROM {k}.releases WHERE collection_id = ?"
            ))
            .await?,
            members: prepare(format!(
                "SELECT object_id, version FROM {k}.release_members \
                 WHERE collection_id = ? AND release_timestamp = ? AND label = ?"
            ))
            .await?,
            member_contents: prepare(format!(
                "SELECT object_id, version, content_sha256 FROM {k}.release_member_contents \
                 WHERE collection_id = ? AND release_timestamp = ? AND label = ?"
            ))
            .await?,
            content_index: prepare(format!(
                "SELECT object_id, version, content_sha256, date_added, stix_type, spec_version, \
                 version_text FROM {k}.content_index WHERE collection_id = ?"
            ))
            .await?,
            content: prepare(format!(
                "SELECT object_json FROM {k}.object_contents WHERE collection_id = ? \
                 AND object_id = ? AND version = ? AND content_sha256 = ?"
            ))
            .await?,
            delivery: prepare(format!(
                "SELECT released FROM {k}.collection_delivery WHERE collection_id = ?"
            ))
            .await?,
        });
        *guard = Some((keyspace.to_owned(), s.clone()));
        Ok(s)
    }

    async fn read_index(
        &self,
        generation: &Generation,
        id: &str,
    ) -> Result<Option<CollectionData>, StoreError> {
        let s = self.statements(&generation.keyspace).await?;
        type MetaRow = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<Vec<String>>,
            Option<i64>,
        );
        let meta = self
            .session
            .execute_unpaged(&s.meta, (id,))
            .await
            .map_err(|e| err("reading a collection")(&e))?
            .into_rows_result()
            .map_err(|e| err("reading a collection")(&e))?
            .maybe_first_row::<MetaRow>()
            .map_err(|e| err("reading a collection")(&e))?;
        let Some((title, description, alias, media_types, revision)) = meta else {
            return Ok(None);
        };

        // The manifest holds every version once with everything the index needs, so the index
        // costs one partition scan per day bucket instead of one read per object.
        type ManifestRow = (
            i64,
            String,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let buckets: Vec<(i64,)> = self
            .rows(&s.buckets, (id,), "listing manifest buckets")
            .await?;
        let mut versions = Vec::new();
        for (bucket,) in buckets {
            let rows: Vec<ManifestRow> = self
                .rows(&s.manifest, (id, bucket), "reading the manifest")
                .await?;
            versions.extend(rows.into_iter().filter_map(
                |(date_added, object_id, version, stix_type, spec, text)| {
                    Some(super::index_row(
                        object_id, version, stix_type?, spec, text, date_added, None,
                    ))
                },
            ));
        }

        let released: Vec<(Option<bool>,)> = self
            .rows(&s.delivery, (id,), "reading the collection's delivery")
            .await?;
        let released = released.first().and_then(|(r,)| *r).unwrap_or(false);

        let release_rows: Vec<(i64, String, Option<bool>)> =
            self.rows(&s.releases, (id,), "listing releases").await?;
        let mut releases = Vec::new();
        for (release_timestamp, label, complete) in release_rows {
            let complete = complete.unwrap_or(false);
            let members = if complete {
                self.members(&s, id, release_timestamp, &label).await?
            } else {
                Vec::new()
            };
            releases.push(ReleaseRow {
                release_timestamp,
                label,
                complete,
                members,
            });
        }
        let others = self.other_contents(&s, id, &versions, &releases).await?;
        versions.extend(others);
        Ok(Some(CollectionData {
            meta: CollectionMeta {
                id: id.to_owned(),
                title: title.unwrap_or_default(),
                description,
                alias,
                media_types: media_types.unwrap_or_default(),
                released,
            },
            revision: revision.unwrap_or(0),
            versions,
            releases,
        }))
    }

    /// A release's members, each with the content it shipped when the projection knows it.
    async fn members(
        &self,
        s: &Statements,
        id: &str,
        release_timestamp: i64,
        label: &str,
    ) -> Result<Vec<(String, i64, Option<[u8; 32]>)>, StoreError> {
        let members: Vec<(String, i64)> = self
            .rows(
                &s.members,
                (id, release_timestamp, label),
                "reading release members",
            )
            .await?;
        let contents: Vec<(String, i64, Option<Vec<u8>>)> = self
            .rows(
                &s.member_contents,
                (id, release_timestamp, label),
                "reading release member contents",
            )
            .await?;
        Ok(super::members(members, contents))
    }

    /// The index rows of the contents releases shipped that are not the newest content of
    /// their version (`versions`: the newest, from the manifest). Reads `content_index` only
    /// when some release names a content at all.
    async fn other_contents(
        &self,
        s: &Statements,
        id: &str,
        versions: &[VersionRow],
        releases: &[ReleaseRow],
    ) -> Result<Vec<VersionRow>, StoreError> {
        if !super::names_other_contents(releases) {
            return Ok(Vec::new());
        }
        let index: Vec<super::IndexRow> = self
            .rows(&s.content_index, (id,), "reading the content index")
            .await?;
        Ok(super::other_contents(versions, releases, index))
    }

    async fn fetch(
        &self,
        generation: &Generation,
        id: &str,
        versions: &[ContentKey<'_>],
    ) -> Result<Vec<Bytes>, StoreError> {
        let s = self.statements(&generation.keyspace).await?;
        // One single-partition read per object (`version IN ?`) for newest contents: a snapshot
        // filling its JSON asks for every version of an object at once; a page mostly for one
        // each. A re-issued version's other content is one read by primary key; few exist.
        let mut by_object: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut others: Vec<(String, i64, [u8; 32])> = Vec::new();
        for key in versions {
            match key.content {
                Some(digest) => others.push((key.object_id.to_owned(), key.version, *digest)),
                None => match by_object.get_mut(key.object_id) {
                    Some(wanted) => wanted.push(key.version),
                    None => {
                        by_object.insert(key.object_id.to_owned(), vec![key.version]);
                    }
                },
            }
        }
        // Owned ids: a stream closure taking borrowed ones trips the compiler's lifetime
        // inference for boxed futures.
        let per_object: Vec<(String, Vec<JsonRow>)> = bounded(by_object, |(object_id, wanted)| {
            let s = s.clone();
            async move {
                let rows = self
                    .read_rows(
                        &s.fetch,
                        (id, object_id.as_str(), wanted),
                        "reading object JSON",
                    )
                    .await?;
                Ok((object_id, rows))
            }
        })
        .await?;
        let per_content: Vec<ContentRow> = bounded(others, |(object_id, version, digest)| {
            let s = s.clone();
            async move {
                let rows: Vec<(Option<String>,)> = self
                    .read_rows(
                        &s.content,
                        (id, object_id.as_str(), version, &digest[..]),
                        "reading a release's content",
                    )
                    .await?;
                let json = rows.into_iter().next().and_then(|(json,)| json);
                Ok(((object_id, version, digest), json))
            }
        })
        .await?;
        let mut found: HashMap<(&str, i64, Option<&[u8; 32]>), Bytes> =
            HashMap::with_capacity(versions.len());
        for (object_id, rows) in &per_object {
            for (version, json) in rows {
                if let Some(json) = json {
                    found.insert(
                        (object_id.as_str(), *version, None),
                        Bytes::from(json.clone()),
                    );
                }
            }
        }
        for ((object_id, version, digest), json) in &per_content {
            if let Some(json) = json {
                found.insert(
                    (object_id.as_str(), *version, Some(digest)),
                    Bytes::from(json.clone()),
                );
            }
        }
        versions
            .iter()
            .map(|key| {
                found
                    .get(&(key.object_id, key.version, key.content))
                    .cloned()
                    .ok_or_else(|| super::no_content(key))
            })
            .collect()
    }

    /// [`Self::rows`] under the replica's read semaphore, for the per-object reads a snapshot
    /// fill or a lean page fans out.
    async fn read_rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        context: &'static str,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
    {
        // Never closed: the semaphore lives as long as the store.
        let _permit = self.reads.acquire().await.map_err(|e| err(context)(&e))?;
        self.rows(statement, values, context).await
    }

    /// All rows of a paged query.
    async fn rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        context: &'static str,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
    {
        self.session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(|e| err(context)(&e))?
            .rows_stream::<R>()
            .map_err(|e| err(context)(&e))?
            .try_collect()
            .await
            .map_err(|e| err(context)(&e))
    }
}

impl Store for CqlStore {
    fn active_generation(&self) -> futures::future::BoxFuture<'_, Result<Generation, StoreError>> {
        Box::pin(async move {
            let row = self
                .session
                .execute_unpaged(&self.active_statement().await?, ())
                .await
                .map_err(|e| err("reading the active generation")(&e))?
                .into_rows_result()
                .map_err(|e| err("reading the active generation")(&e))?
                .maybe_first_row::<(Option<i32>, Option<String>)>()
                .map_err(|e| err("reading the active generation")(&e))?;
            match row {
                Some((Some(number), Some(keyspace))) => Ok(Generation { number, keyspace }),
                _ => Err(StoreError::new(
                    "reading the active generation",
                    format!(
                        "no active generation in {}.active_generation yet",
                        self.control
                    ),
                )),
            }
        })
    }

    fn list_collections<'a>(
        &'a self,
        generation: &'a Generation,
    ) -> futures::future::BoxFuture<'a, Result<Vec<CollectionRevision>, StoreError>> {
        Box::pin(async move {
            let s = self.statements(&generation.keyspace).await?;
            let rows: Vec<(String, Option<i64>)> =
                self.rows(&s.list, (), "listing collections").await?;
            Ok(rows
                .into_iter()
                .map(|(collection_id, revision)| CollectionRevision {
                    collection_id,
                    revision: revision.unwrap_or(0),
                })
                .collect())
        })
    }

    fn load_index<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<CollectionData>, StoreError>> {
        Box::pin(self.read_index(generation, collection_id))
    }

    fn fetch_objects<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
        versions: &'a [ContentKey<'a>],
    ) -> futures::future::BoxFuture<'a, Result<Vec<Bytes>, StoreError>> {
        Box::pin(self.fetch(generation, collection_id, versions))
    }
}

/// The CQL store behind a connection that is retried on use: the api serves `/readyz` (503,
/// with the cause) while the cluster is down or refuses it, and becomes ready once it answers.
///
/// Connects on first use, and again on each use after a failed attempt (the refresher's poll
/// paces the attempts); once connected, the driver keeps the session's connections up itself.
pub struct Connecting {
    config: CqlArgs,
    store: OnceCell<CqlStore>,
}

impl Connecting {
    /// Checks what can be checked without the cluster (password, CA, certificate and key
    /// files), so that a settings mistake still stops the api at start.
    pub fn new(config: CqlArgs) -> Result<Connecting, StoreError> {
        config
            .session_builder(config.read_consistency)
            .map_err(|e| StoreError::new("CQL settings", e))?;
        Ok(Connecting {
            config,
            store: OnceCell::new(),
        })
    }

    async fn store(&self) -> Result<&CqlStore, StoreError> {
        self.store
            .get_or_try_init(|| CqlStore::connect(&self.config))
            .await
    }
}

impl Store for Connecting {
    fn active_generation(&self) -> futures::future::BoxFuture<'_, Result<Generation, StoreError>> {
        Box::pin(async move { self.store().await?.active_generation().await })
    }

    fn list_collections<'a>(
        &'a self,
        generation: &'a Generation,
    ) -> futures::future::BoxFuture<'a, Result<Vec<CollectionRevision>, StoreError>> {
        Box::pin(async move { self.store().await?.list_collections(generation).await })
    }

    fn load_index<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<CollectionData>, StoreError>> {
        Box::pin(async move {
            self.store()
                .await?
                .load_index(generation, collection_id)
                .await
        })
    }

    fn fetch_objects<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
        versions: &'a [ContentKey<'a>],
    ) -> futures::future::BoxFuture<'a, Result<Vec<Bytes>, StoreError>> {
        Box::pin(async move {
            self.store()
                .await?
                .fetch_objects(generation, collection_id, versions)
                .await
        })
    }
}

/// Runs `read` for every item, [`OBJECT_READS_IN_FLIGHT`] at a time; the results in any order.
async fn bounded<T, O, F, Fut>(
    items: impl IntoIterator<Item = T>,
    read: F,
) -> Result<Vec<O>, StoreError>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<O, StoreError>>,
{
    futures::stream::iter(items)
        .map(read)
        .buffer_unordered(OBJECT_READS_IN_FLIGHT)
        .try_collect()
        .await
}
