//! The `projector` binary: parse the configuration, start logging and metrics, run the command.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use taxiway_projector::config::{Cli, LogFormat};
use taxiway_projector::metrics::Metrics;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    tracing::info!(config = ?cli, "starting projector");
    let metrics = match Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("interrupted: finishing the current batch, then stopping");
        }
        signal.cancel();
    });
    if let Some(addr) = cli.metrics_addr {
        let metrics = metrics.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) =
                taxiway_projector::metrics::serve(addr, metrics, stop.cancelled_owned()).await
            {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }
    match taxiway_projector::run(cli, metrics, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "projector failed");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAXIWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
