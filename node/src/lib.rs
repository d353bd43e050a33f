//! Taxiway on one machine: the pipeline's stages as tasks of one process, over an embedded
//! event log (`eventlog`) and projections held in memory ([`Projection`]), rebuilt from the log
//! at start.
//!
//! The projection is written by the projector's own batch writer (through its
//! [`Tables`](projector::tables::Tables) seam) and read by the API through its
//! [`Store`](api::store::Store) seam, so the projection rules, the checks and the API's
//! filtering and paging are the distributed deployment's own.

pub mod config;
mod error;
mod export;
mod memory;
mod project;
mod projection;
mod read;
mod serve;
pub mod topics;

pub use error::Error;
pub use export::{Exported, export};
pub use project::project;
pub use projection::Projection;
pub use serve::serve;
