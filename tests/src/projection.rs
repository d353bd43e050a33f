//! Running the projector in-process on a test's own topics and keyspaces, and reading its CQL projections back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::TryStreamExt;
use projector::config::{Command, ConsistencyLevel, Settings};
use schemas::Event;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Topics;
use crate::{Deadline, cql_nodes, unique_name};

/// The generation tables that hold projected content, in the contract's order: all but
/// `applied_offsets`, which records the consumer's position rather than what was projected.
pub fn tables() -> impl Iterator<Item = &'static str> {
    schemas::cql::GENERATION_TABLES
        .iter()
        .copied()
        .filter(|table| *table != "applied_offsets")
}

/// A projector command running in-process, stopped by cancelling `shutdown`.
pub struct Running {
    pub shutdown: CancellationToken,
    pub metrics: projector::metrics::Metrics,
    pub task: JoinHandle<projector::Result<()>>,
}

impl Running {
    /// Cancels and waits for the command to return its result.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task).await???;
        Ok(())
    }

    /// Events applied so far (all types).
    pub fn applied(&self) -> u64 {
        ["collection", "object_version", "release"]
            .iter()
            .map(|t| self.metrics.events.with_label_values(&[t]).get())
            .sum()
    }

    pub fn dead_lettered(&self) -> u64 {
        ["undecodable", "invalid"]
            .iter()
            .map(|t| self.metrics.dead_letters.with_label_values(&[t]).get())
            .sum()
    }
}

/// The settings of `projector COMMAND` on `topics` and the control keyspace `keyspace`: its own
/// consumer group, consistency `one` (one test node), and short polls so tests wait little.
pub fn settings(topics: &Topics, keyspace: &str, command: Command) -> Settings {
    let mut settings = Settings::new(command);
    settings.kafka = topics.kafka();
    settings.group = format!("{keyspace}-projector");
    settings.cql.nodes = cql_nodes();
    settings.cql.keyspace = keyspace.to_owned();
    settings.store.consistency = ConsistencyLevel::One;
    settings.generation_poll = Duration::from_millis(500);
    settings.progress_interval = Duration::from_secs(1);
    settings
}

/// Starts `projector COMMAND` in-process.
pub fn start(topics: &Topics, keyspace: &str, command: Command) -> anyhow::Result<Running> {
    start_with(settings(topics, keyspace, command))
}

/// Starts the projector in-process with `settings` (a test's variation of [`settings`]).
pub fn start_with(settings: Settings) -> anyhow::Result<Running> {
    let metrics = projector::metrics::Metrics::new()?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(projector::run_with_metrics(
        settings,
        metrics.clone(),
        shutdown.clone(),
    ));
    Ok(Running {
        shutdown,
        metrics,
        task,
    })
}

/// Runs a projector command to completion (`Migrate`, `Rebuild`, `DropGeneration`).
pub async fn command(topics: &Topics, keyspace: &str, command: Command) -> anyhow::Result<()> {
    let running = start(topics, keyspace, command)?;
    tokio::time::timeout(Duration::from_secs(300), running.task).await???;
    Ok(())
}

/// A fresh control keyspace name for one test.
pub fn control_keyspace(prefix: &str) -> String {
    unique_name(prefix)
}

pub async fn session() -> anyhow::Result<Session> {
    Ok(SessionBuilder::new()
        .known_nodes(cql_nodes())
        .build()
        .await?)
}

/// `(generation, keyspace_name)` of the active generation.
pub async fn active(session: &Session, control: &str) -> anyhow::Result<Option<(i32, String)>> {
    let rows = session
        .query_unpaged(
            format!("SELECT generation, keyspace_name FROM {control}.active_generation WHERE name = 'active'"),
            (),
        )
        .await?
        .into_rows_result()?;
    Ok(rows.maybe_first_row::<(i32, String)>()?)
}

/// `generation → state` of every generation the control keyspace records.
pub async fn generations(
    session: &Session,
    control: &str,
) -> anyhow::Result<BTreeMap<i32, String>> {
    let rows = session
        .query_unpaged(
            format!("SELECT generation, state FROM {control}.generations"),
            (),
        )
        .await?
        .into_rows_result()?;
    Ok(rows
        .rows::<(i32, String)>()?
        .collect::<Result<BTreeMap<_, _>, _>>()?)
}

/// Every row of `keyspace.table`, each rendered as text, sorted.
pub async fn dump_table(
    session: &Session,
    keyspace: &str,
    table: &str,
) -> anyhow::Result<Vec<String>> {
    let mut statement =
        scylla::statement::Statement::new(format!("SELECT * FROM {keyspace}.{table}"));
    statement.set_page_size(1000);
    let rows: Vec<scylla::value::Row> = session
        .query_iter(statement, ())
        .await?
        .rows_stream::<scylla::value::Row>()?
        .try_collect()
        .await?;
    let mut out: Vec<String> = rows.iter().map(|r| format!("{:?}", r.columns)).collect();
    out.sort();
    Ok(out)
}

/// Every table of a generation's keyspace, dumped.
pub async fn dump(
    session: &Session,
    keyspace: &str,
) -> anyhow::Result<BTreeMap<&'static str, Vec<String>>> {
    let mut out = BTreeMap::new();
    for table in tables() {
        out.insert(table, dump_table(session, keyspace, table).await?);
    }
    Ok(out)
}

/// Asserts that `other` holds exactly the rows of `reference` in every table, and that
/// `reference` has rows in each (an empty projection equal to another proves nothing).
pub fn assert_same_rows(
    reference: &BTreeMap<&'static str, Vec<String>>,
    other: &BTreeMap<&'static str, Vec<String>>,
) {
    for table in tables() {
        assert!(!reference[table].is_empty(), "{table} has rows");
        assert_eq!(
            reference[table].len(),
            other[table].len(),
            "rows of {table}"
        );
        assert!(reference[table] == other[table], "{table} differs");
    }
}

/// The largest sequence value per collection among `events`: the revision each collection
/// reaches once all of them are applied.
pub fn final_revisions<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for e in events {
        let seq = match e {
            Event::Collection(c) => c.updated_at,
            Event::ObjectVersion(v) => v.date_added,
            Event::Release(r) => r.date_added,
        };
        let slot = out.entry(e.collection_id().to_owned()).or_insert(i64::MIN);
        *slot = (*slot).max(seq);
    }
    out
}

/// Collection revisions in a generation's keyspace.
pub async fn revisions(session: &Session, keyspace: &str) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows = session
        .query_unpaged(
            format!("SELECT collection_id, revision FROM {keyspace}.collections"),
            (),
        )
        .await?
        .into_rows_result()?;
    let mut out = BTreeMap::new();
    for row in rows.rows::<(String, Option<i64>)>()? {
        let (c, r) = row?;
        if let Some(r) = r {
            out.insert(c, r);
        }
    }
    Ok(out)
}

/// Waits until every collection of `expected` has (at least) its expected revision in the
/// active generation of `control`.
pub async fn wait_for_revisions(
    session: &Session,
    control: &str,
    expected: &BTreeMap<String, i64>,
    deadline: Deadline,
) -> anyhow::Result<String> {
    loop {
        if let Some((_, keyspace)) = active(session, control).await.ok().flatten() {
            let now = revisions(session, &keyspace).await.unwrap_or_default();
            if expected
                .iter()
                .all(|(c, r)| now.get(c).is_some_and(|n| n >= r))
            {
                return Ok(keyspace);
            }
            anyhow::ensure!(
                !deadline.passed(),
                "timed out waiting for revisions {expected:?}; have {now:?}"
            );
        } else {
            anyhow::ensure!(
                !deadline.passed(),
                "timed out waiting for an active generation in {control}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `running` has applied (or dead-lettered) `n` messages.
pub async fn wait_for_applied(running: &Running, n: u64, deadline: Deadline) -> anyhow::Result<()> {
    while running.applied() + running.dead_lettered() < n {
        anyhow::ensure!(
            !deadline.passed(),
            "timed out: applied {} + dead-lettered {} of {n}",
            running.applied(),
            running.dead_lettered()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// `(object_id, version_text)` → object_json of every row of `object_versions` in `keyspace`.
pub async fn object_versions(
    session: &Session,
    keyspace: &str,
) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let mut statement = scylla::statement::Statement::new(format!(
        "SELECT object_id, version_text, object_json FROM {keyspace}.object_versions"
    ));
    statement.set_page_size(1000);
    let rows: Vec<(String, String, String)> = session
        .query_iter(statement, ())
        .await?
        .rows_stream::<(String, String, String)>()?
        .try_collect()
        .await?;
    Ok(rows.into_iter().map(|(o, v, j)| ((o, v), j)).collect())
}

/// The manifest of a collection, read bucket by bucket as the API would:
/// `(object_id, version_text)` → every date_added it is listed under.
pub async fn manifest(
    session: &Session,
    keyspace: &str,
    collection_id: &str,
) -> anyhow::Result<BTreeMap<(String, String), Vec<i64>>> {
    let buckets = session
        .query_unpaged(
            format!("SELECT bucket FROM {keyspace}.manifest_buckets WHERE collection_id = ?"),
            (collection_id,),
        )
        .await?
        .into_rows_result()?;
    let mut out: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for bucket in buckets.rows::<(i64,)>()? {
        let (bucket,) = bucket?;
        let mut statement = scylla::statement::Statement::new(format!(
            "SELECT date_added, object_id, version_text FROM {keyspace}.manifest \
             WHERE collection_id = ? AND bucket = ?"
        ));
        statement.set_page_size(1000);
        let rows: Vec<(i64, String, String)> = session
            .query_iter(statement, (collection_id, bucket))
            .await?
            .rows_stream::<(i64, String, String)>()?
            .try_collect()
            .await?;
        for (d, o, v) in rows {
            out.entry((o, v)).or_default().push(d);
        }
    }
    Ok(out)
}

/// A release as stored: `(label, complete)` and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRelease {
    pub release_timestamp: i64,
    pub label: String,
    pub complete: bool,
    pub members: BTreeSet<(String, String)>,
}

/// A collection's releases, newest release_timestamp first (the table's clustering order).
pub async fn releases(
    session: &Session,
    keyspace: &str,
    collection_id: &str,
) -> anyhow::Result<Vec<StoredRelease>> {
    let rows = session
        .query_unpaged(
            format!(
                "SELECT release_timestamp, label, complete FROM {keyspace}.releases WHERE collection_id = ?"
            ),
            (collection_id,),
        )
        .await?
        .into_rows_result()?;
    let mut out = Vec::new();
    for row in rows.rows::<(i64, String, Option<bool>)>()? {
        let (release_timestamp, label, complete) = row?;
        let mut statement = scylla::statement::Statement::new(format!(
            "SELECT object_id, version_text FROM {keyspace}.release_members \
             WHERE collection_id = ? AND release_timestamp = ? AND label = ?"
        ));
        statement.set_page_size(2000);
        let members: BTreeSet<(String, String)> = session
            .query_iter(
                statement,
                (collection_id, release_timestamp, label.as_str()),
            )
            .await?
            .rows_stream::<(String, String)>()?
            .try_collect()
            .await?;
        out.push(StoredRelease {
            release_timestamp,
            label,
            complete: complete.unwrap_or(false),
            members,
        });
    }
    Ok(out)
}

/// Whether `keyspace` exists on the cluster `session` is connected to.
pub async fn keyspace_exists(session: &Session, keyspace: &str) -> anyhow::Result<bool> {
    let rows = session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await?
        .into_rows_result()?;
    Ok(rows.rows_num() > 0)
}

/// Drops a test's control keyspace and its generations' keyspaces (`<control>_g<N>`):
/// Cassandra's heap is small, and every keyspace costs some of it.
pub async fn drop_keyspaces(session: &Session, control: &str) -> anyhow::Result<()> {
    let rows = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await?
        .into_rows_result()?;
    let prefix = format!("{control}_g");
    let mut doomed = Vec::new();
    for row in rows.rows::<(String,)>()? {
        let (name,) = row?;
        if name == control || name.starts_with(&prefix) {
            doomed.push(name);
        }
    }
    for name in doomed {
        let mut statement =
            scylla::statement::Statement::new(format!("DROP KEYSPACE IF EXISTS {name}"));
        statement.set_request_timeout(Some(Duration::from_secs(120)));
        session.query_unpaged(statement, ()).await?;
    }
    Ok(())
}

/// Checks that the projections of `keyspace` serve exactly `files`: every version with the
/// newest file's content (the history root), and every file's release complete with exactly its
/// versions (its release root). The truth comes from the files, not from Taxiway.
pub async fn check_serves(
    session: &Session,
    keyspace: &str,
    files: &[crate::fixtures::Release],
) -> anyhow::Result<()> {
    let stored = object_versions(session, keyspace).await?;
    let mut newest: BTreeMap<(String, String), &serde_json::Value> = BTreeMap::new();
    for file in files {
        newest.extend(file.by_version());
    }
    let missing: Vec<_> = newest.keys().filter(|k| !stored.contains_key(*k)).collect();
    let extra: Vec<_> = stored.keys().filter(|k| !newest.contains_key(*k)).collect();
    anyhow::ensure!(
        missing.is_empty() && extra.is_empty(),
        "{keyspace}: {} versions missing (e.g. {:?}), {} not in the files (e.g. {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (key, object) in &newest {
        let projected: serde_json::Value = serde_json::from_str(&stored[key])?;
        anyhow::ensure!(&&projected == object, "{keyspace}: content of {key:?}");
    }
    for file in files {
        let label = file
            .collection()
            .and_then(|c| c["x_mitre_version"].as_str())
            .ok_or_else(|| anyhow::anyhow!("{}: no x_mitre_version", file.name))?;
        let found = releases(session, keyspace, &file.collection_id()).await?;
        let release = found
            .iter()
            .find(|r| r.label == label)
            .ok_or_else(|| anyhow::anyhow!("{}: release {label} not projected", file.name))?;
        anyhow::ensure!(
            release.complete,
            "{}: release {label} incomplete",
            file.name
        );
        anyhow::ensure!(
            release.members == file.versions(),
            "{}: release {label} has {} members, the file {} versions",
            file.name,
            release.members.len(),
            file.versions().len()
        );
    }
    Ok(())
}
