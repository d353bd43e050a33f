//! The `projector` binary: parse the configuration, start logging and metrics, run the command.

use std::process::ExitCode;

use clap::Parser;

use taxiway_projector::config::Settings;
use taxiway_projector::metrics::Metrics;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Settings::parse();
    cli.log.init("info");
    tracing::info!(config = ?cli, "starting projector");
    let metrics = match Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown =
        service::shutdown_on_signal("interrupted: finishing the current batch, then stopping");
    service::spawn_metrics(cli.metrics_addr, metrics.registry.clone(), shutdown.clone());
    match taxiway_projector::run(cli, metrics, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "projector failed");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
