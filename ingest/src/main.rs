//! The `ingest` binary: parse the configuration, start logging and metrics, run.

use std::process::ExitCode;

use clap::Parser;

use taxiway_ingest::config::Cli;
use taxiway_ingest::metrics::Metrics;
use taxiway_ingest::{Outcome, run};

/// mimalloc rather than the system allocator: an import allocates and frees per object, and an
/// A/B of Enterprise imports measured 0.46 against 0.52 CPU-s with glibc (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service::init_tracing(cli.log.log_format, "info");
    tracing::info!(config = ?cli, "starting ingest");
    let metrics = match Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown =
        service::shutdown_on_signal("interrupted: finishing the current bundle, then stopping");
    service::spawn_metrics(cli.metrics_addr, metrics.registry.clone(), shutdown.clone());
    match run(cli, metrics, shutdown).await {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::InputsFailed) => ExitCode::from(1),
        Err(e) => {
            tracing::error!(error = %e, "ingest failed");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
