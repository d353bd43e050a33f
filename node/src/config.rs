//! The `taxiway` command line: `serve` (the whole pipeline in this process) and `export` (the
//! embedded log into Kafka, for the move to the distributed deployment).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use api::config::ServerConfig;
use ingest::config::TopicArgs;
use service::{KafkaArgs, LogArgs};

#[derive(Debug, Parser)]
#[command(
    name = "taxiway",
    version,
    about = "Taxiway on one machine: import, projection and the TAXII 2.1 API in one process, \
             with the event log in one file"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: NodeCommand,
}

// Parsed once per process: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Serve TAXII from the data folder; with `import`, `workbench` or `attack-index` after the
    /// flags, also take new data from there, as `ingest` does in the distributed deployment.
    Serve(ServeConfig),
    /// Replay the data folder's event log into Kafka topics, message for message, so that a
    /// projector on ScyllaDB or Cassandra builds what this node serves.
    Export(ExportConfig),
}

/// Where a node keeps its data.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// The folder of the node's event log (`log.sqlite`); created if missing.
    #[arg(
        long,
        env = "TAXIWAY_DATA",
        default_value = "taxiway-data",
        global = true
    )]
    pub data: PathBuf,
}

impl DataArgs {
    /// The log file inside the data folder.
    pub fn log_path(&self) -> PathBuf {
        self.data.join("log.sqlite")
    }
}

#[derive(Debug, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub data: DataArgs,
    /// Address to serve TAXII on.
    #[arg(long, env = "TAXIWAY_API_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub server: ServerConfig,
    /// JSON file of principals and their read rights; authentication is off without it.
    #[arg(long, env = "TAXIWAY_API_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// Where new data comes from, as `ingest`'s commands say; without one, the node serves what
    /// its log holds.
    #[command(subcommand)]
    pub source: Option<ingest::config::Command>,
}

#[derive(Debug, Args)]
pub struct ExportConfig {
    #[command(flatten)]
    pub data: DataArgs,
    /// The Kafka to export to (brokers, security, topic names), as every service takes it.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// How to create the topics if they do not exist yet.
    #[command(flatten)]
    pub topics: TopicArgs,
}
