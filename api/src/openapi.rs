//! The OpenAPI 3 document at `/openapi.json`, generated from the same route table as the router.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use crate::media::TAXII_CONTENT_TYPE;
use crate::route_table::{Endpoint, route_table};
use crate::state::AppState;

const FILTERS: &[(&str, &str)] = &[
    (
        "added_after",
        "Only versions added strictly after this RFC 3339 timestamp",
    ),
    (
        "limit",
        "Maximum number of items in the page (positive integer, capped by the server)",
    ),
    ("next", "Opaque cursor from a previous page's `next`"),
    ("match[id]", "Comma-separated object ids"),
    ("match[type]", "Comma-separated STIX types"),
    (
        "match[version]",
        "`last` (default), `first`, `all`, or timestamps; comma-separated",
    ),
    (
        "match[spec_version]",
        "`2.0`, `2.1`; default the newest per object",
    ),
];

fn summary(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Discovery => "Server discovery",
        Endpoint::ApiRoot => "API root information",
        Endpoint::Collections => "Collections of the root",
        Endpoint::Collection => "One collection",
        Endpoint::Objects => "Objects of a collection (envelope)",
        Endpoint::Object => "One object's selected versions (envelope)",
        Endpoint::Versions => "Versions of one object",
        Endpoint::Manifest => "Manifest of a collection",
        Endpoint::Status => "Status of a write (none exist: read-only server)",
        Endpoint::HealthPing => "Liveness as attack-taxii.mitre.org answers it (204)",
        Endpoint::Healthz => "Liveness",
        Endpoint::Readyz => "Readiness: store reachable and collections loaded",
        Endpoint::Metrics => "Prometheus metrics",
        Endpoint::OpenApi => "This document",
    }
}

/// The document for a root prefix. Paths use the canonical trailing-slash form; each is also
/// served without it.
pub fn document(prefix: &str) -> Value {
    let mut paths = Map::new();
    for spec in route_table(prefix) {
        let mut parameters: Vec<Value> = spec
            .template
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if matches!(
            spec.endpoint,
            Endpoint::Objects | Endpoint::Object | Endpoint::Versions | Endpoint::Manifest
        ) {
            parameters.extend(FILTERS.iter().map(|(name, description)| {
                json!({"name": name, "in": "query", "required": false, "description": description,
                       "schema": {"type": if *name == "limit" { "integer" } else { "string" }}})
            }));
        }
        let content = if spec.endpoint.is_taxii() {
            TAXII_CONTENT_TYPE
        } else {
            "application/json"
        };
        let mut item = Map::new();
        item.insert(
            "get".into(),
            json!({
                "summary": summary(spec.endpoint),
                "parameters": parameters,
                "responses": {
                    "200": {"description": "OK", "content": {content: {}}},
                    "304": {"description": "Not modified (If-None-Match)"},
                    "400": {"description": "Invalid parameter (TAXII error naming it)"},
                    "401": {"description": "Credentials missing or wrong (authentication enabled)"},
                    "403": {"description": "No read access to the collection"},
                    "404": {"description": "Unknown root, collection or object"},
                    "406": {"description": "Accept admits no TAXII 2.1 media type"},
                },
            }),
        );
        if matches!(spec.endpoint, Endpoint::Objects | Endpoint::Object) {
            let method = if spec.endpoint == Endpoint::Objects {
                "post"
            } else {
                "delete"
            };
            item.insert(
                method.into(),
                json!({"summary": "Refused: every collection is read-only",
                       "responses": {"403": {"description": "can_write is false"}}}),
            );
        }
        paths.insert(spec.template, Value::Object(item));
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Taxiway TAXII 2.1 API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
    })
}

/// `GET /openapi.json`.
pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.prefix))
}
