//! The error of a node.

/// What stops a node's task.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("projecting: {0}")]
    Projector(#[from] projector::Error),
    #[error("encoding a dead letter: {0}")]
    Encode(#[from] schemas::Error),
    /// A task of the node panicked or was cancelled.
    #[error("{0}")]
    Task(String),
    #[error(transparent)]
    Api(#[from] api::Error),
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    #[error("kafka: {0}")]
    Kafka(String),
    /// An import whose every input failed, into an empty log.
    #[error("nothing to serve: every input of the import failed ({0})")]
    NothingToServe(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
