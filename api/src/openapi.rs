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
        Endpoint::Stream => {
            "Live stream of the versions added to the collection on this root (Server-Sent \
             Events; a Taxiway extension): event id = date_added, data = the STIX object"
        }
        Endpoint::Status => "Status of a write (none exist: read-only server)",
        Endpoint::HealthPing => "Liveness as attack-taxii.mitre.org answers it (204)",
        Endpoint::Healthz => "Liveness",
        Endpoint::Readyz => "Readiness: store reachable and collections loaded",
        Endpoint::Metrics => "Prometheus metrics",
        Endpoint::OpenApi => "This document",
        Endpoint::Changes => {
            "What changed between two releases (Taxiway extension; history root only)"
        }
        Endpoint::Home => "Home page for browsers (HTML); other clients get a TAXII 404",
        Endpoint::ChangesPage => "What changed between two releases (HTML page)",
        Endpoint::ApiDocs => "This document rendered by Swagger UI (HTML)",
        Endpoint::ApiDocsAsset => "A file of the embedded Swagger UI",
    }
}

/// The schema (in `components/schemas`) of a TAXII endpoint's 200 body.
fn body_schema(endpoint: Endpoint) -> Option<&'static str> {
    Some(match endpoint {
        Endpoint::Discovery => "Discovery",
        Endpoint::ApiRoot => "ApiRoot",
        Endpoint::Collections => "Collections",
        Endpoint::Collection => "Collection",
        Endpoint::Objects | Endpoint::Object => "Envelope",
        Endpoint::Versions => "Versions",
        Endpoint::Manifest => "Manifest",
        Endpoint::Status => "Status",
        _ => return None,
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A response whose body is the TAXII error message.
fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {TAXII_CONTENT_TYPE: {"schema": schema_ref("Error")}}})
}

/// The error statuses a TAXII endpoint can answer, each with the TAXII error body.
fn taxii_errors(responses: &mut Map<String, Value>, endpoint: Endpoint) {
    let mut errors = vec![
        (
            "401",
            "Credentials missing or wrong (authentication enabled)",
        ),
        (
            "403",
            "No read access to the collection, or a write to a read-only one",
        ),
        ("404", "Unknown root, collection, object or status"),
        ("405", "Method not supported: the server is read-only"),
        ("406", "Accept admits no TAXII 2.1 media type"),
        (
            "500",
            "Server failure (generic body with an error_id to find the cause in the log)",
        ),
        ("503", "Nothing loaded from the store yet"),
    ];
    if matches!(
        endpoint,
        Endpoint::Objects
            | Endpoint::Object
            | Endpoint::Versions
            | Endpoint::Manifest
            | Endpoint::Stream
    ) {
        errors.push(("400", "Invalid parameter (TAXII error naming it)"));
    }
    if endpoint == Endpoint::Stream {
        // Streams are not held to the TAXII media types.
        errors.retain(|(status, _)| *status != "406");
    }
    for (status, description) in errors {
        responses.insert(status.into(), error_response(description));
    }
}

/// The responses of `GET` on `endpoint`.
fn get_responses(endpoint: Endpoint) -> Value {
    let mut responses = Map::new();
    match endpoint {
        Endpoint::HealthPing => {
            responses.insert("204".into(), json!({"description": "Alive (no body)"}));
        }
        Endpoint::Healthz => {
            responses.insert(
                "200".into(),
                json!({"description": "Alive",
                       "content": {"application/json": {"schema": schema_ref("Health")}}}),
            );
        }
        Endpoint::Readyz => {
            for (status, description) in [("200", "Ready"), ("503", "Not ready")] {
                responses.insert(
                    status.into(),
                    json!({"description": description,
                           "content": {"application/json": {"schema": schema_ref("Readiness")}}}),
                );
            }
        }
        Endpoint::Metrics => {
            responses.insert(
                "200".into(),
                json!({"description": "Prometheus text format",
                       "content": {"text/plain": {"schema": {"type": "string"}}}}),
            );
        }
        Endpoint::OpenApi => {
            responses.insert(
                "200".into(),
                json!({"description": "OpenAPI 3 document",
                       "content": {"application/json": {"schema": {"type": "object"}}}}),
            );
        }
        Endpoint::Stream => {
            responses.insert(
                "200".into(),
                json!({"description": "An endless event stream: `event: object`, `id:` the \
                                       version's date_added, `data:` the STIX object; comment \
                                       lines as heartbeats",
                       "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
            );
            taxii_errors(&mut responses, endpoint);
            responses.insert(
                "503".into(),
                error_response("Nothing loaded yet, or every stream slot taken (Retry-After)"),
            );
        }
        Endpoint::Home | Endpoint::ApiDocs | Endpoint::ChangesPage => {
            responses.insert(
                "200".into(),
                json!({"description": "HTML page",
                       "content": {"text/html": {"schema": {"type": "string"}}}}),
            );
            if endpoint == Endpoint::ChangesPage {
                responses.insert(
                    "400".into(),
                    error_response("No collection named, unknown parameter, or no such release"),
                );
                responses.insert(
                    "404".into(),
                    error_response("No such collection (or not readable without credentials)"),
                );
            }
            if endpoint == Endpoint::Home {
                responses.insert(
                    "404".into(),
                    error_response(
                        "The client does not accept text/html: TAXII discovery is at /taxii2/",
                    ),
                );
            }
        }
        Endpoint::Changes => {
            responses.insert(
                "200".into(),
                json!({"description": "Objects added, removed, with a new version, re-issued \
                                       without one, newly deprecated and newly revoked, by STIX type",
                       "content": {"application/json": {"schema": {"type": "object"}}}}),
            );
            taxii_errors(&mut responses, endpoint);
            responses.remove("406");
            responses.insert(
                "400".into(),
                error_response("Unknown parameter, or no such release"),
            );
        }
        Endpoint::ApiDocsAsset => {
            responses.insert(
                "200".into(),
                json!({"description": "The file (JavaScript or CSS)",
                       "content": {"text/javascript": {"schema": {"type": "string"}},
                                   "text/css": {"schema": {"type": "string"}}}}),
            );
            responses.insert("404".into(), error_response("No such file"));
        }
        taxii => {
            if let Some(name) = body_schema(taxii) {
                responses.insert(
                    "200".into(),
                    json!({"description": "OK",
                           "content": {TAXII_CONTENT_TYPE: {"schema": schema_ref(name)}}}),
                );
            }
            responses.insert(
                "304".into(),
                json!({"description": "Not modified (If-None-Match)"}),
            );
            taxii_errors(&mut responses, taxii);
        }
    }
    Value::Object(responses)
}

/// The schemas of TAXII 2.1 resources as this server writes them (§4, §5), and its error body
/// (§3.6.1; `http_status` is a string, as MITRE's server writes it).
fn schemas() -> Value {
    let string = json!({"type": "string"});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let timestamp = json!({"type": "string", "description": "RFC 3339, UTC, microseconds"});
    json!({
        "Error": {
            "type": "object",
            "required": ["title", "http_status"],
            "properties": {
                "title": string, "description": string, "error_id": string,
                "error_code": string, "http_status": string, "external_details": string,
                "details": {"type": "object"},
            },
        },
        "Discovery": {
            "type": "object",
            "required": ["title", "api_roots"],
            "properties": {
                "title": string, "description": string, "contact": string,
                "default": string, "api_roots": strings,
            },
        },
        "ApiRoot": {
            "type": "object",
            "required": ["title", "versions", "max_content_length"],
            "properties": {
                "title": string, "description": string, "versions": strings,
                "max_content_length": {"type": "integer", "minimum": 1},
            },
        },
        "Collection": {
            "type": "object",
            "required": ["id", "title", "can_read", "can_write"],
            "properties": {
                "id": string, "title": string, "description": string, "alias": string,
                "can_read": {"type": "boolean"}, "can_write": {"type": "boolean"},
                "media_types": strings,
            },
        },
        "Collections": {
            "type": "object",
            "properties": {"collections": {"type": "array", "items": schema_ref("Collection")}},
        },
        "Envelope": {
            "type": "object",
            "properties": {
                "more": {"type": "boolean"}, "next": string,
                "objects": {"type": "array", "items": {"type": "object",
                            "description": "A STIX object, as published",
                            "required": ["type", "id"]}},
            },
        },
        "ManifestRecord": {
            "type": "object",
            "required": ["id", "date_added", "version"],
            "properties": {
                "id": string, "date_added": timestamp, "version": timestamp, "media_type": string,
            },
        },
        "Manifest": {
            "type": "object",
            "properties": {
                "more": {"type": "boolean"}, "next": string,
                "objects": {"type": "array", "items": schema_ref("ManifestRecord")},
            },
        },
        "Versions": {
            "type": "object",
            "properties": {
                "more": {"type": "boolean"}, "next": string,
                "versions": {"type": "array", "items": timestamp},
            },
        },
        "Status": {
            "type": "object",
            "required": ["id", "status", "total_count", "success_count", "failure_count",
                         "pending_count"],
            "properties": {
                "id": string, "status": string, "request_timestamp": timestamp,
                "total_count": {"type": "integer"}, "success_count": {"type": "integer"},
                "failure_count": {"type": "integer"}, "pending_count": {"type": "integer"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": string},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "collections_loaded", "collections", "store_reachable"],
            "properties": {
                "status": string, "collections_loaded": {"type": "boolean"},
                "collections": {"type": "integer"}, "store_reachable": {"type": "boolean"},
                "last_error": {"type": "string", "nullable": true},
            },
        },
    })
}

/// The document for a root prefix. Paths use the canonical trailing-slash form; each is also
/// served without it. Path parameters are declared on the path item, so every operation on it
/// (GET, and the refused POST or DELETE) has them.
pub fn document(prefix: &str) -> Value {
    let mut paths = Map::new();
    for spec in route_table(prefix) {
        let path_parameters: Vec<Value> = spec
            .template
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut query: Vec<Value> = Vec::new();
        if matches!(
            spec.endpoint,
            Endpoint::Objects | Endpoint::Object | Endpoint::Versions | Endpoint::Manifest
        ) {
            query.extend(FILTERS.iter().map(|(name, description)| {
                json!({"name": name, "in": "query", "required": false, "description": description,
                       "schema": {"type": if *name == "limit" { "integer" } else { "string" }}})
            }));
        }
        if spec.endpoint == Endpoint::Stream {
            query.push(
                json!({"name": "added_after", "in": "query", "required": false,
                "description": "Send the versions added strictly after this timestamp first",
                "schema": {"type": "string"}}),
            );
            query.push(
                json!({"name": "Last-Event-ID", "in": "header", "required": false,
                "description": "Resume after this event id (a date_added); wins over added_after",
                "schema": {"type": "string"}}),
            );
        }
        if spec.endpoint == Endpoint::Changes {
            query.extend(
                [
                    (
                        "from",
                        "Release label to compare from; default: the release before `to`",
                    ),
                    (
                        "to",
                        "Release label to compare to; default: the latest release",
                    ),
                ]
                .iter()
                .map(|(name, description)| {
                    json!({"name": name, "in": "query", "required": false,
                       "description": description, "schema": {"type": "string"}})
                }),
            );
        }
        let mut item = Map::new();
        if !path_parameters.is_empty() {
            item.insert("parameters".into(), Value::Array(path_parameters));
        }
        let mut get = json!({
            "summary": summary(spec.endpoint),
            "responses": get_responses(spec.endpoint),
        });
        if !query.is_empty() {
            get["parameters"] = Value::Array(query);
        }
        item.insert("get".into(), get);
        if matches!(spec.endpoint, Endpoint::Objects | Endpoint::Object) {
            let method = if spec.endpoint == Endpoint::Objects {
                "post"
            } else {
                "delete"
            };
            let mut responses = Map::new();
            taxii_errors(&mut responses, spec.endpoint);
            responses.insert(
                "403".into(),
                error_response("Refused: can_write is false on every collection"),
            );
            item.insert(
                method.into(),
                json!({"summary": "Refused: every collection is read-only",
                       "responses": responses}),
            );
        }
        paths.insert(spec.template, Value::Object(item));
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Taxiway TAXII 2.1 API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas()},
    })
}

/// `GET /openapi.json`.
pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.prefix))
}
