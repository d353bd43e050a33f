//! Keeps the in-memory catalog in step with the store: poll revisions, reload what moved, within
//! the memory bound.
//!
//! Every `poll_interval` (500 ms by default) one cheap query per replica lists collection
//! revisions; a collection whose revision moved is reloaded and its snapshot swapped in whole,
//! so a change is visible within about one poll plus one load. A new active generation
//! reloads everything from the new keyspace before switching, so readers see one generation
//! or the other, never a mix.
//!
//! The memory bound (`--max-snapshot-bytes`): a reload first loads the index of every moved
//! collection (no object JSON), then fills in the JSON of each, fewest versions first, while the
//! total of everything held stays within the bound. A collection whose JSON does not fit stays
//! *lean*: its listings fetch the JSON of the versions they send from the store. Collections
//! that did not move keep what they hold, so a reload never evicts another collection's JSON;
//! a lean collection gets its JSON back at its next reload if there is room by then.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::snapshot::{Catalog, Content, Snapshot};
use crate::state::AppState;
use crate::store::{ContentKey, Generation, Store, StoreError};

/// Versions whose JSON one fill request asks for: memory above the bound while filling is at
/// most one such chunk.
const FILL_CHUNK: usize = 1024;

/// One poll: returns whether the catalog changed.
pub async fn refresh_once(state: &AppState, store: &Arc<dyn Store>) -> Result<bool, StoreError> {
    let generation = store.active_generation().await?;
    let current = state.catalog();
    let same_generation = current.generation.as_ref() == Some(&generation);
    let listed = store.list_collections(&generation).await?;
    let mut collections: BTreeMap<String, Arc<Snapshot>> = if same_generation {
        current.collections.clone()
    } else {
        BTreeMap::new()
    };
    let mut changed = !same_generation || !current.loaded;
    collections.retain(|id, _| {
        let keep = listed.iter().any(|c| &c.collection_id == id);
        changed |= !keep;
        keep
    });
    let mut indexed: Vec<Snapshot> = Vec::new();
    for c in &listed {
        if collections
            .get(&c.collection_id)
            .is_some_and(|s| s.revision == c.revision)
        {
            continue;
        }
        // The old snapshot is replaced either way: it no longer counts against the bound.
        collections.remove(&c.collection_id);
        changed = true;
        let Some(data) = store.load_index(&generation, &c.collection_id).await? else {
            continue;
        };
        // Indexing Enterprise (~50k versions) takes tens of milliseconds of CPU: off the runtime.
        let snapshot = tokio::task::spawn_blocking(move || Snapshot::build(data))
            .await
            .map_err(|e| StoreError::new("indexing a collection", e))?;
        indexed.push(snapshot);
    }

    let bound = state.server.max_snapshot_bytes;
    let mut held: usize = collections.values().map(|s| s.approx_bytes).sum::<usize>()
        + indexed.iter().map(|s| s.approx_bytes).sum::<usize>();
    // Fewest versions first: the largest collections are the ones left lean, so the most
    // collections (and requests) are served from memory.
    indexed.sort_by(|a, b| (a.versions.len(), &a.meta.id).cmp(&(b.versions.len(), &b.meta.id)));
    for mut snapshot in indexed {
        let available = bound.saturating_sub(held);
        match fill(store.as_ref(), &generation, &mut snapshot, available).await? {
            Some(json_bytes) => held += json_bytes,
            None => {
                snapshot.content = Content::Lean {
                    store: store.clone(),
                    generation: generation.clone(),
                };
            }
        }
        tracing::info!(collection = %snapshot.meta.id, revision = snapshot.revision,
            objects = snapshot.objects.len(), versions = snapshot.versions.len(),
            releases = snapshot.releases.len(), bytes = snapshot.approx_bytes,
            lean = snapshot.is_lean(), "collection loaded");
        collections.insert(snapshot.meta.id.clone(), Arc::new(snapshot));
    }

    if changed {
        let metrics = &state.metrics;
        metrics.revision.reset();
        metrics.snapshot_bytes.reset();
        metrics.lean.reset();
        for (id, s) in &collections {
            metrics
                .revision
                .with_label_values(&[id.as_str()])
                .set(s.revision);
            metrics
                .snapshot_bytes
                .with_label_values(&[id.as_str()])
                .set(i64::try_from(s.approx_bytes).unwrap_or(i64::MAX));
            metrics
                .lean
                .with_label_values(&[id.as_str()])
                .set(i64::from(s.is_lean()));
        }
        metrics.generation.set(i64::from(generation.number));
        if held > bound {
            // Only the indexes are left to cut, and a collection cannot be served without one.
            tracing::warn!(
                total = held,
                bound,
                "collection indexes alone exceed the memory bound"
            );
        }
        state.set_catalog(Catalog {
            generation: Some(generation),
            collections,
            loaded: true,
        });
    }
    Ok(changed)
}

/// Fills in the object JSON of `snapshot` if it fits in `available` bytes: `Some(bytes held)`,
/// or `None` (and nothing held) as soon as the JSON read so far exceeds it.
async fn fill(
    store: &dyn Store,
    generation: &Generation,
    snapshot: &mut Snapshot,
    available: usize,
) -> Result<Option<usize>, StoreError> {
    let mut total = 0usize;
    let n = snapshot.versions.len();
    let mut start = 0;
    while start < n {
        let end = (start + FILL_CHUNK).min(n);
        let json = {
            let keys: Vec<ContentKey<'_>> = (start..end).map(|i| snapshot.key(i as u32)).collect();
            store
                .fetch_objects(generation, &snapshot.meta.id, &keys)
                .await?
        };
        total += json.iter().map(Bytes::len).sum::<usize>();
        if total > available {
            for v in &mut snapshot.versions[..start] {
                v.json = Bytes::new();
            }
            return Ok(None);
        }
        for (v, j) in snapshot.versions[start..end].iter_mut().zip(json) {
            v.json = j;
        }
        start = end;
    }
    snapshot.approx_bytes += total;
    Ok(Some(total))
}

/// Polls until `shutdown`; failures are logged, counted and retried at the next tick.
pub async fn run(state: AppState, store: Arc<dyn Store>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.server.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = refresh_once(&state, &store) => r,
        };
        match result {
            Ok(_) => state.record_poll(Ok(())),
            Err(e) => {
                state.metrics.store_errors.inc();
                let message = e.to_string();
                // Log a failure once, not twice a second while it lasts; the counter counts all.
                if state.health().last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(error = %message, "refreshing collections failed; serving the last good data");
                }
                state.record_poll(Err(message));
            }
        }
    }
}
