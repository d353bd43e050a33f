//! `collections/` and `collections/{id}/`: which collections a root holds.

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::{ServedRoot, collection_in_root, taxii_json};
use crate::error::ApiError;
use crate::rights::Rights;
use crate::snapshot::{Snapshot, ViewSel};
use crate::state::AppState;

/// A collection resource as `sel` (the root's view of it) serves it: `media_types` names the
/// spec versions of the objects in that view, not what ingest announced.
fn resource(snapshot: &Snapshot, sel: ViewSel, rights: &Rights) -> Value {
    let meta = &snapshot.meta;
    let mut value = json!({
        "id": meta.id,
        "title": meta.title,
        "can_read": rights.can_read(&meta.id),
        "can_write": false,
        "media_types": snapshot.media_types(sel),
    });
    if let Some(d) = &meta.description {
        value["description"] = json!(d);
    }
    if let Some(a) = meta.alias.as_deref().filter(|a| !a.is_empty()) {
        value["alias"] = json!(a);
    }
    value
}

/// `GET /{root}/collections/`; in a pinned root, only collections that have that release.
pub async fn list(
    State(state): State<AppState>,
    ServedRoot { catalog, root, .. }: ServedRoot,
    Extension(rights): Extension<Rights>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let collections: Vec<Value> = catalog
        .collections
        .values()
        .filter_map(|s| root.view_of(s).map(|sel| resource(s, sel, &rights)))
        .collect();
    taxii_json(&state, &headers, &json!({ "collections": collections }))
}

/// `GET /{root}/collections/{id}/`.
pub async fn one(
    State(state): State<AppState>,
    ServedRoot {
        catalog,
        root,
        path,
    }: ServedRoot,
    Extension(rights): Extension<Rights>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path.id.unwrap_or_default();
    let (snapshot, sel) = collection_in_root(&catalog, &root, &id)?;
    taxii_json(&state, &headers, &resource(&snapshot, sel, &rights))
}
