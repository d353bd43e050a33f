//! Projector: materializes the event log (`taxiway.objects`) into the CQL projections the API reads.
//!
//! A newcomer's path through it: [`run`] dispatches to `commands/` (`run`, `rebuild`, `status`,
//! `drop_generation`); `run` and `rebuild` drive a `feed` (consume a batch, [`triage`] each
//! message: decode and check, dead-letter, write, record the offsets applied, commit), which
//! hands each batch to the `batch` writer and uses `gaps` to tell whether the projections hold
//! what the consumer group committed; [`rows`] decides, without I/O, which rows an event
//! writes; [`store`] executes them with the scylla driver.
//! `consumer` and `dead_letter` are the Kafka side. See `docs/projections.md`.

pub mod batch;
mod commands;
pub mod config;
mod consumer;
mod dead_letter;
mod error;
mod feed;
mod gaps;
pub mod metrics;
pub mod rows;
pub mod store;
pub mod tables;
pub mod triage;

pub use error::{Error, Result};
pub use triage::check;

use tokio_util::sync::CancellationToken;

use crate::config::{Command, Settings};
use crate::metrics::Metrics;
use crate::store::Store;

/// Runs `settings.command` until it is done or `shutdown` is cancelled, serving metrics on
/// `settings.metrics_addr` when one is set.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let metrics = Metrics::new()?;
    service::spawn_metrics(
        settings.metrics_addr,
        metrics.registry.clone(),
        shutdown.clone(),
    );
    run_with_metrics(settings, metrics, shutdown).await
}

/// [`run`], counting into `metrics` that the caller reads (tests and benches wait on them).
pub async fn run_with_metrics(
    settings: Settings,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<()> {
    if matches!(settings.command, Command::Run | Command::Rebuild) {
        tokio::select! {
            checked = check_brokers(&settings) => checked?,
            () = shutdown.cancelled() => return Ok(()),
        }
    }
    let store = Store::connect(&settings.cql, &settings.store).await?;
    match &settings.command {
        Command::Migrate => {
            let active = store.migrate().await?;
            tracing::info!(generation = active.generation, keyspace = %active.keyspace, "migrated");
            Ok(())
        }
        Command::Run => commands::run::run(&settings, &store, &metrics, &shutdown).await,
        Command::Rebuild => commands::rebuild::rebuild(&settings, &store, &metrics, &shutdown)
            .await
            .map(|_| ()),
        Command::DropGeneration { generation } => {
            commands::drop_generation::drop_generation(&store, *generation).await
        }
        Command::Status => {
            print!("{}", commands::status::status(&store).await?);
            Ok(())
        }
    }
}

/// Before anything touches the store: a refused login, an untrusted certificate or a wrong
/// security protocol ends the command at once with its cause, and leaves no keyspace behind,
/// instead of a metadata timeout after the migrations ran.
async fn check_brokers(settings: &Settings) -> Result<()> {
    let kafka = settings.kafka.clone();
    tokio::task::spawn_blocking(move || kafka.check_brokers())
        .await
        .map_err(|e| Error::State(format!("checking the brokers: {e}")))?
        .map_err(Error::KafkaUnreachable)
}
