//! The Kafka and CQL connection settings, declared once and flattened into every binary that connects.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency;

use crate::{Error, Secret, parse_duration};

/// librdkafka's `security.protocol`: how clients talk to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KafkaSecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    // librdkafka's spelling, with an underscore.
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl KafkaSecurityProtocol {
    /// The value librdkafka expects.
    fn as_librdkafka(self) -> &'static str {
        match self {
            KafkaSecurityProtocol::Plaintext => "plaintext",
            KafkaSecurityProtocol::Ssl => "ssl",
            KafkaSecurityProtocol::SaslPlaintext => "sasl_plaintext",
            KafkaSecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// The SASL mechanisms librdkafka supports without Kerberos or OAuth setup of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaSaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl KafkaSaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            KafkaSaslMechanism::Plain => "PLAIN",
            KafkaSaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            KafkaSaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// One `key=value` librdkafka property passed through as is.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOption {
    pub key: String,
    pub value: String,
}

/// Properties whose values are secrets: printed redacted, like [`Secret`].
const SECRET_OPTION_MARKERS: [&str; 3] = ["password", "secret", "sasl.jaas.config"];

impl std::fmt::Debug for KafkaOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.key.to_ascii_lowercase();
        if SECRET_OPTION_MARKERS.iter().any(|m| key.contains(m)) {
            write!(f, "{}=<redacted>", self.key)
        } else {
            write!(f, "{}={}", self.key, self.value)
        }
    }
}

impl std::str::FromStr for KafkaOption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(KafkaOption {
                key: key.trim().to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(format!(
                "a Kafka option is key=value (a librdkafka property), not '{s}'"
            )),
        }
    }
}

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
    /// How clients talk to the brokers: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(
        long = "kafka-security-protocol",
        env = "TAXIWAY_KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value = "plaintext",
        global = true
    )]
    pub security_protocol: KafkaSecurityProtocol,
    /// The SASL mechanism (sasl_plaintext and sasl_ssl): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "TAXIWAY_KAFKA_SASL_MECHANISM",
        value_enum,
        global = true
    )]
    pub sasl_mechanism: Option<KafkaSaslMechanism>,
    /// The SASL user name.
    #[arg(
        long = "kafka-sasl-username",
        env = "TAXIWAY_KAFKA_SASL_USERNAME",
        global = true
    )]
    pub sasl_username: Option<String>,
    /// The SASL password; prefer the environment or `--kafka-sasl-password-file` to a flag,
    /// which other users of the machine can read in the process list.
    #[arg(
        long = "kafka-sasl-password",
        env = "TAXIWAY_KAFKA_SASL_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub sasl_password: Option<Secret>,
    /// A file holding the SASL password (one line; the trailing newline is dropped).
    #[arg(
        long = "kafka-sasl-password-file",
        env = "TAXIWAY_KAFKA_SASL_PASSWORD_FILE",
        conflicts_with = "sasl_password",
        global = true
    )]
    pub sasl_password_file: Option<PathBuf>,
    /// The CA certificates (PEM) that sign the brokers' certificates; unset, the system's.
    #[arg(long = "kafka-ssl-ca", env = "TAXIWAY_KAFKA_SSL_CA", global = true)]
    pub ssl_ca: Option<PathBuf>,
    /// A client certificate (PEM), for brokers that authenticate clients by certificate.
    #[arg(
        long = "kafka-ssl-cert",
        env = "TAXIWAY_KAFKA_SSL_CERT",
        requires = "ssl_key",
        global = true
    )]
    pub ssl_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long = "kafka-ssl-key",
        env = "TAXIWAY_KAFKA_SSL_KEY",
        requires = "ssl_cert",
        global = true
    )]
    pub ssl_key: Option<PathBuf>,
    /// Any other librdkafka property, key=value; repeatable, and comma-separated in the
    /// environment. Applied last, so it overrides what the flags above set.
    #[arg(
        long = "kafka-option",
        env = "TAXIWAY_KAFKA_OPTIONS",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub options: Vec<KafkaOption>,
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
            security_protocol: KafkaSecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_password_file: None,
            ssl_ca: None,
            ssl_cert: None,
            ssl_key: None,
            options: Vec::new(),
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
    ///
    /// Panics never: a password file that cannot be read leaves the password unset, and the
    /// brokers then refuse the login, which names the cause; [`KafkaArgs::sasl_password`] reads
    /// it with the error for callers that check first.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config.set("security.protocol", self.security_protocol.as_librdkafka());
        if let Some(mechanism) = self.sasl_mechanism {
            config.set("sasl.mechanism", mechanism.as_librdkafka());
        }
        if let Some(user) = &self.sasl_username {
            config.set("sasl.username", user);
        }
        if let Ok(Some(password)) = self.sasl_password() {
            config.set("sasl.password", password.0);
        }
        let paths = [
            ("ssl.ca.location", &self.ssl_ca),
            ("ssl.certificate.location", &self.ssl_cert),
            ("ssl.key.location", &self.ssl_key),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                config.set(key, path.display().to_string());
            }
        }
        for option in &self.options {
            config.set(&option.key, &option.value);
        }
        config
    }

    /// The SASL password, from the flag or environment, else read from the password file.
    pub fn sasl_password(&self) -> Result<Option<Secret>, String> {
        if let Some(password) = &self.sasl_password {
            return Ok(Some(password.clone()));
        }
        let Some(file) = &self.sasl_password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "reading the Kafka SASL password file {}: {e}",
                file.display()
            )
        })?;
        Ok(Some(Secret(text.trim_end_matches(['\r', '\n']).to_owned())))
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

    #[test]
    fn the_kafka_security_flags_reach_librdkafka_and_options_come_last() {
        let parsed = Both::try_parse_from([
            "x",
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "taxiway",
            "--kafka-sasl-password",
            "hunter2",
            "--kafka-ssl-ca",
            "/etc/ca.pem",
            "--kafka-option",
            "client.rack=eu-1a",
            "--kafka-option",
            "sasl.mechanism=PLAIN",
        ])
        .unwrap();
        let config = parsed.kafka.client_config();
        for (key, expected) in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.username", "taxiway"),
            ("sasl.password", "hunter2"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("client.rack", "eu-1a"),
            // The pass-through overrides the flag: it is the escape hatch.
            ("sasl.mechanism", "PLAIN"),
        ] {
            assert_eq!(config.get(key), Some(expected), "{key}");
        }
        assert_eq!(config.get("ssl.certificate.location"), None);
        let plain = KafkaArgs::default().client_config();
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
        assert_eq!(plain.get("sasl.username"), None);
    }

    #[test]
    fn bad_kafka_security_values_are_refused() {
        for args in [
            &["x", "--kafka-security-protocol", "tls"][..],
            &["x", "--kafka-sasl-mechanism", "GSSAPI"],
            &["x", "--kafka-option", "no-equals-sign"],
            &["x", "--kafka-option", "=value"],
            // A certificate without its key, or the reverse, cannot work.
            &["x", "--kafka-ssl-cert", "c.pem"],
            &["x", "--kafka-ssl-key", "k.pem"],
            &[
                "x",
                "--kafka-sasl-password",
                "a",
                "--kafka-sasl-password-file",
                "f",
            ],
        ] {
            assert!(Both::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn the_kafka_password_comes_from_a_file_without_its_newline() {
        let file = std::env::temp_dir().join(format!("taxiway-kafka-pw-{}", std::process::id()));
        std::fs::write(&file, "s3cret\n").unwrap();
        let parsed =
            Both::try_parse_from(["x", "--kafka-sasl-password-file", file.to_str().unwrap()])
                .unwrap();
        assert_eq!(
            parsed.kafka.sasl_password().unwrap(),
            Some(Secret("s3cret".to_owned()))
        );
        assert_eq!(
            parsed.kafka.client_config().get("sasl.password"),
            Some("s3cret")
        );
        std::fs::remove_file(&file).unwrap();
        let missing = parsed.kafka.sasl_password().unwrap_err();
        assert!(missing.contains(file.to_str().unwrap()), "{missing}");
    }

    #[test]
    fn kafka_secrets_are_redacted_from_the_printed_settings() {
        let parsed = Both::try_parse_from([
            "x",
            "--kafka-sasl-password",
            "hunter2",
            "--kafka-option",
            "ssl.key.password=k3ypass",
            "--kafka-option",
            "sasl.oauthbearer.client.secret=0auth",
            "--kafka-option",
            "sasl.jaas.config=user=u password=jaaspw",
            "--kafka-option",
            "client.id=visible",
        ])
        .unwrap();
        let printed = format!("{:?}", parsed.kafka);
        for secret in ["hunter2", "k3ypass", "0auth", "jaaspw"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("client.id=visible"), "{printed}");
        assert!(printed.contains("ssl.key.password=<redacted>"), "{printed}");
    }

    #[test]
    fn kafka_options_from_the_environment_are_comma_separated() {
        use clap::{CommandFactory, FromArgMatches};
        // The variable's value, as clap would read it, without touching the process environment.
        let command = Both::command();
        let matches = command
            .try_get_matches_from(["x", "--kafka-option", "a=1,b=2"])
            .unwrap();
        let parsed = Both::from_arg_matches(&matches).unwrap();
        let pairs: Vec<(&str, &str)> = parsed
            .kafka
            .options
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "1"), ("b", "2")]);
        let env_of = |id: &str| {
            Both::command()
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        };
        assert_eq!(env_of("options").as_deref(), Some("TAXIWAY_KAFKA_OPTIONS"));
        assert_eq!(
            env_of("sasl_password").as_deref(),
            Some("TAXIWAY_KAFKA_SASL_PASSWORD")
        );
    }
}
