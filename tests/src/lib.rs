//! Shared helpers of the end-to-end suites: where the dev services listen, unique names per test, deadlines.
//!
//! Every suite here runs against the real Kafka and Cassandra started by `dev/services`
//! (`dev/test` starts them and exports the addresses below).

use std::time::{Duration, Instant};

pub mod api;
pub mod api_child;
pub mod bench;
pub mod browser;
pub mod child;
pub mod crawl;
pub mod engines;
pub mod fixtures;
pub mod node_child;
pub mod pipeline;
pub mod projection;
pub mod python;
pub mod sse;
pub mod topic;
pub mod workbench_double;

/// Kafka bootstrap servers, as exported by `dev/test` (`TAXIWAY_KAFKA_BROKERS`).
pub fn kafka_brokers() -> String {
    std::env::var("TAXIWAY_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The schema registry's Confluent-compatible API, as exported by `dev/test`
/// (`TAXIWAY_TEST_SCHEMA_REGISTRY_URL`; `dev/services` runs Apicurio Registry). Not
/// `TAXIWAY_SCHEMA_REGISTRY_URL`, which every binary reads as its `--schema-registry`.
pub fn schema_registry_url() -> String {
    std::env::var("TAXIWAY_TEST_SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".to_owned())
}

/// CQL contact points, as exported by `dev/test` (`TAXIWAY_CQL_NODES`, comma-separated).
pub fn cql_nodes() -> Vec<String> {
    std::env::var("TAXIWAY_CQL_NODES")
        .unwrap_or_else(|_| "127.0.0.1:9042".to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A name no other test run uses, valid as a Kafka topic and as a CQL identifier
/// (lowercase letters, digits and underscores, at most 48 characters).
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut name = format!("{prefix}_{}", &id[..16]);
    name.truncate(48);
    name
}

/// A point in time every wait in a test must respect, so a hung service fails the test
/// with a message instead of hanging CI.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now() + timeout)
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_distinct_and_valid_identifiers() {
        let a = unique_name("smoke");
        let b = unique_name("smoke");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert!(a.len() <= 48);
    }
}
