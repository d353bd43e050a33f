//! The `api` binary: parse the configuration, start logging, bind, run until interrupted.

use std::process::ExitCode;

use clap::Parser;

use taxiway_api::config::{Command, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::HashPassword) = config.command {
        return match taxiway_api::hash_password::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    config.log.init("info,tower_http=info");
    tracing::info!(config = ?config, "starting api");
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: binding {}: {e}", config.listen);
            return ExitCode::from(2);
        }
    };
    let shutdown =
        service::shutdown_on_signal("interrupted: finishing open requests, then stopping");
    match taxiway_api::run(config, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "api failed");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
