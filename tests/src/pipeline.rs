//! Running the pipeline's stages in-process against the dev services, each test on its own topics.

use ingest::config::{Command, KafkaArgs};
use schemas::Event;
use tokio_util::sync::CancellationToken;

use crate::topic::{Record, read_all};
use crate::{kafka_brokers, unique_name};

/// The topics one test publishes to, named so no other test or run shares them.
#[derive(Debug, Clone)]
pub struct Topics {
    pub objects: String,
    pub dead_letter: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        let name = unique_name(prefix);
        Topics {
            objects: format!("{name}.objects"),
            dead_letter: format!("{name}.dead-letter"),
        }
    }

    /// The Kafka settings of a stage on these topics and the test broker.
    pub fn kafka(&self) -> KafkaArgs {
        KafkaArgs {
            brokers: kafka_brokers(),
            objects_topic: self.objects.clone(),
            dead_letter_topic: self.dead_letter.clone(),
            ..KafkaArgs::default()
        }
    }

    /// The settings of `ingest` running `command` on these topics.
    pub fn settings(&self, command: impl Into<Command>) -> ingest::Settings {
        ingest::Settings {
            kafka: self.kafka(),
            ..ingest::Settings::new(command)
        }
    }

    /// Runs `command` in-process on these topics, as the binary would.
    pub async fn ingest(&self, command: impl Into<Command>) -> anyhow::Result<ingest::Outcome> {
        let summary = ingest::run(self.settings(command), CancellationToken::new()).await?;
        Ok(summary.outcome())
    }

    /// Every record of the objects topic.
    pub async fn object_records(&self) -> anyhow::Result<Vec<Record>> {
        read_all(&kafka_brokers(), &self.objects).await
    }

    /// Every event of the objects topic, decoded, in partition and offset order.
    pub async fn events(&self) -> anyhow::Result<Vec<(Record, Event)>> {
        self.object_records()
            .await?
            .into_iter()
            .map(|r| {
                let event = schemas::decode_event(&r.payload)
                    .map_err(|e| anyhow::anyhow!("{}@{}: {e}", r.partition, r.offset))?;
                Ok((r, event))
            })
            .collect()
    }

    /// Every dead letter, decoded.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<schemas::DeadLetter>> {
        read_all(&kafka_brokers(), &self.dead_letter)
            .await?
            .into_iter()
            .map(|r| Ok(schemas::decode_dead_letter(&r.payload)?))
            .collect()
    }
}
