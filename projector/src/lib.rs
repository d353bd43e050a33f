//! Projector: materializes the event log (`taxiway.objects`) into the CQL projections the API reads.
//!
//! [`apply`] decides, without I/O, which rows an event writes; [`store`] executes them with the
//! scylla driver; [`project`] orders a batch's writes; [`consumer`] and [`dead_letter`] are the
//! Kafka side; [`pipeline`] ties them into consume → write → commit; [`live`] (`run`) and
//! [`rebuild`] drive pipelines over generations. See `docs/projections.md`.

pub mod apply;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod error;
pub mod live;
pub mod metrics;
pub mod pipeline;
pub mod project;
pub mod rebuild;
pub mod store;

pub use error::{Error, Result};

use tokio_util::sync::CancellationToken;

use crate::config::{Command, Settings};
use crate::metrics::Metrics;
use crate::store::Store;

/// Runs `cli.command` until it is done or `shutdown` is cancelled.
pub async fn run(cli: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<()> {
    let store = Store::connect(&cli.cql, &cli.store).await?;
    match &cli.command {
        Command::Migrate => {
            let active = store.migrate().await?;
            tracing::info!(generation = active.generation, keyspace = %active.keyspace, "migrated");
            Ok(())
        }
        Command::Run => live::run(&cli, &store, &metrics, &shutdown).await,
        Command::Rebuild => rebuild::rebuild(&cli, &store, &metrics, &shutdown)
            .await
            .map(|_| ()),
        Command::DropGeneration { generation } => {
            rebuild::drop_generation(&store, *generation).await
        }
        Command::Status => {
            print!("{}", status(&store).await?);
            Ok(())
        }
    }
}

/// The text `projector status` prints.
pub async fn status(store: &Store) -> Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let active = store.active().await?;
    // Writing into a String cannot fail.
    let _ = writeln!(out, "control keyspace: {}", store.control_keyspace());
    let _ = writeln!(out, "generations:");
    for g in store.generations().await? {
        let marker = if active
            .as_ref()
            .is_some_and(|a| a.generation == g.generation)
        {
            "*"
        } else {
            " "
        };
        let _ = writeln!(
            out,
            " {marker} {:>3}  {:<10}  {}  created_at={:?} caught_up_at={:?}",
            g.generation, g.state, g.keyspace, g.created_at, g.caught_up_at
        );
    }
    match &active {
        None => {
            let _ = writeln!(out, "no active generation (run `projector migrate`)");
        }
        Some(a) => {
            let _ = writeln!(out, "active: generation {} ({})", a.generation, a.keyspace);
            for c in store.collections(&a.keyspace).await? {
                let _ = writeln!(
                    out,
                    "  {}  revision={}  {}",
                    c.collection_id,
                    c.revision.map_or("-".to_owned(), |r| r.to_string()),
                    c.title.unwrap_or_default()
                );
            }
        }
    }
    Ok(out)
}
