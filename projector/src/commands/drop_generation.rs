//! The `drop-generation` command: drop a generation's keyspace, never the active one's.

use crate::error::{Error, Result};
use crate::store::Store;

/// Drops generation `n`'s keyspace and marks it retired; refuses the active generation.
pub(crate) async fn drop_generation(store: &Store, n: i32) -> Result<()> {
    let active = store
        .active()
        .await?
        .ok_or_else(|| Error::State("no active generation: run `projector migrate`".into()))?;
    if active.generation == n {
        return Err(Error::State(format!(
            "generation {n} is the active one; rebuild (or switch) first"
        )));
    }
    let generation = store
        .generations()
        .await?
        .into_iter()
        .find(|g| g.generation == n)
        .ok_or_else(|| Error::State(format!("no generation {n}")))?;
    store.drop_keyspace(&generation.keyspace).await?;
    store.set_generation_state(n, "retired").await?;
    tracing::info!(generation = n, keyspace = %generation.keyspace, "generation dropped");
    Ok(())
}
