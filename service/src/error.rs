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
}

impl Error {
    pub(crate) fn tls_file(path: &std::path::Path, cause: impl std::fmt::Display) -> Error {
        Error::Tls(format!("{}: {cause}", path.display()))
    }
}
