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
    /// A blocking task of the node panicked or was cancelled.
    #[error("{0}")]
    Task(String),
}
