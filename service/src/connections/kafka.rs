//! The Kafka connection settings: brokers, topics, security and librdkafka pass-through.

use std::path::PathBuf;
use std::time::Duration;

use super::read_password;
use crate::{Secret, parse_duration};

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
    /// The schema registry the messages are framed for, if any.
    #[command(flatten)]
    pub registry: super::RegistryArgs,
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
            registry: super::RegistryArgs::default(),
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
        read_password(file).map(Some).map_err(|e| e.to_string())
    }
}

/// The contract's message headers ([`schemas::message`]) as librdkafka's.
pub fn kafka_headers(headers: &schemas::message::Headers) -> rdkafka::message::OwnedHeaders {
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
