//! `objects/`, `objects/{object_id}/` and `…/versions/`, and the listing machinery the manifest shares.

use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::{
    TaxiiPath, collection_in_root, loaded_catalog, not_modified_response, resolve_root, root_key,
};
use crate::AppState;
use crate::auth::Rights;
use crate::cache::{etag, not_modified};
use crate::compressed;
use crate::cursor::Cursor;
use crate::error::ApiError;
use crate::filters::{Endpoint, fingerprint, page, parse_query, select};
use crate::media::{STIX_20, STIX_21, TAXII_CONTENT_TYPE};
use crate::metrics::FetchTally;
use crate::snapshot::{Content, Snapshot, format_micros};
use crate::store::{Generation, Store};

static DATE_ADDED_FIRST: HeaderName = HeaderName::from_static("x-taxii-date-added-first");
static DATE_ADDED_LAST: HeaderName = HeaderName::from_static("x-taxii-date-added-last");

/// `GET …/objects/`: an envelope of objects.
pub async fn list(
    State(state): State<AppState>,
    TaxiiPath(path): TaxiiPath,
    Extension(rights): Extension<Rights>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    listing(
        &state,
        path,
        &rights,
        query.as_deref(),
        &headers,
        Endpoint::Objects,
    )
    .await
}

/// `GET …/objects/{object_id}/`: an envelope with the object's selected versions.
pub async fn one(
    State(state): State<AppState>,
    TaxiiPath(path): TaxiiPath,
    Extension(rights): Extension<Rights>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    listing(
        &state,
        path,
        &rights,
        query.as_deref(),
        &headers,
        Endpoint::Object,
    )
    .await
}

/// `GET …/objects/{object_id}/versions/`: the versions resource.
pub async fn versions(
    State(state): State<AppState>,
    TaxiiPath(path): TaxiiPath,
    Extension(rights): Extension<Rights>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    listing(
        &state,
        path,
        &rights,
        query.as_deref(),
        &headers,
        Endpoint::Versions,
    )
    .await
}

/// The one engine behind objects, object, versions and manifest, for every kind of root.
pub(crate) async fn listing(
    state: &AppState,
    path: super::PathParams,
    rights: &Rights,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let catalog = loaded_catalog(state)?;
    let root = resolve_root(state, &catalog, path.root.as_deref())?;
    let id = path.id.unwrap_or_default();
    let (snapshot, sel) = collection_in_root(&catalog, &root, &id)?;
    if !rights.can_read(&id) {
        return Err(ApiError::Forbidden(format!(
            "no read access to collection {id:?}"
        )));
    }
    let mut query = parse_query(raw_query, endpoint, state.server.max_page_size)?;
    let view = snapshot.view(sel);
    if let Some(object_id) = &path.object_id {
        let found = snapshot
            .find_object(object_id)
            .is_some_and(|o| view.has_object(o));
        if !found {
            return Err(ApiError::NotFound(format!(
                "no object {object_id:?} in this collection"
            )));
        }
        // The path names the object: match[id] and match[type] from the query don't apply.
        query.filter.ids = Some(vec![object_id.clone()]);
        query.filter.types = None;
    }
    let view_key = view.key.text();
    let filter_text = query.filter.canonical();
    let query_hash = fingerprint(&[
        &id,
        &root_key(&root),
        &view_key,
        endpoint.as_str(),
        &filter_text,
    ]);
    let after = match &query.next {
        None => None,
        Some(text) => {
            let Cursor {
                position,
                query_hash: bound,
            } = state
                .cursor_key
                .decode(text)
                .map_err(|e| ApiError::bad_parameter("next", e.to_string()))?;
            if bound != query_hash {
                return Err(ApiError::bad_parameter(
                    "next",
                    "the cursor belongs to another query",
                ));
            }
            Some(position)
        }
    };
    let generation = catalog.generation.as_ref().map_or(0, |g| g.number);
    let tag_digest = fingerprint(&[
        &query_hash.to_string(),
        &snapshot.revision.to_string(),
        &generation.to_string(),
        &format!("{:?}", query.limit),
        query.next.as_deref().unwrap_or(""),
    ]);
    let tag = etag(tag_digest);
    if not_modified(headers, &tag) {
        state.metrics.not_modified.inc();
        return Ok(not_modified_response(tag));
    }
    let cache_key = fingerprint(&[
        &id,
        &snapshot.revision.to_string(),
        &generation.to_string(),
        &view_key,
        &filter_text,
    ]);
    let (selected, hit) = state
        .cache
        .get_or_compute(cache_key, || select(view, &query.filter));
    state
        .metrics
        .cache
        .with_label_values(&[if hit { "hit" } else { "miss" }])
        .inc();
    let p = page(&snapshot, &selected, after.as_ref(), query.limit);

    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TAXII_CONTENT_TYPE),
    );
    response_headers.insert(header::ETAG, tag);
    let kind = match endpoint {
        Endpoint::Objects | Endpoint::Object => Kind::Objects,
        Endpoint::Manifest => Kind::Manifest,
        Endpoint::Versions => Kind::Versions,
    };
    let items_key = if kind == Kind::Versions {
        "versions"
    } else {
        "objects"
    };
    let head = if p.start == p.end {
        format!("{{\"{items_key}\":[")
    } else {
        for (name, index) in [(&DATE_ADDED_FIRST, p.start), (&DATE_ADDED_LAST, p.end - 1)] {
            let date = format_micros(snapshot.versions[selected[index] as usize].date_added);
            if let Ok(v) = HeaderValue::from_str(&date) {
                response_headers.insert(name.clone(), v);
            }
        }
        match (query.limit, p.more) {
            // No limit: the whole result, and no `more` key, as MITRE's server answers.
            (None, _) => format!("{{\"{items_key}\":["),
            (Some(_), false) => format!("{{\"more\":false,\"{items_key}\":["),
            (Some(_), true) => {
                let cursor = Cursor {
                    position: snapshot.position(selected[p.end - 1]),
                    query_hash,
                };
                format!(
                    "{{\"more\":true,\"next\":\"{}\",\"{items_key}\":[",
                    state.cursor_key.encode(&cursor)
                )
            }
        }
    };
    let page = PageBody {
        items: Items {
            snapshot: snapshot.clone(),
            kind,
            first: true,
        },
        selected,
        next: p.start,
        end: p.end,
        head: Some(head.into_bytes()),
        done: false,
    };
    if kind == Kind::Objects
        && query.limit.is_none()
        && let Some(response) =
            cached_whole(state, headers, &response_headers, tag_digest, page.clone()).await?
    {
        return Ok(response);
    }
    let body = match &snapshot.content {
        // Only objects carry JSON: manifests and versions of a lean collection come from its
        // index like any other.
        Content::Lean { store, generation } if kind == Kind::Objects && p.start < p.end => {
            let source = LeanPage {
                store: store.clone(),
                generation: generation.clone(),
                snapshot: snapshot.clone(),
                selected: page.selected,
            };
            source
                .body(
                    state,
                    page.items,
                    page.head.unwrap_or_default(),
                    p.start..p.end,
                    query.limit.is_some(),
                )
                .await?
        }
        _ => Body::from_stream(futures::stream::iter(page)),
    };
    Ok((response_headers, body).into_response())
}

/// Whole results smaller than this are compressed per response: caching them saves little.
const MIN_CACHED_BODY: usize = 256 * 1024;

/// A whole objects result of a held collection, compressed once per (ETag, encoding) and kept
/// (see [`crate::compressed`]). `None` when the client takes no cached encoding, the cache is
/// off, the collection is lean or the body is small: the caller streams it as usual.
async fn cached_whole(
    state: &AppState,
    headers: &HeaderMap,
    response_headers: &HeaderMap,
    tag_digest: u64,
    body: PageBody,
) -> Result<Option<Response>, ApiError> {
    let snapshot = &body.items.snapshot;
    if !state.compressed.enabled() || !matches!(snapshot.content, Content::Held) {
        return Ok(None);
    }
    let Some(encoding) = compressed::negotiate(headers) else {
        return Ok(None);
    };
    let size: usize = body.selected[body.next..body.end]
        .iter()
        .map(|&v| snapshot.versions[v as usize].json.len() + 1)
        .sum();
    if size < MIN_CACHED_BODY {
        return Ok(None);
    }
    let (compressed, outcome) = state
        .compressed
        .get_or_compress(tag_digest, encoding, move || {
            encoding.compress(body.map(|chunk| chunk.unwrap_or_else(|e| match e {})), size)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("compressing a whole collection: {e}")))?;
    let label = match outcome {
        compressed::Outcome::Hit => "hit",
        compressed::Outcome::Compressed => "miss",
    };
    state
        .metrics
        .compressed_cache
        .with_label_values(&[encoding.as_str(), label])
        .inc();
    state
        .metrics
        .compressed_cache_bytes
        .set(i64::try_from(state.compressed.bytes()).unwrap_or(i64::MAX));
    let mut response_headers = response_headers.clone();
    response_headers.insert(header::CONTENT_ENCODING, encoding.header_value());
    response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(Some(
        (response_headers, Body::from(compressed)).into_response(),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Objects,
    Manifest,
    Versions,
}

/// Writes a listing's items, comma-separated, each in its endpoint's form.
#[derive(Clone)]
struct Items {
    snapshot: Arc<Snapshot>,
    kind: Kind,
    first: bool,
}

#[derive(Serialize)]
struct ManifestRecord<'a> {
    id: &'a str,
    date_added: String,
    version: &'a str,
    media_type: &'a str,
}

impl Items {
    /// Appends one version; `json` is its object JSON (only objects listings use it).
    fn write(&mut self, buf: &mut Vec<u8>, version: u32, json: &[u8]) {
        let v = &self.snapshot.versions[version as usize];
        if !self.first {
            buf.push(b',');
        }
        self.first = false;
        match self.kind {
            Kind::Objects => buf.extend_from_slice(json),
            Kind::Versions => {
                // Version texts are canonical timestamps, but escape anyway: it is cheap.
                let _ = serde_json::to_writer(&mut *buf, &*v.version_text);
            }
            Kind::Manifest => {
                let record = ManifestRecord {
                    id: &self.snapshot.objects[v.object as usize].id,
                    date_added: format_micros(v.date_added),
                    version: &v.version_text,
                    media_type: match v.spec {
                        schemas::SpecVersion::V2_0 => STIX_20,
                        schemas::SpecVersion::V2_1 => STIX_21,
                    },
                };
                // Writing a struct of strings into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *buf, &record);
            }
        }
    }
}

/// Streams a page held in memory in chunks of about [`CHUNK`] bytes: the whole Enterprise
/// collection (~45 MB) goes out without ever being assembled in memory. Holds the snapshot
/// `Arc`, so a reload during the stream doesn't change what this response sends.
#[derive(Clone)]
struct PageBody {
    items: Items,
    selected: Arc<[u32]>,
    next: usize,
    end: usize,
    head: Option<Vec<u8>>,
    done: bool,
}

const CHUNK: usize = 64 * 1024;

impl Iterator for PageBody {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = self.head.take().unwrap_or_default();
        buf.reserve(CHUNK);
        while self.next < self.end && buf.len() < CHUNK {
            let version = self.selected[self.next];
            self.next += 1;
            let snapshot = self.items.snapshot.clone();
            self.items
                .write(&mut buf, version, &snapshot.versions[version as usize].json);
        }
        if self.next >= self.end {
            buf.extend_from_slice(b"]}");
            self.done = true;
        }
        Some(Ok(Bytes::from(buf)))
    }
}

/// Versions fetched at once while streaming a lean collection without a limit: a response
/// holds at most two such chunks (one being sent, the next being fetched), whatever its size.
const LEAN_CHUNK: usize = 256;

/// The objects of a lean collection's page, fetched from the store.
struct LeanPage {
    store: Arc<dyn Store>,
    generation: Generation,
    snapshot: Arc<Snapshot>,
    selected: Arc<[u32]>,
}

impl LeanPage {
    /// The object JSON of `selected[range]`, in order.
    fn fetch(
        &self,
        range: Range<usize>,
    ) -> impl Future<Output = Result<Vec<Bytes>, crate::store::StoreError>> + Send + use<> {
        let (store, generation) = (self.store.clone(), self.generation.clone());
        let (snapshot, selected) = (self.snapshot.clone(), self.selected.clone());
        async move {
            let keys: Vec<(&str, i64)> = selected[range].iter().map(|&v| snapshot.key(v)).collect();
            store
                .fetch_objects(&generation, &snapshot.meta.id, &keys)
                .await
        }
    }

    /// The body of a non-empty page. With a limit the page is fetched whole before answering,
    /// so a store failure is a 500 with a TAXII body; without one (a whole collection) it is
    /// streamed in [`LEAN_CHUNK`]s, the first fetched before answering, and a later failure
    /// aborts the stream (logged and counted: the status line is already sent).
    async fn body(
        self,
        state: &AppState,
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
        let mut tally = FetchTally::new(&state.metrics, &collection);
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
        let metrics = state.metrics.clone();
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
