//! The `projector` binary: parse the settings, start logging, run the command until interrupted.

use std::process::ExitCode;

use clap::Parser;

use taxiway_projector::config::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    settings.log.init("info");
    tracing::info!(config = ?settings, "starting projector");
    let shutdown =
        service::shutdown_on_signal("interrupted: finishing the current batch, then stopping");
    match taxiway_projector::run(settings, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "projector failed");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
