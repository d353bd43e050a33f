//! What can be wrong with the connection settings before anything connects.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the password file {}: {source}", path.display())]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--cql-username is set but no password (--cql-password, TAXIWAY_CQL_PASSWORD or --cql-password-file)"
    )]
    MissingPassword,
    #[error("CQL TLS: {0}")]
    Tls(String),
    /// The schema registry refused a request or could not be reached.
    #[error("schema registry {url}: {detail}")]
    Registry {
        url: String,
        detail: String,
        /// Whether asking again may succeed (unreachable, 5xx), as opposed to a refusal.
        retriable: bool,
    },
}

impl Error {
    /// Whether the same request may succeed later (a registry down or restarting).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Registry {
                retriable: true,
                ..
            }
        )
    }

    pub(crate) fn registry(url: &str, detail: impl Into<String>) -> Error {
        Error::Registry {
            url: url.to_owned(),
            detail: detail.into(),
            retriable: false,
        }
    }

    pub(crate) fn tls_file(path: &std::path::Path, cause: impl std::fmt::Display) -> Error {
        Error::Tls(format!("{}: {cause}", path.display()))
    }
}
