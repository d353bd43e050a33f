//! The error of the event log.

use std::path::PathBuf;

/// What can go wrong with the log file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused an operation on the log file (cannot open it, disk full, locked by another
    /// process, not a log file).
    #[error("event log {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A stored record that does not decode: the file was changed by something else.
    #[error("event log {path}: record {topic}@{offset} is corrupt: {detail}")]
    Corrupt {
        path: PathBuf,
        topic: String,
        offset: i64,
        detail: String,
    },
}
