//! Command-line and environment configuration of `projector`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use service::{CqlArgs, KafkaArgs, LogArgs, parse_duration};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "projector",
    version,
    about = "Materialize the Taxiway event log into CQL projections (ScyllaDB / Cassandra)"
)]
pub struct Settings {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Consumer group prefix: the group used is `<group>-g<N>` for generation N.
    #[arg(
        long,
        env = "TAXIWAY_PROJECTOR_GROUP",
        default_value = "taxiway-projector",
        global = true
    )]
    pub group: String,
    #[command(flatten)]
    pub cql: CqlArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    /// How often `run` checks which generation is active.
    #[arg(long, env = "TAXIWAY_PROJECTOR_GENERATION_POLL", default_value = "3s", value_parser = parse_duration, global = true)]
    pub generation_poll: Duration,
    /// How often lag (and, in `rebuild`, progress) is measured and reported.
    #[arg(long, env = "TAXIWAY_PROJECTOR_PROGRESS_INTERVAL", default_value = "2s", value_parser = parse_duration, global = true)]
    pub progress_interval: Duration,
    #[command(flatten)]
    pub log: LogArgs,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9102).
    #[arg(long, env = "TAXIWAY_PROJECTOR_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Apply the CQL migrations (idempotent); create generation 1 if there is none.
    Migrate,
    /// Consume the objects topic into the active generation, following generation switches.
    Run,
    /// Replay the whole topic into a new generation, then make it the active one.
    Rebuild,
    /// Drop a generation's keyspace (never the active one).
    DropGeneration {
        /// The generation number, as listed by `status`.
        generation: i32,
    },
    /// Print generations, the active one, and its collections with their revisions.
    Status,
}

/// What the projector's store needs beyond the connection: how it writes and migrates.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Replication map of the keyspaces the migrations create.
    #[arg(long, env = "TAXIWAY_CQL_REPLICATION", default_value = schemas::cql::DEFAULT_REPLICATION, global = true)]
    pub replication: String,
    /// Consistency of every read and write (reads check what writes did, so use the same level).
    #[arg(long, env = "TAXIWAY_CQL_CONSISTENCY", value_enum, default_value_t = ConsistencyLevel::LocalQuorum, global = true)]
    pub consistency: ConsistencyLevel,
    // Separate from the request timeout: a node applies a DROP KEYSPACE or CREATE TABLE
    // before it answers, which took over 10 s on a loaded CI node, and every schema statement
    // here is idempotent (IF [NOT] EXISTS), so a long wait costs nothing but time.
    /// Driver-side timeout of one schema change (CREATE, DROP).
    #[arg(long, env = "TAXIWAY_CQL_DDL_TIMEOUT", default_value = "120s", value_parser = parse_duration, global = true)]
    pub ddl_timeout: Duration,
}

/// How events are taken from the topic and written.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// CQL requests in flight while a batch's rows are written.
    #[arg(
        long,
        env = "TAXIWAY_PROJECTOR_CONCURRENCY",
        default_value_t = 256,
        global = true
    )]
    pub concurrency: usize,
    /// Most messages in one batch (one commit per batch). Each batch ends with its release
    /// completion checks and revisions, after every row write of the batch: larger batches
    /// drain the requests in flight less often.
    #[arg(
        long,
        env = "TAXIWAY_PROJECTOR_BATCH_SIZE",
        default_value_t = 10_000,
        global = true
    )]
    pub batch_size: usize,
    /// How long a batch waits for more messages after its first one (bounds the latency a
    /// lone event sees; the API's changes-visible-within-1-s budget includes it).
    #[arg(long, env = "TAXIWAY_PROJECTOR_BATCH_WAIT", default_value = "200ms", value_parser = parse_duration, global = true)]
    pub batch_wait: Duration,
}

/// The consistency levels that make sense for the projector (read-your-writes needs the same
/// level on both sides: `local-quorum` in production, `one` is fine on a single node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyLevel {
    One,
    LocalOne,
    Quorum,
    LocalQuorum,
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Settings::command().debug_assert();
    }

    /// A flag's default as declared. Parsing would read the environment too, and `dev/test`
    /// exports `TAXIWAY_*` addresses of the services it runs (other ports, when overridden).
    fn default_of(command: &clap::Command, id: &str) -> Option<String> {
        command
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_default_values().first())
            .map(|v| v.to_string_lossy().into_owned())
    }

    #[test]
    fn defaults_work_against_the_dev_services() {
        use clap::CommandFactory;
        let command = Settings::command();
        for (id, expected) in [
            ("brokers", "127.0.0.1:9092"),
            ("nodes", "127.0.0.1:9042"),
            ("keyspace", "taxiway"),
            ("consistency", "local-quorum"),
            ("group", "taxiway-projector"),
        ] {
            assert_eq!(default_of(&command, id).as_deref(), Some(expected), "{id}");
        }
    }

    #[test]
    fn node_lists_are_comma_separated() {
        let settings =
            Settings::try_parse_from(["projector", "status", "--cql-nodes", "a:9042,b:9042"])
                .unwrap();
        assert_eq!(settings.cql.nodes, ["a:9042", "b:9042"]);
    }
}
