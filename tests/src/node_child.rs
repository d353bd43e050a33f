//! `taxiway` in a child process of the test binary, so a test can SIGKILL it as a crash would:
//! [`spawn`] re-executes the test binary on one ignored test (`child_process::node_entry` in the
//! e2e binary, which calls [`entry`]); the command line travels in [`ARGS_ENV`] and is parsed
//! exactly as the binary parses its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use eventlog::EmbeddedLog;
use node::config::{Cli, NodeCommand};
use schemas::{Event, OBJECTS_TOPIC};

use crate::{Deadline, projection};

/// What `serve` logs once the import it was given has returned.
const IMPORT_DONE: &str = "ingest finished";

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

/// The revisions every collection of the node's log in `data` reaches once all of it is
/// projected (the log is read while the node may be running: SQLite allows it).
pub fn log_revisions(data: &Path) -> anyhow::Result<BTreeMap<String, i64>> {
    let log = EmbeddedLog::open_read_only(&data.join("log.sqlite"))?;
    let events: Vec<Event> = log
        .read(OBJECTS_TOPIC, 0, usize::MAX)?
        .iter()
        .filter_map(|s| schemas::decode_event(s.record.payload.as_ref()?).ok())
        .collect();
    Ok(projection::final_revisions(&events))
}

/// The records in the objects topic of the node's log in `data` (0 before it exists).
pub fn objects_in_log(data: &Path) -> i64 {
    EmbeddedLog::open_read_only(&data.join("log.sqlite"))
        .and_then(|log| log.high_water(OBJECTS_TOPIC))
        .unwrap_or(0)
}

/// Waits until `log` (a child's stderr) says the import returned, after its first `from` bytes.
pub async fn wait_import_done(log: &Path, from: usize, deadline: Deadline) -> anyhow::Result<()> {
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.get(from..).is_some_and(|t| t.contains(IMPORT_DONE)) {
            return Ok(());
        }
        anyhow::ensure!(
            !deadline.passed(),
            "the import did not finish; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The arguments of `taxiway export` of the node's log in `data` to `topics` on the test broker.
pub fn export_args(data: &Path, topics: &crate::pipeline::Topics) -> Vec<String> {
    [
        "export",
        "--data",
        &data.display().to_string(),
        "--brokers",
        &crate::kafka_brokers(),
        "--objects-topic",
        &topics.objects,
        "--dead-letter-topic",
        &topics.dead_letter,
    ]
    .map(str::to_owned)
    .to_vec()
}
