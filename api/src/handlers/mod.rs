//! Request handlers, and what they share: path extraction, root resolution, TAXII responses.

pub(crate) mod api_docs;
pub(crate) mod changes;
pub(crate) mod collections;
pub(crate) mod discovery;
pub(crate) mod home;
pub(crate) mod listing;
pub(crate) mod stream;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::etag::{etag, fingerprint, not_modified, not_modified_response};
use crate::media::TAXII_CONTENT_TYPE;
use crate::rights::Rights;
use crate::snapshot::{Catalog, Snapshot, ViewSel};
use crate::state::AppState;

/// Every path parameter any route has; routes fill the ones they declare.
#[derive(Debug, Default, Deserialize)]
pub struct PathParams {
    pub root: Option<String>,
    pub id: Option<String>,
    pub object_id: Option<String>,
    pub status_id: Option<String>,
}

/// `Path<PathParams>` whose rejection is a TAXII error body, not axum's plain text.
struct TaxiiPath(PathParams);

impl<S: Send + Sync> FromRequestParts<S> for TaxiiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<PathParams>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| TaxiiPath(p))
            .map_err(|e| ApiError::bad_parameter("path", e.body_text()))
    }
}

/// The three kinds of API root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// `/api/v21`: each collection as of its latest complete release.
    Default,
    /// `/api/v21/attack-<label>`: exactly that release.
    Pinned(String),
    /// `/api/v21/history`: every version ever published.
    History,
}

impl Root {
    /// The root's path, with a trailing slash, as discovery lists it.
    pub fn path(&self, state: &AppState) -> String {
        match self {
            Root::Default => format!("{}/", state.prefix),
            Root::Pinned(label) => {
                format!("{}/{}{label}/", state.prefix, state.server.pinned_prefix)
            }
            Root::History => format!("{}/{}/", state.prefix, state.server.history_root),
        }
    }

    /// Which view of a collection this root serves; `None` if the collection is not in it.
    pub fn view_of(&self, snapshot: &Snapshot) -> Option<ViewSel> {
        match self {
            Root::Default => snapshot.default_sel(),
            Root::Pinned(label) => snapshot.release_sel(label),
            Root::History => Some(ViewSel::All),
        }
    }

    /// The root's name for hashing (ETags, cursors).
    pub fn key(&self) -> String {
        match self {
            Root::Default => "default".to_owned(),
            Root::Pinned(label) => format!("pinned:{label}"),
            Root::History => "history".to_owned(),
        }
    }
}

/// Resolves the `{root}` path segment (absent for the default root); 404 if no such root.
fn resolve_root(
    state: &AppState,
    catalog: &Catalog,
    segment: Option<&str>,
) -> Result<Root, ApiError> {
    let Some(segment) = segment else {
        return Ok(Root::Default);
    };
    if segment == state.server.history_root {
        return Ok(Root::History);
    }
    if let Some(label) = segment.strip_prefix(state.server.pinned_prefix.as_str())
        && catalog
            .collections
            .values()
            .any(|s| s.release(label).is_some())
    {
        return Ok(Root::Pinned(label.to_owned()));
    }
    Err(ApiError::NotFound(format!("no API root {segment:?}")))
}

/// The collection `id` as served by `root`, or 404.
pub fn collection_in_root(
    catalog: &Catalog,
    root: &Root,
    id: &str,
) -> Result<(Arc<Snapshot>, ViewSel), ApiError> {
    catalog
        .collections
        .get(id)
        .and_then(|s| root.view_of(s).map(|sel| (s.clone(), sel)))
        .ok_or_else(|| ApiError::NotFound(format!("no collection {id:?} in this API root")))
}

/// The API root the path names, in the catalog as of this request. Rejected with 503 (nothing
/// loaded yet) or 404 (no such root).
pub struct ServedRoot {
    pub catalog: Arc<Catalog>,
    pub root: Root,
    pub path: PathParams,
}

impl FromRequestParts<AppState> for ServedRoot {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let TaxiiPath(path) = TaxiiPath::from_request_parts(parts, state).await?;
        let catalog = loaded_catalog(state)?;
        let root = resolve_root(state, &catalog, path.root.as_deref())?;
        Ok(ServedRoot {
            catalog,
            root,
            path,
        })
    }
}

/// The collection a listing reads: the path's root and collection, served by that root and
/// readable by the caller. Rejected, in this order, with 503 (nothing loaded yet), 404 (no such
/// root, or no such collection in it) or 403 (no read access).
pub struct ReadableCollection {
    pub catalog: Arc<Catalog>,
    pub root: Root,
    pub id: String,
    pub snapshot: Arc<Snapshot>,
    pub sel: ViewSel,
    /// The object the path names, if any.
    pub object_id: Option<String>,
}

impl FromRequestParts<AppState> for ReadableCollection {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ServedRoot {
            catalog,
            root,
            path,
        } = ServedRoot::from_request_parts(parts, state).await?;
        let id = path.id.unwrap_or_default();
        let (snapshot, sel) = collection_in_root(&catalog, &root, &id)?;
        let rights = parts
            .extensions
            .get::<Rights>()
            .ok_or_else(|| ApiError::Internal("a TAXII route without authentication".to_owned()))?;
        if !rights.can_read(&id) {
            return Err(ApiError::Forbidden(format!(
                "no read access to collection {id:?}"
            )));
        }
        Ok(ReadableCollection {
            catalog,
            root,
            id,
            snapshot,
            sel,
            object_id: path.object_id,
        })
    }
}

/// Fails with 503 until the first load from the store succeeded.
pub(crate) fn loaded_catalog(state: &AppState) -> Result<Arc<Catalog>, ApiError> {
    let catalog = state.catalog();
    if catalog.loaded {
        Ok(catalog)
    } else {
        Err(ApiError::Unavailable(
            "collections are still loading".to_owned(),
        ))
    }
}

/// A small TAXII JSON response with an ETag over its bytes, or 304 if the client has it.
pub fn taxii_json(
    state: &AppState,
    headers: &HeaderMap,
    value: &serde_json::Value,
) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    let tag = etag(fingerprint(&[&String::from_utf8_lossy(&body)]));
    if not_modified(headers, &tag) {
        state.metrics.not_modified.inc();
        return Ok(not_modified_response(tag));
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(TAXII_CONTENT_TYPE),
            ),
            (header::ETAG, tag),
        ],
        body,
    )
        .into_response())
}

/// Any write: this server has no writable collection (`can_write` is false everywhere).
pub async fn write_refused() -> ApiError {
    ApiError::Forbidden("this collection is read-only (can_write is false)".to_owned())
}

/// A method no endpoint at this path supports.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// No route matched.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}
