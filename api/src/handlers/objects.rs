//! `objects/`, `objects/{object_id}/` and `…/versions/`, and the listing machinery the manifest shares.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::{
    TaxiiPath, collection_in_root, loaded_catalog, not_modified_response, resolve_root, root_key,
};
use crate::AppState;
use crate::auth::Rights;
use crate::cache::{etag, not_modified};
use crate::cursor::Cursor;
use crate::error::ApiError;
use crate::filters::{Endpoint, fingerprint, page, parse_query, select};
use crate::media::{STIX_20, STIX_21, TAXII_CONTENT_TYPE};
use crate::snapshot::{Snapshot, format_micros};

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
}

/// The one engine behind objects, object, versions and manifest, for every kind of root.
pub(crate) fn listing(
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
    let tag = etag(fingerprint(&[
        &query_hash.to_string(),
        &snapshot.revision.to_string(),
        &generation.to_string(),
        &format!("{:?}", query.limit),
        query.next.as_deref().unwrap_or(""),
    ]));
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
    let body = PageBody {
        snapshot,
        selected,
        next: p.start,
        end: p.end,
        kind,
        head: Some(head.into_bytes()),
        first: true,
        done: false,
    };
    Ok((
        response_headers,
        Body::from_stream(futures::stream::iter(body)),
    )
        .into_response())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Objects,
    Manifest,
    Versions,
}

/// Streams a page in chunks of about [`CHUNK`] bytes: the whole Enterprise collection
/// (~45 MB) goes out without ever being assembled in memory. Holds the snapshot `Arc`, so a
/// reload during the stream doesn't change what this response sends.
struct PageBody {
    snapshot: Arc<Snapshot>,
    selected: Arc<[u32]>,
    next: usize,
    end: usize,
    kind: Kind,
    head: Option<Vec<u8>>,
    first: bool,
    done: bool,
}

const CHUNK: usize = 64 * 1024;

#[derive(Serialize)]
struct ManifestRecord<'a> {
    id: &'a str,
    date_added: String,
    version: &'a str,
    media_type: &'a str,
}

impl Iterator for PageBody {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = self.head.take().unwrap_or_default();
        buf.reserve(CHUNK);
        while self.next < self.end && buf.len() < CHUNK {
            let v = &self.snapshot.versions[self.selected[self.next] as usize];
            self.next += 1;
            if !self.first {
                buf.push(b',');
            }
            self.first = false;
            match self.kind {
                Kind::Objects => buf.extend_from_slice(&v.json),
                Kind::Versions => {
                    // Version texts are canonical timestamps, but escape anyway: it is cheap.
                    let _ = serde_json::to_writer(&mut buf, &*v.version_text);
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
                    let _ = serde_json::to_writer(&mut buf, &record);
                }
            }
        }
        if self.next >= self.end {
            buf.extend_from_slice(b"]}");
            self.done = true;
        }
        Some(Ok(Bytes::from(buf)))
    }
}
