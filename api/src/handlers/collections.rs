//! `collections/` and `collections/{id}/`: which collections a root holds.

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::{ServedRoot, collection_in_root, taxii_json};
use crate::auth::Rights;
use crate::error::ApiError;
use crate::media::STIX_21;
use crate::snapshot::Snapshot;
use crate::state::AppState;

fn resource(snapshot: &Snapshot, rights: &Rights) -> Value {
    let meta = &snapshot.meta;
    let mut value = json!({
        "id": meta.id,
        "title": meta.title,
        "can_read": rights.can_read(&meta.id),
        "can_write": false,
        "media_types": if meta.media_types.is_empty() { vec![STIX_21.to_owned()] } else { meta.media_types.clone() },
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
        .filter(|s| root.view_of(s).is_some())
        .map(|s| resource(s, &rights))
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
    let (snapshot, _) = collection_in_root(&catalog, &root, &id)?;
    taxii_json(&state, &headers, &resource(&snapshot, &rights))
}
