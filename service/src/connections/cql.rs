//! The CQL connection settings: nodes, control keyspace, credentials, TLS, local datacenter
//! and consistency, turned into a session builder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency;

use super::read_password;
use crate::{Error, Secret, parse_duration};

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
