//! Ingest: turns STIX bundle files and ATT&CK Workbench collections into events on Kafka.
