//! Executing the projector's CQL with the scylla driver: migrations, control rows, prepared writes and the two reads.
//!
//! The only module that imports `scylla`. Every statement here is valid on ScyllaDB and
//! Cassandra 5: single-partition writes with client-supplied `USING TIMESTAMP`, single-partition
//! reads, no batches, no LWT except creating the active-generation pointer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;

use crate::rows::{Mutation, ReleaseKey};
use service::CqlArgs;

use crate::config::{ConsistencyLevel, StoreArgs};
use crate::error::{Error, Result};

/// A generation as recorded in the control keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub generation: i32,
    pub keyspace: String,
    pub state: String,
    pub created_at: Option<i64>,
    pub caught_up_at: Option<i64>,
}

/// The generation readers use (`active_generation` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub generation: i32,
    pub keyspace: String,
}

/// A collection row as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionStatus {
    pub collection_id: String,
    pub title: Option<String>,
    pub revision: Option<i64>,
}

/// A session to the CQL cluster plus the control keyspace's name.
#[derive(Clone)]
pub struct Store {
    session: Arc<Session>,
    control: String,
    replication: String,
    ddl_timeout: Duration,
}

impl Store {
    /// Connects with one execution profile for everything: the configured consistency (reads
    /// must see the writes before them) and a driver-side request timeout.
    pub async fn connect(cql: &CqlArgs, options: &StoreArgs) -> Result<Store> {
        let profile = ExecutionProfile::builder()
            .consistency(consistency(options.consistency))
            .request_timeout(Some(cql.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&cql.nodes)
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = cql.credentials() {
            builder = builder.user(user, password);
        }
        let session = builder
            .build()
            .await
            .map_err(Error::cql(format!("connecting to {:?}", cql.nodes)))?;
        Ok(Store {
            session: Arc::new(session),
            control: cql.keyspace.clone(),
            replication: options.replication.clone(),
            ddl_timeout: options.ddl_timeout,
        })
    }

    pub fn control_keyspace(&self) -> &str {
        &self.control
    }

    async fn ddl(&self, statements: Vec<String>) -> Result<()> {
        for text in statements {
            let mut statement = Statement::new(text.as_str());
            statement.set_request_timeout(Some(self.ddl_timeout));
            self.session
                .query_unpaged(statement, ())
                .await
                .map_err(Error::cql(format!("applying {text:?}")))?;
        }
        self.session
            .await_schema_agreement()
            .await
            .map_err(Error::cql("waiting for schema agreement"))?;
        Ok(())
    }

    /// Applies the control migrations, and the generation migrations to every generation not
    /// retired (so a table added later reaches existing generations too). Creates generation 1
    /// and points `active_generation` at it when there is no active generation yet.
    pub async fn migrate(&self) -> Result<Active> {
        for m in schemas::cql::CONTROL {
            self.ddl(m.statements(&self.control, &self.replication))
                .await?;
        }
        for g in self.generations().await? {
            if g.state != "retired" {
                self.create_generation_tables(&g.keyspace).await?;
            }
        }
        if let Some(active) = self.active().await? {
            return Ok(active);
        }
        let keyspace = schemas::cql::generation_keyspace(&self.control, 1);
        self.create_generation(1, "active").await?;
        // IF NOT EXISTS: two projectors migrating at once agree on one pointer. Only
        // `[applied]` would differ between ScyllaDB and Cassandra, and it is not read.
        self.session
            .query_unpaged(
                format!(
                    "INSERT INTO {}.active_generation (name, generation, keyspace_name, switched_at) \
                     VALUES ('active', ?, ?, ?) IF NOT EXISTS",
                    self.control
                ),
                (1i32, keyspace.as_str(), now_millis()),
            )
            .await
            .map_err(Error::cql("creating the active generation pointer"))?;
        self.active()
            .await?
            .ok_or_else(|| Error::State("active_generation still empty after migrate".into()))
    }

    async fn create_generation_tables(&self, keyspace: &str) -> Result<()> {
        for m in schemas::cql::GENERATION {
            self.ddl(m.statements(keyspace, &self.replication)).await?;
        }
        Ok(())
    }

    /// Records generation `n` (in state `state`) and creates its keyspace and tables.
    pub async fn create_generation(&self, n: i32, state: &str) -> Result<Generation> {
        let keyspace = schemas::cql::generation_keyspace(&self.control, n);
        self.create_generation_tables(&keyspace).await?;
        let created_at = now_millis();
        self.session
            .query_unpaged(
                format!(
                    "INSERT INTO {}.generations (generation, keyspace_name, state, created_at) \
                     VALUES (?, ?, ?, ?)",
                    self.control
                ),
                (n, keyspace.as_str(), state, created_at),
            )
            .await
            .map_err(Error::cql(format!("recording generation {n}")))?;
        Ok(Generation {
            generation: n,
            keyspace,
            state: state.to_owned(),
            created_at: Some(created_at.0),
            caught_up_at: None,
        })
    }

    /// The active generation, if any.
    pub async fn active(&self) -> Result<Option<Active>> {
        let result = self
            .session
            .query_unpaged(
                format!(
                    "SELECT generation, keyspace_name FROM {}.active_generation WHERE name = 'active'",
                    self.control
                ),
                (),
            )
            .await
            .map_err(Error::cql("reading the active generation"))?
            .into_rows_result()
            .map_err(Error::cql("reading the active generation"))?;
        let row = result
            .maybe_first_row::<(Option<i32>, Option<String>)>()
            .map_err(Error::cql("reading the active generation"))?;
        Ok(match row {
            Some((Some(generation), Some(keyspace))) => Some(Active {
                generation,
                keyspace,
            }),
            _ => None,
        })
    }

    /// Every recorded generation, by number.
    pub async fn generations(&self) -> Result<Vec<Generation>> {
        type Row = (
            i32,
            Option<String>,
            Option<String>,
            Option<scylla::value::CqlTimestamp>,
            Option<scylla::value::CqlTimestamp>,
        );
        let result = self
            .session
            .query_unpaged(
                format!(
                    "SELECT generation, keyspace_name, state, created_at, caught_up_at FROM {}.generations",
                    self.control
                ),
                (),
            )
            .await
            .map_err(Error::cql("listing generations"))?
            .into_rows_result()
            .map_err(Error::cql("listing generations"))?;
        let mut generations = Vec::new();
        for row in result
            .rows::<Row>()
            .map_err(Error::cql("listing generations"))?
        {
            let (generation, keyspace, state, created_at, caught_up_at) =
                row.map_err(Error::cql("listing generations"))?;
            generations.push(Generation {
                generation,
                keyspace: keyspace.unwrap_or_else(|| {
                    schemas::cql::generation_keyspace(&self.control, generation)
                }),
                state: state.unwrap_or_default(),
                created_at: created_at.map(|t| t.0),
                caught_up_at: caught_up_at.map(|t| t.0),
            });
        }
        generations.sort_by_key(|g| g.generation);
        Ok(generations)
    }

    pub async fn set_generation_state(&self, n: i32, state: &str) -> Result<()> {
        self.session
            .query_unpaged(
                format!(
                    "UPDATE {}.generations SET state = ? WHERE generation = ?",
                    self.control
                ),
                (state, n),
            )
            .await
            .map_err(Error::cql(format!("setting generation {n} to {state}")))?;
        Ok(())
    }

    pub async fn set_caught_up(&self, n: i32) -> Result<()> {
        self.session
            .query_unpaged(
                format!(
                    "UPDATE {}.generations SET caught_up_at = ? WHERE generation = ?",
                    self.control
                ),
                (now_millis(), n),
            )
            .await
            .map_err(Error::cql(format!("recording generation {n} caught up")))?;
        Ok(())
    }

    /// Points readers at `generation`: one single-row write, atomic for every reader.
    pub async fn switch_active(&self, generation: &Generation) -> Result<()> {
        self.session
            .query_unpaged(
                format!(
                    "UPDATE {}.active_generation SET generation = ?, keyspace_name = ?, switched_at = ? \
                     WHERE name = 'active'",
                    self.control
                ),
                (
                    generation.generation,
                    generation.keyspace.as_str(),
                    now_millis(),
                ),
            )
            .await
            .map_err(Error::cql(format!(
                "switching to generation {}",
                generation.generation
            )))?;
        Ok(())
    }

    pub async fn drop_keyspace(&self, keyspace: &str) -> Result<()> {
        self.ddl(vec![format!("DROP KEYSPACE IF EXISTS {keyspace}")])
            .await
    }

    /// The collections of a generation with their revisions (a full read of a tiny table).
    pub async fn collections(&self, keyspace: &str) -> Result<Vec<CollectionStatus>> {
        let result = self
            .session
            .query_unpaged(
                format!("SELECT collection_id, title, revision FROM {keyspace}.collections"),
                (),
            )
            .await
            .map_err(Error::cql("listing collections"))?
            .into_rows_result()
            .map_err(Error::cql("listing collections"))?;
        let mut out = Vec::new();
        for row in result
            .rows::<(String, Option<String>, Option<i64>)>()
            .map_err(Error::cql("listing collections"))?
        {
            let (collection_id, title, revision) =
                row.map_err(Error::cql("listing collections"))?;
            out.push(CollectionStatus {
                collection_id,
                title,
                revision,
            });
        }
        out.sort_by(|a, b| a.collection_id.cmp(&b.collection_id));
        Ok(out)
    }

    /// Prepares the writes and reads of one generation's keyspace.
    pub async fn generation(&self, keyspace: &str) -> Result<GenerationStore> {
        Ok(GenerationStore {
            session: self.session.clone(),
            keyspace: keyspace.to_owned(),
            statements: Arc::new(Statements::prepare(&self.session, keyspace).await?),
        })
    }
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
        })
    }
}

/// Writes and reads on one generation's keyspace, with prepared statements.
#[derive(Clone)]
pub struct GenerationStore {
    session: Arc<Session>,
    keyspace: String,
    statements: Arc<Statements>,
}

impl GenerationStore {
    pub fn keyspace(&self) -> &str {
        &self.keyspace
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

fn consistency(level: ConsistencyLevel) -> Consistency {
    match level {
        ConsistencyLevel::One => Consistency::One,
        ConsistencyLevel::LocalOne => Consistency::LocalOne,
        ConsistencyLevel::Quorum => Consistency::Quorum,
        ConsistencyLevel::LocalQuorum => Consistency::LocalQuorum,
        ConsistencyLevel::All => Consistency::All,
    }
}

/// Now as a CQL `timestamp` (milliseconds); only for the operator-facing control columns.
fn now_millis() -> scylla::value::CqlTimestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    scylla::value::CqlTimestamp(i64::try_from(millis).unwrap_or(i64::MAX))
}
