//! Executing the projector's CQL with the scylla driver: migrations, control rows, prepared writes and the two reads.
//!
//! The only module that imports `scylla`. Every statement here is valid on ScyllaDB and
//! Cassandra 5: single-partition writes with client-supplied `USING TIMESTAMP`, single-partition
//! reads, no batches, no LWT except creating the active-generation pointer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::client::session::Session;
use scylla::statement::unprepared::Statement;

use service::CqlArgs;

use crate::config::StoreArgs;
use crate::error::{Error, Result};

mod generation;

pub use generation::GenerationStore;
use generation::missing_tables;

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
    /// must see the writes before them), the driver-side request timeout, and the connection
    /// settings `CqlArgs` turns into a session builder (credentials, TLS, local datacenter).
    pub async fn connect(cql: &CqlArgs, options: &StoreArgs) -> Result<Store> {
        let endpoint = cql.nodes.join(",");
        let session = cql
            .session_builder(options.consistency)
            .map_err(Error::cql(format!("connecting to {endpoint}")))?
            .build()
            .await
            .map_err(Error::cql(format!("connecting to {endpoint}")))?;
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
        GenerationStore::prepare(self.session.clone(), keyspace).await
    }

    /// The tables of a generation keyspace that `system_schema` does not list (all of them when
    /// the keyspace is gone). Asked when a request fails: the schema tables say for sure what
    /// an error message would only suggest, in the same words on ScyllaDB and Cassandra.
    pub async fn missing_tables(&self, keyspace: &str) -> Result<Vec<&'static str>> {
        missing_tables(&self.session, keyspace).await
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
