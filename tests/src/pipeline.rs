//! Running the pipeline's stages in-process against the dev services, each test on its own topics.

use std::path::PathBuf;

use ingest::config::{Command, ImportConfig, KafkaArgs};
use schemas::Event;
use tokio_util::sync::CancellationToken;

use crate::fixtures::data_dir;
use crate::topic::{Record, read_all};
use crate::{kafka_brokers, unique_name};

const ENTERPRISE: &str = "x-mitre-collection--1f5f1533-f617-4ca8-9ab4-6a02367fa019";
const ICS: &str = "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09";
const MOBILE: &str = "x-mitre-collection--dac0d2d7-8653-445c-9bff-82f934c1e858";

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

    /// Deletes both topics from the test broker, once the test is done with them.
    pub async fn delete(&self) -> anyhow::Result<()> {
        crate::topic::delete(&[&self.objects, &self.dead_letter]).await
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

/// Imports every release of the test data into `topics` (the benches' data set): the STIX 2.1
/// bundles, which carry their x-mitre-collection, then the STIX 2.0 ones of
/// `../shared/attack-data` with their collection and release label given. Returns the files
/// imported; without the STIX 2.0 releases (a fresh clone) it says so and imports the rest.
pub async fn ingest_every_release(topics: &Topics) -> anyhow::Result<Vec<PathBuf>> {
    let dir = data_dir();
    let mut files21: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".json.zst"))
        .collect();
    files21.sort();
    topics.ingest(ImportConfig::new(&files21)).await?;
    let mut files20: Vec<PathBuf> = match std::fs::read_dir(dir.join("stix-2.0")) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => {
            println!(
                "no stix-2.0/ beside {}: the STIX 2.1 releases only",
                dir.display()
            );
            Vec::new()
        }
    };
    files20.sort();
    for file in &files20 {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = name
            .trim_end_matches(".json.zst")
            .rsplit('-')
            .next()
            .unwrap_or_default()
            .to_owned();
        let (collection, title) = if name.starts_with("enterprise") {
            (ENTERPRISE, "Enterprise ATT&CK")
        } else if name.starts_with("ics") {
            (ICS, "ICS ATT&CK")
        } else {
            (MOBILE, "Mobile ATT&CK")
        };
        topics
            .ingest(
                ImportConfig::new([file])
                    .collection(collection, title)
                    .release(&label),
            )
            .await?;
    }
    files21.extend(files20);
    Ok(files21)
}
