//! `GET {root}/collections/{id}/stream/`: every object version that becomes visible on the root,
//! as Server-Sent Events, for consumers without Kafka (docs/api.md, "Live stream").
//!
//! A subscriber's position is a `date_added`: each event's id is the version's `date_added`, and
//! the stream sends, in `date_added` order, what the objects listing would return for
//! `added_after` = the last one sent and `match[version]=all` — the same selection engine, so the
//! same guarantee as polling with `added_after`. A client resumes with `Last-Event-ID` (browsers'
//! `EventSource` sends it by itself) or `added_after`; without either it gets only what is added
//! after it connected. The stream waits on catalog swaps, not on a timer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::{ReadableCollection, Root, collection_in_root};
use crate::error::ApiError;
use crate::filters::{Filter, VersionMatch, timestamp};
use crate::selection::select;
use crate::snapshot::{Content, Snapshot, format_micros};
use crate::state::AppState;

/// Versions read (and, for a lean collection, fetched) per step: bounds a subscriber's memory
/// while it catches up on a large backlog.
const STEP: usize = 256;

/// Events buffered per subscriber before the sender waits for the client to read.
const BUFFER: usize = 64;

#[derive(Debug, Deserialize)]
pub(crate) struct StreamParams {
    added_after: Option<String>,
}

/// Opens a live stream; 503 with `Retry-After` when every subscriber slot is taken.
pub(crate) async fn stream(
    State(state): State<AppState>,
    collection: ReadableCollection,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_parameter("query", e.body_text()))?;
    let after = match headers.get("last-event-id") {
        Some(value) => Some(timestamp(
            "Last-Event-ID",
            value
                .to_str()
                .map_err(|e| ApiError::bad_parameter("Last-Event-ID", e.to_string()))?,
        )?),
        None => params
            .added_after
            .as_deref()
            .map(|text| timestamp("added_after", text))
            .transpose()?,
    };
    let cap = state.server.limits.max_stream_subscribers;
    let permit = state
        .stream_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManySubscribers(cap))?;
    // Without a position: from the newest version visible now.
    let after = after.or_else(|| newest(&collection.snapshot, &collection));
    let (events, received) = mpsc::channel(BUFFER);
    let subscriber = Subscriber {
        state: state.clone(),
        root: collection.root,
        id: collection.id,
        after,
        events,
        _permit: permit,
    };
    tokio::spawn(subscriber.run());
    let body = futures::stream::unfold(received, |mut received| async move {
        received
            .recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), received))
    });
    // The connection's keep-alive timeout closes a response whose bytes stop moving: beat
    // well inside it.
    let beat = (state.server.limits.keep_alive_timeout / 2).max(Duration::from_millis(100));
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(beat))
        .into_response())
}

/// The newest `date_added` of the view the request resolved.
fn newest(snapshot: &Snapshot, collection: &ReadableCollection) -> Option<i64> {
    let view = snapshot.view(collection.sel);
    let all = Filter {
        versions: VersionMatch::all(),
        ..Filter::default()
    };
    select(view, &all)
        .last()
        .map(|&v| snapshot.versions[v as usize].date_added)
}

/// One subscriber's sending task: ends when the client goes away, the server stops, or the
/// collection leaves the root.
struct Subscriber {
    state: AppState,
    root: Root,
    id: String,
    after: Option<i64>,
    events: mpsc::Sender<Event>,
    _permit: OwnedSemaphorePermit,
}

impl Subscriber {
    async fn run(mut self) {
        let metrics = self.state.metrics.clone();
        metrics.stream_subscribers.inc();
        let mut swaps = self.state.catalog_swaps();
        loop {
            swaps.mark_unchanged();
            match self.send_new().await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(collection = %self.id, error = %e, "live stream ended");
                    break;
                }
            }
            tokio::select! {
                changed = swaps.changed() => if changed.is_err() { break },
                () = self.events.closed() => break,
                () = self.state.stopping.cancelled() => break,
            }
        }
        metrics.stream_subscribers.dec();
    }

    /// Sends every version of the current catalog added after the last one sent. `Ok(false)`:
    /// the subscriber is gone or the collection no longer in the root.
    async fn send_new(&mut self) -> Result<bool, ApiError> {
        let catalog = self.state.catalog();
        let Ok((snapshot, sel)) = collection_in_root(&catalog, &self.root, &self.id) else {
            return Ok(false);
        };
        let filter = Filter {
            added_after: self.after,
            versions: VersionMatch::all(),
            ..Filter::default()
        };
        let selected = select(snapshot.view(sel), &filter);
        for step in selected.chunks(STEP) {
            let objects = json_of(&snapshot, step).await?;
            for (&v, json) in step.iter().zip(objects) {
                let date_added = snapshot.versions[v as usize].date_added;
                let text = String::from_utf8_lossy(&json);
                // An SSE data line ends at CR or LF: raw ones can only be whitespace between
                // JSON tokens, which compacting drops.
                let data = if text.contains(['\n', '\r']) {
                    schemas::compact_json(&text)
                } else {
                    text.into_owned()
                };
                let event = Event::default()
                    .id(format_micros(date_added))
                    .event("object")
                    .data(data);
                if self.events.send(event).await.is_err() {
                    return Ok(false);
                }
                self.state.metrics.stream_events.inc();
                self.after = Some(date_added);
            }
        }
        Ok(true)
    }
}

/// The object JSON of `versions`: held in the snapshot, or fetched for a lean collection.
async fn json_of(snapshot: &Arc<Snapshot>, versions: &[u32]) -> Result<Vec<Bytes>, ApiError> {
    match &snapshot.content {
        Content::Held => Ok(versions
            .iter()
            .map(|&v| snapshot.versions[v as usize].json.clone())
            .collect()),
        Content::Lean { store, generation } => {
            let keys: Vec<_> = versions.iter().map(|&v| snapshot.key(v)).collect();
            store
                .fetch_objects(generation, &snapshot.meta.id, &keys)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
    }
}
