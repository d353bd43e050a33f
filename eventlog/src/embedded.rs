//! The log in one SQLite file: one table of records, appended in transactions that are on disk
//! when `append` returns.
//!
//! SQLite because it is the most widely deployed embedded database, survives a killed process
//! and a power cut in WAL mode with full syncs, needs nothing on the host (built from source),
//! and an operator can open the file with the `sqlite3` shell. One writer and any number of
//! readers work at once (WAL); the log holds a connection for each side so that a reader never
//! waits for an append's fsync.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::watch;

use crate::record::{decode_headers, encode_headers};
use crate::{Error, Record, Stored};

/// How long a call waits for another connection's lock (a writer's transaction, a reader in
/// another process) before it fails.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The tables, created when a file is opened the first time. `topics` keeps each topic's next
/// offset, so that the high-water mark never depends on which records compaction kept.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    offset INTEGER NOT NULL,
    key BLOB NOT NULL,
    payload BLOB,
    headers BLOB NOT NULL,
    PRIMARY KEY (topic, offset)
);
CREATE INDEX IF NOT EXISTS records_by_key ON records (topic, key, offset);
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
";

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Records removed because a later record of the topic has the same key.
    pub removed: u64,
    /// Records left in the topic.
    pub kept: u64,
}

/// The log in one file; clones share it.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// Counts committed appends, so that readers can wait for the next one.
    appends: watch::Sender<u64>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens the log at `path`, creating the file and its tables if needed.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let sqlite = |source| Error::Sqlite {
            path: path.to_owned(),
            source,
        };
        let writer = Connection::open(path).map_err(sqlite)?;
        writer.busy_timeout(BUSY_WAIT).map_err(sqlite)?;
        // WAL: readers see the last commit while a writer appends. FULL: the WAL is synced at
        // every commit, so an append that returned survives a power cut, not just a crash.
        // Switching the mode takes an exclusive lock that does not wait for other processes'
        // readers, so a log already in WAL mode is left as it is.
        let mode: String = writer
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            writer
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(sqlite)?;
        }
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite)?;
        writer.execute_batch(SCHEMA).map_err(sqlite)?;
        let reader = Connection::open(path).map_err(sqlite)?;
        reader.busy_timeout(BUSY_WAIT).map_err(sqlite)?;
        Ok(Self::over(path, writer, reader))
    }

    /// Opens an existing log to read it beside the process that writes it (an operator's look,
    /// a test watching a node): nothing is created or changed, and appending fails.
    pub fn open_read_only(path: &Path) -> Result<Self, Error> {
        let sqlite = |source| Error::Sqlite {
            path: path.to_owned(),
            source,
        };
        let open = || -> Result<Connection, Error> {
            let connection = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sqlite)?;
            connection.busy_timeout(BUSY_WAIT).map_err(sqlite)?;
            Ok(connection)
        };
        Ok(Self::over(path, open()?, open()?))
    }

    /// The log at `path` over its two open connections.
    fn over(path: &Path, writer: Connection, reader: Connection) -> Self {
        let (appends, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                appends,
            }),
        }
    }

    /// The file the log lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends `records` to `topic` in one transaction and returns their offsets. When it
    /// returns they are on disk; on an error none of them is in the log.
    pub fn append(&self, topic: &str, records: &[Record]) -> Result<Range<i64>, Error> {
        let mut conn = lock(&self.inner.writer);
        let range = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let first = next_offset(&tx, topic)?;
            let end = {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO records (topic, offset, key, payload, headers)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut offset = first;
                for record in records {
                    insert.execute(params![
                        topic,
                        offset,
                        record.key,
                        record.payload,
                        encode_headers(&record.headers)
                    ])?;
                    offset += 1;
                }
                offset
            };
            tx.execute(
                "INSERT INTO topics (topic, next_offset) VALUES (?1, ?2)
                 ON CONFLICT (topic) DO UPDATE SET next_offset = excluded.next_offset",
                params![topic, end],
            )?;
            tx.commit()?;
            Ok(first..end)
        })()
        .map_err(|source| self.sqlite(source))?;
        drop(conn);
        if !range.is_empty() {
            self.inner.appends.send_modify(|n| *n += 1);
        }
        Ok(range)
    }

    /// Up to `max` records of `topic` from offset `from` on, in offset order. Offsets that
    /// compaction removed are skipped, as a Kafka consumer skips them.
    pub fn read(&self, topic: &str, from: i64, max: usize) -> Result<Vec<Stored>, Error> {
        let conn = lock(&self.inner.reader);
        let rows = (|| {
            let mut select = conn.prepare_cached(
                "SELECT offset, key, payload, headers FROM records
                 WHERE topic = ?1 AND offset >= ?2 ORDER BY offset LIMIT ?3",
            )?;
            let limit = i64::try_from(max).unwrap_or(i64::MAX);
            let rows = select
                .query_map(params![topic, from, limit], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, Option<Vec<u8>>>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })()
        .map_err(|source| self.sqlite(source))?;
        rows.into_iter()
            .map(|(offset, key, payload, headers)| {
                let headers = decode_headers(&headers).map_err(|detail| Error::Corrupt {
                    path: self.inner.path.clone(),
                    topic: topic.to_owned(),
                    offset,
                    detail,
                })?;
                Ok(Stored {
                    offset,
                    record: Record {
                        key,
                        payload,
                        headers,
                    },
                })
            })
            .collect()
    }

    /// The offset the next record of `topic` will get (0 for a topic never appended to).
    pub fn high_water(&self, topic: &str) -> Result<i64, Error> {
        let conn = lock(&self.inner.reader);
        next_offset(&conn, topic).map_err(|source| self.sqlite(source))
    }

    /// Removes every record of `topic` that a later record with the same key supersedes, as
    /// Kafka's log compaction does; the latest record of each key (tombstones too) stays at its
    /// offset, and the high-water mark does not move.
    pub fn compact(&self, topic: &str) -> Result<Compaction, Error> {
        let mut conn = lock(&self.inner.writer);
        (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let removed = tx.execute(
                "DELETE FROM records WHERE topic = ?1 AND offset < (
                     SELECT MAX(later.offset) FROM records AS later
                     WHERE later.topic = records.topic AND later.key = records.key)",
                params![topic],
            )?;
            let kept: i64 = tx.query_row(
                "SELECT COUNT(*) FROM records WHERE topic = ?1",
                params![topic],
                |row| row.get(0),
            )?;
            tx.commit()?;
            Ok(Compaction {
                removed: removed as u64,
                kept: u64::try_from(kept).unwrap_or(0),
            })
        })()
        .map_err(|source| self.sqlite(source))
    }

    /// A receiver that changes after every append that added records; a reader at the
    /// high-water mark waits on it instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.appends.subscribe()
    }

    fn sqlite(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.inner.path.clone(),
            source,
        }
    }
}

fn next_offset(conn: &Connection, topic: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT next_offset FROM topics WHERE topic = ?1",
            params![topic],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// A poisoned lock only means a thread panicked while holding it; every change to the file is a
/// transaction, so the connection is still consistent.
fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
