//! Discovery (`/taxii2/`), API root information and status resources.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::{Root, ServedRoot, loaded_catalog, taxii_json};
use crate::error::ApiError;
use crate::media::TAXII_CONTENT_TYPE;
use crate::state::AppState;

/// `GET /taxii2/`: every root, default first, pinned roots newest release first, history last.
pub async fn discovery(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let catalog = loaded_catalog(&state)?;
    let mut roots = vec![Root::Default.path(&state)];
    roots.extend(
        catalog
            .labels()
            .into_iter()
            .map(|l| Root::Pinned(l).path(&state)),
    );
    roots.push(Root::History.path(&state));
    let s = &state.server;
    let mut body = json!({
        "title": s.title,
        "description": s.description,
        "default": Root::Default.path(&state),
        "api_roots": roots,
    });
    // Absent unless the operator set one: a mirror must not hand out MITRE's address.
    if let Some(contact) = &s.contact {
        body["contact"] = json!(contact);
    }
    taxii_json(&state, &headers, &body)
}

/// `GET /{root}/`: the API root resource.
pub async fn api_root(
    State(state): State<AppState>,
    ServedRoot { root, .. }: ServedRoot,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = &state.server;
    // As MITRE's server describes its pinned roots: the default texts plus a suffix.
    let (title, description) = match &root {
        Root::Default => (s.title.clone(), s.description.clone()),
        Root::Pinned(label) => (
            format!(
                "{}{}",
                s.title,
                s.pinned_title_suffix.replace("{label}", label)
            ),
            format!(
                "{}{}",
                s.description,
                s.pinned_description_suffix.replace("{label}", label)
            ),
        ),
        Root::History => (
            format!("{}{}", s.title, s.history_title_suffix),
            format!("{}{}", s.description, s.history_description_suffix),
        ),
    };
    let body = json!({
        "title": title,
        "description": description,
        "versions": [TAXII_CONTENT_TYPE],
        "max_content_length": s.max_content_length,
    });
    taxii_json(&state, &headers, &body)
}

/// `GET /{root}/status/{status_id}/`: nothing is ever posted here, so no status exists.
pub async fn status(ServedRoot { path, .. }: ServedRoot) -> Result<Response, ApiError> {
    Err(ApiError::NotFound(format!(
        "no status {:?}: this server accepts no writes",
        path.status_id.unwrap_or_default()
    )))
}
