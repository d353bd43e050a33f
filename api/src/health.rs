//! Operational endpoints: liveness, readiness, MITRE's ping, Prometheus metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// `GET /health/ping`: 204, as attack-taxii.mitre.org answers.
pub async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `GET /healthz`: the process serves HTTP.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: collections loaded and the store answered recently.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let catalog = state.catalog();
    let health = state.health();
    // A replica that lost the store keeps serving its last data, but is not "ready": a load
    // balancer should prefer replicas that still see changes.
    let stale_after = (state.server.poll_interval * 10).max(Duration::from_secs(5));
    let store_ok = health.last_ok.is_some_and(|t| t.elapsed() <= stale_after);
    let ready = catalog.loaded && store_ok;
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "collections_loaded": catalog.loaded,
        "collections": catalog.collections.len(),
        "store_reachable": store_ok,
        "last_error": health.last_error,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
