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
    /// The brokers could not be reached or refused us: the message names them and the cause.
    #[error("{0}")]
    KafkaUnreachable(String),
    /// The schema registry refused a request or could not be reached.
    #[error(transparent)]
    Registry(service::Error),
    /// The stored control state does not allow the command (e.g. dropping the active generation).
    #[error("{0}")]
    State(String),
    /// The generation's tables are gone, or hold less than this process recorded writing to
    /// them: data was lost under the projector. Never retried in place; `run` re-migrates and
    /// restarts the feed, whose start finds the gap and replays it.
    #[error("the projections of {keyspace} lost data: {detail}")]
    ProjectionsLost { keyspace: String, detail: String },
    /// The group's committed offsets are ahead of what the generation holds, and the group
    /// could not be rewound to replay the difference.
    #[error(
        "the projections of generation {generation} ({keyspace}) lack messages that group {group} \
         committed ({gaps}), and rewinding the group failed: {source}. Stop every projector of \
         the group and start one, or run `projector rebuild`"
    )]
    Gap {
        generation: i32,
        keyspace: String,
        group: String,
        gaps: String,
        #[source]
        source: Box<Error>,
    },
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
    /// A `map_err` adapter for the schema registry's errors.
    pub fn registry(source: service::Error) -> Error {
        Error::Registry(source)
    }

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
