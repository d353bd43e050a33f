//! Running the pipeline's stages in-process against the dev services, each test on its own topics.

use clap::Parser;
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

    /// The command line `ingest ARGS…` on these topics and the test broker.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<ingest::Settings> {
        let brokers = kafka_brokers();
        let mut argv = vec![
            "ingest",
            "--brokers",
            &brokers,
            "--objects-topic",
            &self.objects,
            "--dead-letter-topic",
            &self.dead_letter,
        ];
        argv.extend_from_slice(args);
        Ok(ingest::Settings::try_parse_from(argv)?)
    }

    /// Runs `ingest ARGS…` in-process on these topics, as the binary would.
    pub async fn ingest(&self, args: &[&str]) -> anyhow::Result<ingest::Outcome> {
        let summary = ingest::run(self.cli(args)?, CancellationToken::new()).await?;
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
