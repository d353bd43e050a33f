//! `taxiway` in a child process of the test binary, so a test can SIGKILL it as a crash would:
//! [`spawn`] re-executes the test binary on one ignored test (`child_process::node_entry` in the
//! e2e binary, which calls [`entry`]); the command line travels in [`ARGS_ENV`] and is parsed
//! exactly as the binary parses its own.

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use node::config::{Cli, NodeCommand};

/// The child's command line after `taxiway`, as a JSON array of strings.
pub const ARGS_ENV: &str = "TAXIWAY_TEST_NODE_ARGS";

/// A free loopback port to give a child (bound and released: another process could take it in
/// between, which no test here does).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?)
}

/// Starts `taxiway ARGS…` in a child process whose logs go to `log`.
pub fn spawn(args: &[String], log: &Path) -> anyhow::Result<tokio::process::Child> {
    let mut command = crate::child::reexec("child_process::node_entry", ARGS_ENV, log)?;
    Ok(command
        .env(ARGS_ENV, serde_json::to_string(args)?)
        .env_remove("TAXIWAY_DATA")
        .spawn()?)
}

/// The child's side: does nothing unless [`ARGS_ENV`] is set.
pub fn entry() -> anyhow::Result<()> {
    let Some(args) = std::env::var_os(ARGS_ENV) else {
        return Ok(());
    };
    let args: Vec<String> = serde_json::from_str(&args.to_string_lossy())?;
    let cli = Cli::try_parse_from(std::iter::once("taxiway".to_owned()).chain(args))?;
    cli.log.init("info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let shutdown = crate::child::cancel_when_orphaned();
        match cli.command {
            NodeCommand::Serve(config) => {
                let listener = tokio::net::TcpListener::bind(config.listen).await?;
                node::serve(config, listener, shutdown).await?;
            }
            NodeCommand::Export(config) => {
                node::export(&config).await?;
            }
        }
        Ok(())
    })
}
