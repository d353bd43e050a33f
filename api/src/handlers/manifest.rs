//! `manifest/`: one record per selected version, filtered exactly like `objects/`.

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::TaxiiPath;
use super::objects::listing;
use crate::AppState;
use crate::auth::Rights;
use crate::error::ApiError;
use crate::filters::Endpoint;

/// `GET …/manifest/`.
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
        Endpoint::Manifest,
    )
    .await
}
