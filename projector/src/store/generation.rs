//! One generation's keyspace: its prepared writes and reads, and its record of applied offsets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::error::{Error, Result};
use crate::rows::{Mutation, ReleaseKey};
use service::now_micros;

pub(super) async fn missing_tables(session: &Session, keyspace: &str) -> Result<Vec<&'static str>> {
    let context = || format!("listing the tables of {keyspace}");
    let result = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(Error::cql(context()))?
        .into_rows_result()
        .map_err(Error::cql(context()))?;
    let mut present = Vec::new();
    for row in result.rows::<(String,)>().map_err(Error::cql(context()))? {
        present.push(row.map_err(Error::cql(context()))?.0);
    }
    Ok(schemas::cql::GENERATION_TABLES
        .iter()
        .copied()
        .filter(|t| !present.iter().any(|p| p == t))
        .collect())
}

/// The prepared statements of one generation, created once.
struct Statements {
    collection: PreparedStatement,
    revision: PreparedStatement,
    object_version: PreparedStatement,
    date_addeds: PreparedStatement,
    manifest_bucket: PreparedStatement,
    manifest_insert: PreparedStatement,
    manifest_delete: PreparedStatement,
    release: PreparedStatement,
    release_member: PreparedStatement,
    release_chunk: PreparedStatement,
    release_chunks: PreparedStatement,
    release_complete: PreparedStatement,
    collection_delivery: PreparedStatement,
    object_content: PreparedStatement,
    content_index: PreparedStatement,
    release_member_content: PreparedStatement,
    applied_offset: PreparedStatement,
    applied_offsets: PreparedStatement,
}

impl Statements {
    async fn prepare(session: &Session, ks: &str) -> Result<Statements> {
        let prepare = |cql: String| async move {
            let mut statement = session
                .prepare(cql.as_str())
                .await
                .map_err(Error::cql(format!("preparing {cql:?}")))?;
            // Every write carries its own timestamp, so re-executing one (driver retry,
            // speculative execution, our own retry) is harmless.
            statement.set_is_idempotent(true);
            Ok::<_, Error>(statement)
        };
        Ok(Statements {
            collection: prepare(format!(
                "INSERT INTO {ks}.collections (collection_id, title, description, alias, media_types, \
                 updated_at) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            revision: prepare(format!(
                "UPDATE {ks}.collections USING TIMESTAMP ? SET revision = ? WHERE collection_id = ?"
            ))
            .await?,
            object_version: prepare(format!(
                "UPDATE {ks}.object_versions USING TIMESTAMP ? SET version_text = ?, stix_type = ?, \
                 spec_version = ?, date_added = ?, object_json = ?, content_sha256 = ?, \
                 date_addeds = date_addeds + ? WHERE collection_id = ? AND object_id = ? AND version = ?"
            ))
            .await?,
            date_addeds: prepare(format!(
                "SELECT date_addeds FROM {ks}.object_versions \
                 WHERE collection_id = ? AND object_id = ? AND version = ?"
            ))
            .await?,
            manifest_bucket: prepare(format!(
                "INSERT INTO {ks}.manifest_buckets (collection_id, bucket) VALUES (?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            manifest_insert: prepare(format!(
                "INSERT INTO {ks}.manifest (collection_id, bucket, date_added, object_id, version, \
                 stix_type, spec_version, version_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            manifest_delete: prepare(format!(
                "DELETE FROM {ks}.manifest USING TIMESTAMP ? WHERE collection_id = ? AND bucket = ? \
                 AND date_added = ? AND object_id = ? AND version = ?"
            ))
            .await?,
            release: prepare(format!(
                "INSERT INTO {ks}.releases (collection_id, release_timestamp, label, release_version, \
                 chunk_count, member_count, date_added) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            release_member: prepare(format!(
                "INSERT INTO {ks}.release_members (collection_id, release_timestamp, label, object_id, \
                 version, version_text) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            release_chunk: prepare(format!(
                "INSERT INTO {ks}.release_chunks (collection_id, release_timestamp, label, chunk_index, \
                 members) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            release_chunks: prepare(format!(
                "SELECT chunk_index FROM {ks}.release_chunks \
                 WHERE collection_id = ? AND release_timestamp = ? AND label = ?"
            ))
            .await?,
            release_complete: prepare(format!(
                "UPDATE {ks}.releases USING TIMESTAMP ? SET complete = true \
                 WHERE collection_id = ? AND release_timestamp = ? AND label = ?"
            ))
            .await?,
            collection_delivery: prepare(format!(
                "INSERT INTO {ks}.collection_delivery (collection_id, released) VALUES (?, ?) \
                 USING TIMESTAMP ?"
            ))
            .await?,
            object_content: prepare(format!(
                "INSERT INTO {ks}.object_contents (collection_id, object_id, version, content_sha256, \
                 date_added, object_json) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            content_index: prepare(format!(
                "INSERT INTO {ks}.content_index (collection_id, object_id, version, content_sha256, \
                 date_added, stix_type, spec_version, version_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 USING TIMESTAMP ?"
            ))
            .await?,
            release_member_content: prepare(format!(
                "INSERT INTO {ks}.release_member_contents (collection_id, release_timestamp, label, \
                 object_id, version, content_sha256) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            applied_offset: prepare(format!(
                "INSERT INTO {ks}.applied_offsets (topic, partition, next_offset) VALUES (?, ?, ?) \
                 USING TIMESTAMP ?"
            ))
            .await?,
            applied_offsets: prepare(format!(
                "SELECT partition, next_offset FROM {ks}.applied_offsets WHERE topic = ?"
            ))
            .await?,
        })
    }
}

/// Writes and reads on one generation's keyspace, with prepared statements.
#[derive(Clone)]
pub struct GenerationStore {
    session: Arc<Session>,
    keyspace: String,
    statements: Arc<Statements>,
    /// The write timestamp of the last `applied_offsets` write (see [`Self::record_applied`]).
    last_record: Arc<AtomicI64>,
}

impl GenerationStore {
    /// Prepares the statements of the generation in `keyspace`.
    pub(super) async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<GenerationStore> {
        let statements = Arc::new(Statements::prepare(&session, keyspace).await?);
        Ok(GenerationStore {
            session,
            keyspace: keyspace.to_owned(),
            statements,
            last_record: Arc::new(AtomicI64::new(0)),
        })
    }

    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// See [`Store::missing_tables`].
    pub async fn missing_tables(&self) -> Result<Vec<&'static str>> {
        missing_tables(&self.session, &self.keyspace).await
    }

    /// The next offset to apply per partition of `topic`, as this generation recorded it.
    pub async fn applied_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        let context = "reading applied_offsets";
        let result = self
            .session
            .execute_unpaged(&self.statements.applied_offsets, (topic,))
            .await
            .map_err(Error::cql(context))?
            .into_rows_result()
            .map_err(Error::cql(context))?;
        let mut out = BTreeMap::new();
        for row in result
            .rows::<(i32, Option<i64>)>()
            .map_err(Error::cql(context))?
        {
            if let (partition, Some(next)) = row.map_err(Error::cql(context))? {
                out.insert(partition, next);
            }
        }
        Ok(out)
    }

    /// Records that every message of `topic`/`partition` before `next_offset` is applied (once:
    /// retrying is the caller's decision).
    ///
    /// The write timestamp is the clock's, not the offset: a record may legitimately move back
    /// (a replay after a loss), and a DELETE would shadow offset-sized timestamps forever. It is
    /// strictly increasing within this process, so two records of one partition written in a
    /// row never tie or swap, whichever coordinators take them.
    pub async fn record_applied(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<()> {
        let now = now_micros();
        let next = |last: i64| now.max(last.saturating_add(1));
        // The closure always returns `Some`, so `fetch_update` cannot fail: both arms agree.
        let timestamp =
            match self
                .last_record
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                    Some(next(last))
                }) {
                Ok(last) | Err(last) => next(last),
            };
        self.session
            .execute_unpaged(
                &self.statements.applied_offset,
                (topic, partition, next_offset, timestamp),
            )
            .await
            .map_err(Error::cql("writing applied_offsets"))?;
        Ok(())
    }

    /// Executes one mutation (once: retrying is the caller's decision).
    pub async fn write(&self, m: &Mutation) -> Result<()> {
        let s = &*self.statements;
        let ts = m.timestamp();
        let result = match m {
            Mutation::Collection(c) => {
                self.session
                    .execute_unpaged(
                        &s.collection,
                        (
                            &c.collection_id,
                            &c.title,
                            &c.description,
                            &c.alias,
                            &c.media_types,
                            c.updated_at,
                            ts,
                        ),
                    )
                    .await
            }
            Mutation::Revision {
                collection_id,
                revision,
            } => {
                self.session
                    .execute_unpaged(&s.revision, (ts, revision, collection_id))
                    .await
            }
            Mutation::CollectionDelivery {
                collection_id,
                released,
                ..
            } => {
                self.session
                    .execute_unpaged(&s.collection_delivery, (collection_id, released, ts))
                    .await
            }
            Mutation::ObjectContent(c) => {
                self.session
                    .execute_unpaged(
                        &s.object_content,
                        (
                            &c.collection_id,
                            &c.object_id,
                            c.version,
                            &c.content_sha256,
                            c.date_added,
                            &c.object_json,
                            ts,
                        ),
                    )
                    .await
            }
            Mutation::ContentIndex(c) => {
                self.session
                    .execute_unpaged(
                        &s.content_index,
                        (
                            &c.collection_id,
                            &c.object_id,
                            c.version,
                            &c.content_sha256,
                            c.date_added,
                            &c.stix_type,
                            &c.spec_version,
                            &c.version_text,
                            ts,
                        ),
                    )
                    .await
            }
            Mutation::ReleaseMemberContent(m) => {
                let k = &m.key;
                self.session
                    .execute_unpaged(
                        &s.release_member_content,
                        (
                            &k.collection_id,
                            k.release_timestamp,
                            &k.label,
                            &m.object_id,
                            m.version,
                            &m.content_sha256,
                            ts,
                        ),
                    )
                    .await
            }
            Mutation::ObjectVersion(v) => {
                self.session
                    .execute_unpaged(
                        &s.object_version,
                        (
                            ts,
                            &v.version_text,
                            &v.stix_type,
                            &v.spec_version,
                            v.date_added,
                            &v.object_json,
                            &v.content_sha256,
                            vec![v.date_added],
                            &v.collection_id,
                            &v.object_id,
                            v.version,
                        ),
                    )
                    .await
            }
            Mutation::ManifestBucket {
                collection_id,
                bucket,
            } => {
                self.session
                    .execute_unpaged(&s.manifest_bucket, (collection_id, bucket, ts))
                    .await
            }
            Mutation::ManifestInsert(row) => {
                let k = &row.key;
                self.session
                    .execute_unpaged(
                        &s.manifest_insert,
                        (
                            &k.collection_id,
                            k.bucket,
                            k.date_added,
                            &k.object_id,
                            k.version,
                            &row.stix_type,
                            &row.spec_version,
                            &row.version_text,
                            ts,
                        ),
                    )
                    .await
            }
            Mutation::ManifestDelete { key: k, timestamp } => {
                self.session
                    .execute_unpaged(
                        &s.manifest_delete,
                        (
                            timestamp,
                            &k.collection_id,
                            k.bucket,
                            k.date_added,
                            &k.object_id,
                            k.version,
                        ),
                    )
                    .await
            }
            Mutation::Release(r) => {
                let k = &r.key;
                self.session
                    .execute_unpaged(
                        &s.release,
                        (
                            &k.collection_id,
                            k.release_timestamp,
                            &k.label,
                            &r.release_version,
                            r.chunk_count,
                            r.member_count,
                            r.date_added,
                            ts,
                        ),
                    )
                    .await
            }
            Mutation::ReleaseMember(m) => {
                let k = &m.key;
                self.session
                    .execute_unpaged(
                        &s.release_member,
                        (
                            &k.collection_id,
                            k.release_timestamp,
                            &k.label,
                            &m.object_id,
                            m.version,
                            &m.version_text,
                            ts,
                        ),
                    )
                    .await
            }
            Mutation::ReleaseChunk(c) => {
                let k = &c.key;
                self.session
                    .execute_unpaged(
                        &s.release_chunk,
                        (
                            &k.collection_id,
                            k.release_timestamp,
                            &k.label,
                            c.chunk_index,
                            c.members,
                            ts,
                        ),
                    )
                    .await
            }
            Mutation::ReleaseComplete { key: k, .. } => {
                self.session
                    .execute_unpaged(
                        &s.release_complete,
                        (ts, &k.collection_id, k.release_timestamp, &k.label),
                    )
                    .await
            }
        };
        result.map_err(Error::cql(format!("writing {}", m.kind())))?;
        Ok(())
    }

    /// Every `date_added` recorded for one object version.
    pub async fn date_addeds(
        &self,
        collection_id: &str,
        object_id: &str,
        version: i64,
    ) -> Result<Vec<i64>> {
        let result = self
            .session
            .execute_unpaged(
                &self.statements.date_addeds,
                (collection_id, object_id, version),
            )
            .await
            .map_err(Error::cql("reading date_addeds"))?
            .into_rows_result()
            .map_err(Error::cql("reading date_addeds"))?;
        let row = result
            .maybe_first_row::<(Option<Vec<i64>>,)>()
            .map_err(Error::cql("reading date_addeds"))?;
        Ok(row.and_then(|(set,)| set).unwrap_or_default())
    }

    /// The chunk indexes of a release written so far.
    pub async fn release_chunks(&self, key: &ReleaseKey) -> Result<Vec<i32>> {
        let result = self
            .session
            .execute_unpaged(
                &self.statements.release_chunks,
                (&key.collection_id, key.release_timestamp, &key.label),
            )
            .await
            .map_err(Error::cql("reading release chunks"))?
            .into_rows_result()
            .map_err(Error::cql("reading release chunks"))?;
        let mut out = Vec::new();
        for row in result
            .rows::<(i32,)>()
            .map_err(Error::cql("reading release chunks"))?
        {
            out.push(row.map_err(Error::cql("reading release chunks"))?.0);
        }
        Ok(out)
    }
}

impl crate::tables::Tables for GenerationStore {
    fn name(&self) -> &str {
        self.keyspace()
    }

    fn write(&self, m: &Mutation) -> impl std::future::Future<Output = Result<()>> + Send {
        GenerationStore::write(self, m)
    }

    fn date_addeds(
        &self,
        collection_id: &str,
        object_id: &str,
        version: i64,
    ) -> impl std::future::Future<Output = Result<Vec<i64>>> + Send {
        GenerationStore::date_addeds(self, collection_id, object_id, version)
    }

    fn release_chunks(
        &self,
        key: &ReleaseKey,
    ) -> impl std::future::Future<Output = Result<Vec<i32>>> + Send {
        GenerationStore::release_chunks(self, key)
    }

    fn missing_tables(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<&'static str>>> + Send {
        GenerationStore::missing_tables(self)
    }
}
