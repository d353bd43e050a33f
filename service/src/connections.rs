//! The Kafka and CQL connection settings, declared once and flattened into every binary that connects.

use std::time::Duration;

use crate::{Secret, parse_duration};

/// Where the event log is: the brokers and the two topics.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "TAXIWAY_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub brokers: String,
    /// The compacted topic of object, collection and release events.
    #[arg(long, env = "TAXIWAY_OBJECTS_TOPIC", default_value = schemas::OBJECTS_TOPIC, global = true)]
    pub objects_topic: String,
    /// Where invalid objects and undecodable or invalid events go, with the reason.
    #[arg(long, env = "TAXIWAY_DEAD_LETTER_TOPIC", default_value = schemas::DEAD_LETTER_TOPIC, global = true)]
    pub dead_letter_topic: String,
    /// How long to wait for Kafka before giving up on a metadata or delivery request.
    #[arg(long, env = "TAXIWAY_KAFKA_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
}

/// Where the projections are: the CQL cluster, its credentials and the control keyspace.
#[derive(Debug, Clone, clap::Args)]
pub struct CqlArgs {
    /// CQL contact points, comma-separated.
    #[arg(
        long = "cql-nodes",
        env = "TAXIWAY_CQL_NODES",
        default_value = "127.0.0.1:9042",
        value_delimiter = ',',
        global = true
    )]
    pub nodes: Vec<String>,
    /// The control keyspace (holds active_generation); generation N lives in `<keyspace>_g<N>`.
    #[arg(
        long = "cql-keyspace",
        alias = "keyspace",
        env = "TAXIWAY_CQL_KEYSPACE",
        default_value = "taxiway",
        global = true
    )]
    pub keyspace: String,
    /// CQL user name (password authentication), if the cluster needs one.
    #[arg(long = "cql-user", env = "TAXIWAY_CQL_USER", global = true)]
    pub user: Option<String>,
    /// CQL password.
    #[arg(
        long = "cql-password",
        env = "TAXIWAY_CQL_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<Secret>,
    /// Driver-side timeout of one CQL request (portable, unlike `USING TIMEOUT`).
    #[arg(
        long = "cql-timeout",
        alias = "request-timeout",
        env = "TAXIWAY_CQL_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration,
        global = true
    )]
    pub request_timeout: Duration,
}

/// The dev services on loopback, as the flags default to: for code that builds settings
/// without a command line (tests, benchmarks).
impl Default for KafkaArgs {
    fn default() -> Self {
        KafkaArgs {
            brokers: "127.0.0.1:9092".to_owned(),
            objects_topic: schemas::OBJECTS_TOPIC.to_owned(),
            dead_letter_topic: schemas::DEAD_LETTER_TOPIC.to_owned(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The dev services on loopback, as the flags default to.
impl Default for CqlArgs {
    fn default() -> Self {
        CqlArgs {
            nodes: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "taxiway".to_owned(),
            user: None,
            password: None,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl KafkaArgs {
    /// A client configuration that reaches the brokers: every Kafka client of the services starts
    /// from it and adds its role's settings, so connection settings are applied in one place.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }
}

/// The contract's message headers ([`schemas::headers`]) as librdkafka's.
pub fn kafka_headers(headers: &schemas::headers::Headers) -> rdkafka::message::OwnedHeaders {
    headers.iter().fold(
        rdkafka::message::OwnedHeaders::new_with_capacity(4),
        |all, (key, value)| {
            all.insert(rdkafka::message::Header {
                key,
                value: Some(value),
            })
        },
    )
}

/// The partition ids of `topic` in `metadata`; none when the broker does not know the topic.
pub fn partition_ids(metadata: &rdkafka::metadata::Metadata, topic: &str) -> Vec<i32> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect()
}

impl CqlArgs {
    /// The user and password when both are set: password authentication needs the pair.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some((user, &password.0)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Both {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        cql: CqlArgs,
    }

    #[test]
    fn the_flags_are_consistent_and_default_to_the_dev_services() {
        use clap::CommandFactory;
        Both::command().debug_assert();
        let command = Both::command();
        let default_of = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_default_values().first())
                .map(|v| v.to_string_lossy().into_owned())
        };
        for (id, expected) in [
            ("brokers", "127.0.0.1:9092"),
            ("objects_topic", schemas::OBJECTS_TOPIC),
            ("dead_letter_topic", schemas::DEAD_LETTER_TOPIC),
            ("timeout", "30s"),
            ("request_timeout", "10s"),
            ("nodes", "127.0.0.1:9042"),
            ("keyspace", "taxiway"),
        ] {
            assert_eq!(default_of(id).as_deref(), Some(expected), "{id}");
        }
    }

    #[test]
    fn the_defaults_are_those_the_flags_declare() {
        use clap::{CommandFactory, FromArgMatches};
        // No environment: `dev/test` exports the addresses of the services it runs.
        let command = Both::command().mut_args(|a| a.env(None));
        let declared = Both::from_arg_matches(&command.get_matches_from(["x"])).unwrap();
        assert_eq!(
            format!("{:?}", declared.kafka),
            format!("{:?}", KafkaArgs::default())
        );
        assert_eq!(
            format!("{:?}", declared.cql),
            format!("{:?}", CqlArgs::default())
        );
    }

    #[test]
    fn both_spellings_of_the_cql_flags_are_accepted() {
        let projector_style = Both::try_parse_from([
            "x",
            "--keyspace",
            "k1",
            "--request-timeout",
            "3s",
            "--cql-nodes",
            "a:9042,b:9042",
        ])
        .unwrap();
        let api_style =
            Both::try_parse_from(["x", "--cql-keyspace", "k1", "--cql-timeout", "3s"]).unwrap();
        for parsed in [&projector_style, &api_style] {
            assert_eq!(parsed.cql.keyspace, "k1");
            assert_eq!(parsed.cql.request_timeout, Duration::from_secs(3));
        }
        assert_eq!(projector_style.cql.nodes, ["a:9042", "b:9042"]);
    }

    #[test]
    fn credentials_need_both_halves() {
        let none = Both::try_parse_from(["x", "--cql-user", "u"]).unwrap();
        assert_eq!(none.cql.credentials(), None);
        let both = Both::try_parse_from(["x", "--cql-user", "u", "--cql-password", "p"]).unwrap();
        assert_eq!(both.cql.credentials(), Some(("u", "p")));
        assert!(!format!("{both:?}").contains("\"p\""));
    }
}
