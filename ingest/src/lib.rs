//! Ingest: turns STIX bundle files, ATT&CK Workbench collections and the releases of MITRE's
//! collection index into events on Kafka.
//!
//! One bundle's path, for a file (`ingest import`), a Workbench collection version and a file
//! the index lists alike:
//! `bundle` reads it, `check` checks it whole, `plan` decides against the `checkpoint` what is
//! new, `producer` publishes it, and `import` reports. The checkpoint is rebuilt from the
//! objects topic at start, so ingest keeps no state of its own.

pub mod attack_domain;
pub mod attack_index;
mod bundle;
mod check;
mod checkpoint;
pub mod config;
mod connection;
mod error;
mod import;
mod metrics;
mod origin;
mod plan;
mod producer;
mod publisher;
pub mod workbench;

use std::fmt;

use tokio_util::sync::CancellationToken;

/// A partition's offsets, retried while a topic created a moment ago has no leader yet (the
/// end-to-end tests read topics with it too).
pub use checkpoint::watermarks;
pub use config::Settings;
pub use error::Error;
pub use metrics::Metrics;
/// Creates ingest's topics as an import would (benchmarks create them outside their timing).
pub use producer::{ensure_topics, partition_count};

use crate::attack_index::IndexSummary;
use crate::config::Command;
use crate::connection::{Connection, connect, connect_embedded};
use crate::import::ImportSummary;
use crate::workbench::SyncSummary;

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was published (invalid objects are dead-lettered, not failures).
    Complete,
    /// Some inputs could not be used (files that are not bundles, Workbench versions that
    /// failed in a `--once` sync): the operator must look.
    InputsFailed,
}

/// What a run did, for the operator.
#[derive(Debug)]
pub enum Summary {
    Import(ImportSummary),
    Workbench(SyncSummary),
    AttackIndex(IndexSummary),
}

impl Summary {
    pub fn outcome(&self) -> Outcome {
        let failed = match self {
            Summary::Import(import) => import.failed.len(),
            Summary::Workbench(sync) => sync.failed(),
            Summary::AttackIndex(index) => index.failed(),
        };
        if failed == 0 {
            Outcome::Complete
        } else {
            Outcome::InputsFailed
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Summary::Import(import) => import.fmt(f),
            Summary::Workbench(sync) => sync.fmt(f),
            Summary::AttackIndex(index) => index.fmt(f),
        }
    }
}

/// Runs the command until it is done or `shutdown` is cancelled, serving metrics meanwhile
/// when an address is configured.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<Summary, Error> {
    let metrics = match &settings.metrics {
        Some(metrics) => metrics.clone(),
        None => Metrics::new()?,
    };
    service::spawn_metrics(
        settings.metrics_addr,
        metrics.registry.clone(),
        shutdown.clone(),
    );
    let run_id = uuid::Uuid::new_v4().to_string();
    match &settings.command {
        Command::Import(config) => {
            let import = config.build()?;
            let connecting = open(&settings, &metrics);
            let summary = import.run(connecting, &metrics, &run_id, &shutdown).await?;
            Ok(Summary::Import(summary))
        }
        Command::Workbench(config) => {
            let workbench = config.build()?;
            let mut connection = open(&settings, &metrics).await?;
            let summary = workbench
                .run(&mut connection, &metrics, &run_id, &shutdown)
                .await?;
            Ok(Summary::Workbench(summary))
        }
        Command::AttackIndex(config) => {
            let index = config.build()?;
            let mut connection = open(&settings, &metrics).await?;
            let summary = index
                .run(&mut connection, &metrics, &run_id, &shutdown)
                .await?;
            Ok(Summary::AttackIndex(summary))
        }
    }
}

/// The connection on the log the settings name: a node's embedded log, else Kafka.
async fn open(settings: &Settings, metrics: &Metrics) -> Result<Connection, Error> {
    match &settings.embedded {
        Some(log) => connect_embedded(log, metrics).await,
        None => connect(&settings.kafka, &settings.topics, metrics).await,
    }
}
