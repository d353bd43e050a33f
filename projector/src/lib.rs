//! Projector: materializes the event log into the CQL projections the API reads.
