//! What the three services share: logging, shutdown, the metrics endpoint, and the settings every binary flattens.

mod clock;
mod connections;
mod error;
mod kafka_check;
mod logging;
mod metrics;
mod secret;
mod shutdown;
mod tls_probe;
mod units;

pub use clock::now_micros;
pub use connections::{
    ConsistencyLevel, CqlArgs, KafkaArgs, KafkaOption, KafkaSaslMechanism, KafkaSecurityProtocol,
    RegistryArgs, SchemaRegistry, SchemaResolver, kafka_headers, partition_ids,
};
pub use error::Error;
pub use logging::{LogArgs, LogFormat, init_tracing};
pub use metrics::{render, render_all, serve_metrics, spawn_metrics};
pub use secret::Secret;
pub use shutdown::shutdown_on_signal;
pub use units::{parse_bytes, parse_duration};
