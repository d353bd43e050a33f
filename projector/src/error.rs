//! The projector's error type.

/// Everything that can stop a projector command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CQL request or session failure (the driver's error, boxed to keep `scylla` in `store`).
    #[error("CQL: {context}: {source}")]
    Cql {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A Kafka client failure (boxed to keep `rdkafka` in the consumer and dead-letter modules).
    #[error("Kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The stored control state does not allow the command (e.g. dropping the active generation).
    #[error("{0}")]
    State(String),
    /// Shutdown was requested while work was pending; nothing past the last commit is lost.
    #[error("stopped by shutdown request")]
    Shutdown,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    /// A `map_err` adapter for driver errors.
    pub fn cql<E>(context: impl Into<String>) -> impl FnOnce(E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let context = context.into();
        move |source| Error::Cql {
            context,
            source: Box::new(source),
        }
    }

    /// A `map_err` adapter for Kafka client errors.
    pub fn kafka<E>(context: impl Into<String>) -> impl FnOnce(E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let context = context.into();
        move |source| Error::Kafka {
            context,
            source: Box::new(source),
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
