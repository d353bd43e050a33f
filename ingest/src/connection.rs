//! The connection every command works on: the publisher on the event log (Kafka's topics, or a
//! node's embedded log) and the checkpoint rebuilt from it.

use std::sync::Arc;

use eventlog::EmbeddedLog;
use service::KafkaArgs;

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::producer::Producer;
use crate::producer::TopicArgs;
use crate::publisher::Publisher;

/// The publisher on the log and the checkpoint rebuilt from it: what every command needs.
pub(crate) struct Connection {
    pub publisher: Arc<Publisher>,
    pub checkpoint: Checkpoint,
}

/// Opens the connection on a node's embedded log: the checkpoint is rebuilt from its objects
/// topic.
pub(crate) async fn connect_embedded(
    log: &EmbeddedLog,
    metrics: &Metrics,
) -> Result<Connection, Error> {
    let checkpoint = Checkpoint::load_embedded(log).await?;
    metrics.record_checkpoint(&checkpoint);
    Ok(Connection {
        publisher: Arc::new(Publisher::Embedded(log.clone())),
        checkpoint,
    })
}

/// Connects the producer (creating the topics if needed) and rebuilds the checkpoint, both at
/// once: they are independent, and a missing topic simply reads as an empty checkpoint.
pub(crate) async fn connect(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    metrics: &Metrics,
) -> Result<Connection, Error> {
    // First, so that a refused login or an untrusted certificate ends the run at once with its
    // cause instead of a timeout of whichever client tried first.
    let check = kafka.clone();
    tokio::task::spawn_blocking(move || check.check_brokers())
        .await
        .map_err(|e| Error::KafkaState(format!("checking the brokers: {e}")))?
        .map_err(Error::KafkaUnreachable)?;
    let (producer, checkpoint) =
        tokio::try_join!(Producer::connect(kafka, topics), Checkpoint::load(kafka))?;
    metrics.record_checkpoint(&checkpoint);
    Ok(Connection {
        publisher: Arc::new(Publisher::Kafka(Box::new(producer))),
        checkpoint,
    })
}
