//! The end-to-end suites in one test binary, a module per area; most run against the real Kafka
//! and Cassandra that `dev/test` starts, the `api_*` suites against an in-memory store, the
//! `schemas_*` suites on the data files alone.
// A failed expectation is the test failing; clippy.toml only exempts #[test] fns themselves.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod api_auth_and_openapi;
mod api_auth_coverage;
mod api_changes;
mod api_exact_releases;
mod api_handlers_caching_and_health;
mod api_handlers_queries;
mod api_hostile_http;
mod api_lean;
mod api_limits;
mod api_pages;
mod api_pipeline_replicas_and_auth;
mod api_pipeline_roots;
mod api_replicas;
mod api_stream;
mod browser_pages;
mod child_process;
mod clients_python;
mod deployment;
mod deployment_manifests;
mod deployment_metrics;
mod faults_cassandra;
mod faults_kafka;
mod ingest_attack_domain;
mod ingest_attack_index;
mod ingest_bundles;
mod ingest_workbench_edits;
mod ingest_workbench_releases;
mod kafka_headers;
mod memory_server;
mod node_crash;
mod node_embedded;
mod node_up;
mod projector_generations;
mod projector_kills;
mod projector_lost_data;
mod projector_poison;
mod projector_releases;
mod projector_replay;
mod schema_registry;
mod schemas_codec_bytes;
mod schemas_codec_events;
mod schemas_stix;
mod secure_cql;
mod secure_kafka;
mod secure_pipeline;
mod smoke_cql;
mod smoke_kafka;
mod workbench_double_auth;
mod workbench_double_exports;
