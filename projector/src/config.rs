//! Command-line and environment configuration of `projector`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use service::ConsistencyLevel;
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
    pub membership: MembershipArgs,
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

impl Settings {
    /// `command` with every other setting at its default (the dev services on loopback):
    /// settings built in code, as tests and benchmarks do, rather than parsed.
    pub fn new(command: Command) -> Self {
        Settings {
            kafka: KafkaArgs::default(),
            group: "taxiway-projector".to_owned(),
            membership: MembershipArgs::default(),
            cql: CqlArgs::default(),
            store: StoreArgs::default(),
            batch: BatchArgs::default(),
            generation_poll: Duration::from_secs(3),
            progress_interval: Duration::from_secs(2),
            log: LogArgs::default(),
            metrics_addr: None,
            command,
        }
    }
}

/// How the projector is a member of its consumer group: how soon a dead member's partitions
/// move on, and whether a restarted process takes its own back without a rebalance.
/// docs/reliability.md ("Projector restarts") gives the measured effect of each choice.
#[derive(Debug, Clone, Args)]
pub struct MembershipArgs {
    // 10 s instead of Kafka's 45 s: a dead member's partitions wait this long for a new owner,
    // and a projector's work is idempotent, so declaring a slow member dead early costs only a
    // rebalance and some re-applied messages. The brokers' group.min.session.timeout.ms
    // (6 s by default) is the floor; a batch's writes never block the heartbeat, which
    // librdkafka sends from its own thread.
    /// How long the group coordinator waits for a silent member before giving its partitions
    /// to others (`session.timeout.ms`).
    #[arg(long, env = "TAXIWAY_PROJECTOR_SESSION_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub session_timeout: Duration,
    /// How often the member tells the coordinator it is alive (`heartbeat.interval.ms`); Kafka
    /// advises at most a third of the session timeout.
    #[arg(long, env = "TAXIWAY_PROJECTOR_HEARTBEAT_INTERVAL", default_value = "3s", value_parser = parse_duration, global = true)]
    pub heartbeat_interval: Duration,
    // No default: an id must be unique among the live members of the group (two members with
    // one id fence each other), which only the deployment knows (a StatefulSet's pod name, a
    // systemd instance name). A host name breaks when two replicas share a host.
    /// Static membership (`group.instance.id`): a stable id per replica, e.g. its pod name. A
    /// restarted member with the same id gets its partitions back at once, without a
    /// rebalance; unset (the default), a member that died without leaving keeps its partitions
    /// until the session timeout.
    #[arg(long, env = "TAXIWAY_PROJECTOR_INSTANCE_ID", global = true)]
    pub instance_id: Option<String>,
}

/// As the flags default to.
impl Default for MembershipArgs {
    fn default() -> Self {
        MembershipArgs {
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            instance_id: None,
        }
    }
}

/// What the projector's store needs beyond the connection: how it writes and migrates.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Replication map of the keyspaces the migrations create.
    #[arg(long, env = "TAXIWAY_CQL_REPLICATION", default_value = schemas::cql::DEFAULT_REPLICATION, global = true)]
    pub replication: String,
    /// Consistency of the projector's writes and of its own reads (they check what the writes
    /// did, so they use the same level): `local-quorum` in production, `one` on a single node.
    #[arg(long, alias = "cql-write-consistency", env = "TAXIWAY_CQL_CONSISTENCY", value_enum, default_value_t = ConsistencyLevel::LocalQuorum, global = true)]
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

/// As the flags default to.
impl Default for StoreArgs {
    fn default() -> Self {
        StoreArgs {
            replication: schemas::cql::DEFAULT_REPLICATION.to_owned(),
            consistency: ConsistencyLevel::LocalQuorum,
            ddl_timeout: Duration::from_secs(120),
        }
    }
}

/// As the flags default to.
impl Default for BatchArgs {
    fn default() -> Self {
        BatchArgs {
            concurrency: 256,
            batch_size: 10_000,
            batch_wait: Duration::from_millis(200),
        }
    }
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
            ("session_timeout", "10s"),
            ("heartbeat_interval", "3s"),
        ] {
            assert_eq!(default_of(&command, id).as_deref(), Some(expected), "{id}");
        }
    }

    #[test]
    fn settings_built_in_code_have_the_defaults_the_flags_declare() {
        use clap::{CommandFactory, FromArgMatches};
        // Without the environment, for the same reason as above.
        let command = Settings::command().mut_args(|a| a.env(None));
        let declared =
            Settings::from_arg_matches(&command.get_matches_from(["projector", "run"])).unwrap();
        assert_eq!(
            format!("{:?}", Settings::new(Command::Run)),
            format!("{declared:?}")
        );
    }

    #[test]
    fn static_membership_is_off_unless_an_instance_id_is_given() {
        let settings = Settings::try_parse_from(["projector", "run"]).unwrap();
        let given =
            Settings::try_parse_from(["projector", "run", "--instance-id", "projector-0"]).unwrap();
        assert_eq!(given.membership.instance_id.as_deref(), Some("projector-0"));
        if std::env::var_os("TAXIWAY_PROJECTOR_INSTANCE_ID").is_none() {
            assert_eq!(settings.membership.instance_id, None);
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
