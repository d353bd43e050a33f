//! The `taxiway` binary: parse the command line, start logging, run the command.

use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;

use node::config::{Cli, NodeCommand};

// The system allocator, not the mimalloc `ingest` uses: a node keeps its projection for its
// whole life, and on the eight releases of docs/benchmarks.md mimalloc held 464–476 MB after a
// restart against 417–421 MB with glibc, which also rebuilt faster (1.7 s against 2.3 s).

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init("info");
    let result = match cli.command {
        NodeCommand::Serve(config) => {
            tracing::info!(config = ?config, "starting taxiway serve");
            match TcpListener::bind(config.listen).await {
                Ok(listener) => {
                    let shutdown = service::shutdown_on_signal("interrupted: stopping");
                    node::serve(config, listener, shutdown).await
                }
                Err(source) => Err(node::Error::Io {
                    context: format!("listening on {}", config.listen),
                    source,
                }),
            }
        }
        NodeCommand::Export(config) => node::export(&config).await.map(|exported| {
            eprintln!(
                "exported {} objects messages to {} and {} dead letters to {}",
                exported.objects,
                config.kafka.objects_topic,
                exported.dead_letters,
                config.kafka.dead_letter_topic
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "taxiway failed");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
