//! The `ingest` binary: parse the settings, start logging, run, print the summary.

use std::process::ExitCode;

use clap::Parser;

use taxiway_ingest::{Outcome, Settings, run};

/// mimalloc rather than the system allocator: an import allocates and frees per object, and
/// with glibc an Enterprise import took about 13 % more CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    service::init_tracing(settings.log.log_format, "info");
    tracing::info!(config = ?settings, "starting ingest");
    let shutdown =
        service::shutdown_on_signal("interrupted: finishing the current bundle, then stopping");
    match run(settings, shutdown).await {
        Ok(summary) => {
            eprintln!("{summary}");
            match summary.outcome() {
                Outcome::Complete => ExitCode::SUCCESS,
                Outcome::InputsFailed => ExitCode::from(1),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "ingest failed");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
