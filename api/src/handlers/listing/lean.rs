//! The objects of a lean collection's page (its JSON not held: over the memory bound), fetched
//! from the store for the versions the page sends.

use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;

use super::page::Items;
use crate::error::ApiError;
use crate::metrics::{FetchTally, Metrics};
use crate::snapshot::Snapshot;
use crate::store::{ContentKey, Generation, Store, StoreError};

/// Versions fetched at once while streaming a lean collection without a limit: a response
/// holds at most two such chunks (one being sent, the next being fetched), whatever its size.
const LEAN_CHUNK: usize = 256;

/// The objects of a lean collection's page, fetched from the store.
pub(crate) struct LeanPage {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) generation: Generation,
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) selected: Arc<[u32]>,
}

impl LeanPage {
    /// The object JSON of `selected[range]`, in order.
    fn fetch(
        &self,
        range: Range<usize>,
    ) -> impl Future<Output = Result<Vec<Bytes>, StoreError>> + Send + use<> {
        let (store, generation) = (self.store.clone(), self.generation.clone());
        let (snapshot, selected) = (self.snapshot.clone(), self.selected.clone());
        async move {
            let keys: Vec<ContentKey<'_>> =
                selected[range].iter().map(|&v| snapshot.key(v)).collect();
            store
                .fetch_objects(&generation, &snapshot.meta.id, &keys)
                .await
        }
    }

    /// The body of a non-empty page. With a limit the page is fetched whole before answering,
    /// so a store failure is a 500 with a TAXII body; without one (a whole collection) it is
    /// streamed in [`LEAN_CHUNK`]s, the first fetched before answering, and a later failure
    /// aborts the stream (logged and counted: the status line is already sent).
    pub(crate) async fn body(
        self,
        metrics: &Metrics,
        mut items: Items,
        head: Vec<u8>,
        range: Range<usize>,
        limited: bool,
    ) -> Result<Body, ApiError> {
        let step = if limited { range.len() } else { LEAN_CHUNK };
        let mut chunks = (range.start..range.end)
            .step_by(step.max(1))
            .map(move |start| start..(start + step).min(range.end));
        let collection = self.snapshot.meta.id.clone();
        let mut tally = FetchTally::new(metrics, &collection);
        // Always a stream, never a sized body: a held page is streamed without a
        // Content-Length, and a lean one must answer with the same headers.
        let whole = |bytes: Vec<u8>| {
            Body::from_stream(futures::stream::once(async move {
                Ok::<_, Infallible>(Bytes::from(bytes))
            }))
        };
        let Some(first) = chunks.next() else {
            return Ok(whole(head));
        };
        let metrics = metrics.clone();
        let json = self.fetch(first.clone()).await.map_err(|e| {
            metrics.fetch_errors.inc();
            ApiError::Internal(format!("fetching objects of {collection}: {e}"))
        })?;
        let remaining = chunks.len();
        let mut buf = head;
        render(
            &mut items,
            &mut buf,
            &self.selected[first],
            &json,
            &mut tally,
        );
        if remaining == 0 {
            buf.extend_from_slice(b"]}");
            return Ok(whole(buf));
        }
        let selected = self.selected.clone();
        let rest = futures::stream::iter(chunks.map(move |r| {
            let fetched = self.fetch(r.clone());
            async move { (r, fetched.await) }
        }))
        .buffered(2)
        .enumerate()
        .map(move |(i, (r, result))| match result {
            Ok(json) => {
                let mut buf = Vec::new();
                render(&mut items, &mut buf, &selected[r], &json, &mut tally);
                if i + 1 == remaining {
                    buf.extend_from_slice(b"]}");
                }
                Ok(Bytes::from(buf))
            }
            Err(e) => {
                metrics.fetch_errors.inc();
                tracing::error!(collection = %collection, error = %e,
                    "fetching objects failed mid-response; aborting the stream");
                Err(std::io::Error::other(e))
            }
        });
        let first = futures::stream::once(async move { Ok(Bytes::from(buf)) });
        Ok(Body::from_stream(first.chain(rest)))
    }
}

fn render(
    items: &mut Items,
    buf: &mut Vec<u8>,
    versions: &[u32],
    json: &[Bytes],
    tally: &mut FetchTally,
) {
    tally.add(json.len(), json.iter().map(Bytes::len).sum());
    for (&v, j) in versions.iter().zip(json) {
        items.write(buf, v, j);
    }
}
