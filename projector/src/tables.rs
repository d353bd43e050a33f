//! The seam between a batch and where its rows go: one generation's projection tables, in CQL
//! ([`GenerationStore`](crate::store::GenerationStore)) or in another store that keeps CQL's
//! write semantics (every write last-write-wins by its timestamp, a delete shadowing writes
//! with a timestamp not above its own).

use std::future::Future;

use crate::error::Result;
use crate::rows::{Mutation, ReleaseKey};

/// The writes and the two reads `rows` needs in between (see its module documentation).
pub trait Tables: Send + Sync {
    /// What the tables are called in logs and errors (a keyspace).
    fn name(&self) -> &str;

    /// Executes one row write or delete at its timestamp ([`Mutation::timestamp`]).
    fn write(&self, m: &Mutation) -> impl Future<Output = Result<()>> + Send;

    /// Every `date_added` recorded for one object version.
    fn date_addeds(
        &self,
        collection_id: &str,
        object_id: &str,
        version: i64,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// The chunk indexes of a release written so far.
    fn release_chunks(&self, key: &ReleaseKey) -> impl Future<Output = Result<Vec<i32>>> + Send;

    /// The tables of the generation that are gone (a dropped keyspace): after a failed write,
    /// no retry can bring them back. Empty while they all exist.
    fn missing_tables(&self) -> impl Future<Output = Result<Vec<&'static str>>> + Send;
}
