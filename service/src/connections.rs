//! The Kafka and CQL connection settings, declared once and flattened into every binary that connects.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency;

use crate::{Error, Secret, parse_duration};

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
    #[arg(
        long = "cql-username",
        alias = "cql-user",
        env = "TAXIWAY_CQL_USERNAME",
        global = true
    )]
    pub user: Option<String>,
    /// CQL password (prefer the environment or `--cql-password-file`: a flag shows in `ps`).
    #[arg(
        long = "cql-password",
        env = "TAXIWAY_CQL_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<Secret>,
    /// A file holding the CQL password (a mounted secret); one trailing newline is ignored.
    #[arg(
        long = "cql-password-file",
        env = "TAXIWAY_CQL_PASSWORD_FILE",
        conflicts_with = "password",
        global = true
    )]
    pub password_file: Option<PathBuf>,
    /// Speak TLS to the nodes; implied by `--cql-tls-ca`. Without a CA file the nodes'
    /// certificates must chain to a public root (Mozilla's list).
    #[arg(long = "cql-tls", env = "TAXIWAY_CQL_TLS", global = true)]
    pub tls: bool,
    /// PEM file of the CA(s) that signed the nodes' certificates; the only roots trusted.
    #[arg(long = "cql-tls-ca", env = "TAXIWAY_CQL_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate (chain), for clusters that require client certificates.
    #[arg(
        long = "cql-tls-cert",
        env = "TAXIWAY_CQL_TLS_CERT",
        requires = "tls_key",
        global = true
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--cql-tls-cert`.
    #[arg(
        long = "cql-tls-key",
        env = "TAXIWAY_CQL_TLS_KEY",
        requires = "tls_cert",
        global = true
    )]
    pub tls_key: Option<PathBuf>,
    /// The datacenter to send requests to (replicas there first, others never): set it on a
    /// multi-datacenter cluster, where LOCAL_* consistency levels count that datacenter only.
    #[arg(long = "cql-local-dc", env = "TAXIWAY_CQL_LOCAL_DC", global = true)]
    pub local_dc: Option<String>,
    /// Consistency of the API's reads. LOCAL_QUORUM sees every write made at LOCAL_QUORUM (the
    /// projector's default); a single-node dev cluster is fine with it too (quorum of one).
    #[arg(
        long = "cql-read-consistency",
        env = "TAXIWAY_CQL_READ_CONSISTENCY",
        value_enum,
        default_value_t = ConsistencyLevel::LocalQuorum,
        global = true
    )]
    pub read_consistency: ConsistencyLevel,
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
            password_file: None,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            local_dc: None,
            read_consistency: ConsistencyLevel::LocalQuorum,
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

/// A CQL consistency level, as the flags spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsistencyLevel {
    One,
    LocalOne,
    Quorum,
    LocalQuorum,
    All,
}

impl From<ConsistencyLevel> for Consistency {
    fn from(level: ConsistencyLevel) -> Consistency {
        match level {
            ConsistencyLevel::One => Consistency::One,
            ConsistencyLevel::LocalOne => Consistency::LocalOne,
            ConsistencyLevel::Quorum => Consistency::Quorum,
            ConsistencyLevel::LocalQuorum => Consistency::LocalQuorum,
            ConsistencyLevel::All => Consistency::All,
        }
    }
}

// The service crate builds the session settings, as it builds the Kafka client configuration:
// credentials, TLS and load balancing are read in one place, and the store modules, which own
// the session and every statement, only call `build()` on the result.
impl CqlArgs {
    /// The user and password when both are set (the password read from its file if given):
    /// password authentication needs the pair.
    pub fn credentials(&self) -> Result<Option<(String, Secret)>, Error> {
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(file)) => Some(read_password(file)?),
            (None, None) => None,
        };
        Ok(match (&self.user, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (Some(_), None) => return Err(Error::MissingPassword),
            _ => None,
        })
    }

    /// Whether the nodes are spoken to over TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls || self.tls_ca.is_some()
    }

    /// A session builder for the configured nodes: credentials, TLS, datacenter-aware load
    /// balancing, the request timeout, and `consistency` for every statement that does not set
    /// its own. Files (password, CA, certificate, key) are read here, so a bad one fails at
    /// start with its path.
    pub fn session_builder(&self, consistency: ConsistencyLevel) -> Result<SessionBuilder, Error> {
        let mut balancing = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &self.local_dc {
            balancing = balancing
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false);
        }
        let profile = ExecutionProfile::builder()
            .consistency(consistency.into())
            .request_timeout(Some(self.request_timeout))
            .load_balancing_policy(balancing.build())
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&self.nodes)
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = self.credentials()? {
            builder = builder.user(user, password.0);
        }
        if self.tls_enabled() {
            builder = builder.tls_context(Some(Arc::new(self.tls_config()?)));
        }
        Ok(builder)
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let mut roots = rustls::RootCertStore::empty();
        match &self.tls_ca {
            Some(ca) => {
                let certs = CertificateDer::pem_file_iter(ca)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| Error::tls_file(ca, e))?;
                if certs.is_empty() {
                    return Err(Error::tls_file(ca, "no certificate in the file"));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| Error::tls_file(ca, e))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        // ring, explicitly: the driver's rustls also enables aws-lc, so there is no single
        // process default to fall back on.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots);
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| Error::tls_file(cert, e))?;
                let private =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| Error::tls_file(key, e))?;
                config
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| Error::tls_file(cert, e))
            }
            _ => Ok(config.with_no_client_auth()),
        }
    }
}

fn read_password(file: &Path) -> Result<Secret, Error> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::PasswordFile {
        path: file.to_owned(),
        source,
    })?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    Ok(Secret(
        password.strip_suffix('\r').unwrap_or(password).to_owned(),
    ))
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
        let user_only = Both::try_parse_from(["x", "--cql-username", "u"]).unwrap();
        assert!(matches!(
            user_only.cql.credentials(),
            Err(Error::MissingPassword)
        ));
        let both = Both::try_parse_from(["x", "--cql-user", "u", "--cql-password", "p"]).unwrap();
        let (user, password) = both.cql.credentials().unwrap().unwrap();
        assert_eq!((user.as_str(), password.0.as_str()), ("u", "p"));
        let neither = Both::try_parse_from(["x"]).unwrap();
        assert!(neither.cql.credentials().unwrap().is_none());
    }

    #[test]
    fn the_password_file_is_read_without_its_trailing_newline_and_excludes_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let file_arg = file.to_str().unwrap();
        let parsed =
            Both::try_parse_from(["x", "--cql-username", "u", "--cql-password-file", file_arg])
                .unwrap();
        let (_, password) = parsed.cql.credentials().unwrap().unwrap();
        assert_eq!(password.0, "s3cret");
        assert!(
            Both::try_parse_from(["x", "--cql-password", "p", "--cql-password-file", file_arg])
                .is_err()
        );
        let missing = Both::try_parse_from([
            "x",
            "--cql-username",
            "u",
            "--cql-password-file",
            "/nonexistent/password",
        ])
        .unwrap();
        let error = missing.cql.credentials().unwrap_err().to_string();
        assert!(error.contains("/nonexistent/password"), "{error}");
    }

    #[test]
    fn secrets_never_show_in_the_printed_settings() {
        let parsed = Both::try_parse_from([
            "x",
            "--cql-username",
            "taxiway",
            "--cql-password",
            "hunter2-cql",
        ])
        .unwrap();
        let printed = format!("{:?} {:#?}", parsed.cql, parsed.cql);
        assert!(!printed.contains("hunter2-cql"), "{printed}");
        assert!(printed.contains("<redacted>") && printed.contains("taxiway"));
    }

    #[test]
    fn tls_datacenter_and_consistency_flags_parse() {
        let plain = Both::try_parse_from(["x"]).unwrap();
        assert!(!plain.cql.tls_enabled());
        assert_eq!(plain.cql.read_consistency, ConsistencyLevel::LocalQuorum);
        assert!(
            Both::try_parse_from(["x", "--cql-tls"])
                .unwrap()
                .cql
                .tls_enabled()
        );
        let secured = Both::try_parse_from([
            "x",
            "--cql-tls-ca",
            "/etc/ca.pem",
            "--cql-tls-cert",
            "/etc/client.pem",
            "--cql-tls-key",
            "/etc/client.key",
            "--cql-local-dc",
            "eu-west",
            "--cql-read-consistency",
            "one",
        ])
        .unwrap();
        assert!(secured.cql.tls_enabled(), "a CA file turns TLS on");
        assert_eq!(
            secured.cql.tls_ca.as_deref(),
            Some(Path::new("/etc/ca.pem"))
        );
        assert_eq!(secured.cql.local_dc.as_deref(), Some("eu-west"));
        assert_eq!(secured.cql.read_consistency, ConsistencyLevel::One);
        // A certificate without its key (or the reverse) is a mistake, not a silent no-op.
        assert!(Both::try_parse_from(["x", "--cql-tls-cert", "/etc/client.pem"]).is_err());
        assert!(Both::try_parse_from(["x", "--cql-tls-key", "/etc/client.key"]).is_err());
    }

    #[test]
    fn a_bad_ca_file_fails_the_session_settings_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for ca in [empty, dir.path().join("absent.pem")] {
            let args = CqlArgs {
                tls_ca: Some(ca.clone()),
                ..CqlArgs::default()
            };
            let error = args
                .session_builder(ConsistencyLevel::One)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(&ca.display().to_string()), "{error}");
        }
    }
}
