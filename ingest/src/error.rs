//! The one error type of the ingest crate: every failure says which file, URL or topic it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    BundleIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than the limit of {max_bytes} bytes of JSON (raise --max-bundle-bytes)", path.display())]
    BundleTooLarge { path: PathBuf, max_bytes: u64 },
    #[error("{}: not a STIX bundle: {reason}", path.display())]
    NotABundle { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    BundleContent { path: PathBuf, reason: String },
    #[error("workbench {url}: {reason}")]
    Workbench { url: String, reason: String },
    #[error("attack index {url}: {reason}")]
    AttackIndex { url: String, reason: String },
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("kafka: {0}")]
    KafkaState(String),
    /// The brokers could not be reached or refused us: the message names them and the cause.
    #[error("{0}")]
    KafkaUnreachable(String),
    /// The schema registry refused or could not be reached; the message names it.
    #[error(transparent)]
    Registry(#[from] service::Error),
    /// The embedded event log of a node refused an append or a read; the message names its file.
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    /// A task of ours on a blocking thread panicked or was cancelled.
    #[error("{0}")]
    Task(String),
    #[error("event encoding: {0}")]
    Codec(#[from] schemas::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    /// Problems with one input (a file, a Workbench answer) that do not stop the others.
    pub fn is_input_problem(&self) -> bool {
        matches!(
            self,
            Error::BundleIo { .. }
                | Error::BundleTooLarge { .. }
                | Error::NotABundle { .. }
                | Error::BundleContent { .. }
                | Error::Workbench { .. }
                | Error::AttackIndex { .. }
        )
    }

    pub(crate) fn kafka(
        context: impl Into<String>,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
        let context = context.into();
        move |source| Error::Kafka { context, source }
    }
}
