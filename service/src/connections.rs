//! The Kafka and CQL connection settings, declared once and flattened into every binary that connects.

mod cql;
mod kafka;
mod registry;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use cql::{ConsistencyLevel, CqlArgs};
pub use kafka::{
    KafkaArgs, KafkaOption, KafkaSaslMechanism, KafkaSecurityProtocol, kafka_headers, partition_ids,
};
pub use registry::{RegistryArgs, SchemaRegistry, SchemaResolver};

use crate::{Error, Secret};

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
