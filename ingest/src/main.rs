//! The `ingest` binary: parse the configuration, start logging and metrics, run.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use taxiway_ingest::config::{Cli, LogFormat};
use taxiway_ingest::metrics::Metrics;
use taxiway_ingest::{Outcome, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log.log_format);
    tracing::info!(config = ?cli, "starting ingest");
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
            tracing::info!("interrupted: finishing the current bundle, then stopping");
        }
        signal.cancel();
    });
    if let Some(addr) = cli.metrics_addr {
        let metrics = metrics.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) =
                taxiway_ingest::metrics::serve(addr, metrics, stop.cancelled_owned()).await
            {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }
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
