//! The read-only TAXII 2.1 API over the projections.
