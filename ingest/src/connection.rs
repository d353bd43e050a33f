//! The connection every command works on: the producer on the topics and the checkpoint rebuilt from them.

use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use service::KafkaArgs;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::producer::Producer;
use crate::producer::TopicArgs;

/// The producer on the topics and the checkpoint rebuilt from them: what every command needs.
pub(crate) struct Connection {
    pub producer: Arc<Producer>,
    pub checkpoint: Checkpoint,
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
        producer: Arc::new(producer),
        checkpoint,
    })
}
