//! An API replica in a child process of the test binary, so a test can SIGKILL it as a crash would.
//!
//! As for the projector ([`crate::child`]): [`spawn`] re-executes the test binary on one ignored
//! test, the entry (`child_process::api_entry` in the e2e binary, which calls [`entry`]), with
//! the settings in the `TAXIWAY_*` variables the `api` binary reads, so the child parses them
//! exactly as the binary would.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use clap::FromArgMatches;

/// Set (to anything) in the child's environment: makes [`entry`] run the API.
pub const CHILD_ENV: &str = "TAXIWAY_TEST_API_CHILD";

/// An API child process.
pub struct ApiChild {
    child: tokio::process::Child,
    /// When the process was spawned.
    pub started: Instant,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ApiChild {
    /// SIGKILL: no draining, no goodbye to open connections.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Starts `api` listening on `addr`, over the control keyspace `control`, in a child process of
/// the test binary whose test `entry_test` (its full name) calls [`entry`]. Replicas given the
/// same `cursor_key` accept each other's cursors. Its logs go to `log`.
pub fn spawn(
    addr: SocketAddr,
    control: &str,
    cursor_key: &str,
    entry_test: &str,
    log: &Path,
) -> anyhow::Result<ApiChild> {
    let mut command = crate::child::reexec(entry_test, CHILD_ENV, log)?;
    let started = Instant::now();
    let child = command
        .env("TAXIWAY_API_LISTEN", addr.to_string())
        .env("TAXIWAY_CQL_NODES", crate::cql_nodes().join(","))
        .env("TAXIWAY_CQL_KEYSPACE", control)
        .env("TAXIWAY_API_POLL", "200ms")
        .env("TAXIWAY_API_CURSOR_KEY", cursor_key)
        .env_remove("TAXIWAY_API_AUTH_FILE")
        .stdout(Stdio::null())
        .spawn()?;
    Ok(ApiChild {
        child,
        started,
        addr,
    })
}

/// The child's side: serves from the environment until killed, or until its stdin closes (the
/// test process is gone); does nothing unless [`CHILD_ENV`] is set.
pub fn entry() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    // Parsed from the environment, as the binary does.
    let command = <::api::config::Config as clap::CommandFactory>::command();
    let config = ::api::config::Config::from_arg_matches(&command.try_get_matches_from(["api"])?)?;
    config.log.init("info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let shutdown = crate::child::cancel_when_orphaned();
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        ::api::run(config, listener, shutdown).await?;
        Ok(())
    })
}
