//! The Taxiway event contract: STIX rules, event types, Avro single-object codec, Kafka keys and the CQL of the projections.
