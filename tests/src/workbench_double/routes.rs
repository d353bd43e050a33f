//! The route table of the double and its handlers: query validation first (as Workbench's OpenAPI validator
//! runs before any route), then authentication and role check, then faults, then the store.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use super::auth::{self, PendingChallenge};
use super::query::{self, Kind, Query, Spec};
use super::reply::{Rejection, json, json_text, text};
use super::store::{ExportRecord, StoredObject};
use super::{Fault, RequestRecord, Shared, timestamp};

const VERSIONS: Kind = Kind::OneOf(&["all", "latest"]);

// Only the parameters ingest sends; any other is rejected as undocumented, as Workbench's
// OpenAPI validator rejects any it does not document.
const COLLECTIONS: Spec = &[("versions", VERSIONS)];
const COLLECTION_BUNDLES: Spec = &[
    ("previewOnly", Kind::Bool),
    ("collectionId", Kind::Str),
    ("collectionModified", Kind::Str),
];
const ATTACK_OBJECTS: Spec = &[
    ("versions", VERSIONS),
    ("includeRevoked", Kind::Bool),
    ("includeDeprecated", Kind::Bool),
];
const RECENT_ACTIVITY: Spec = &[
    ("limit", Kind::Number),
    ("includeRevoked", Kind::Bool),
    ("includeDeprecated", Kind::Bool),
];
const AUTHN_SERVICE: Spec = &[("serviceName", Kind::Str)];

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/collections", get(list_collections))
        .route("/api/collection-bundles", get(collection_bundle))
        .route("/api/attack-objects", get(attack_objects))
        .route("/api/recent-activity", get(recent_activity))
        .route("/api/authn/service/apikey-challenge", get(apikey_challenge))
        .route("/api/authn/service/apikey-token", get(apikey_token))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
        .method_not_allowed_fallback(|method: Method| async move {
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} method not allowed"),
            )
        })
        .with_state(shared)
}

/// Runs outside the router: logs every request, applies whole-server faults, and accepts a trailing slash
/// before `?` on every route (Express routing is not strict).
pub(crate) async fn outer(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let authorization_scheme = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(' ').next())
        .map(str::to_owned);
    let (delay, unavailable) = {
        let state = shared.lock();
        let delay = state.faults.iter().find_map(|f| match f {
            Fault::SlowResponses(d) => Some(*d),
            _ => None,
        });
        let unavailable = state.faults.contains(&Fault::ServiceUnavailable);
        (delay, unavailable)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let response = if unavailable {
        text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    } else {
        if path.len() > 1 && path.ends_with('/') {
            let trimmed = path.trim_end_matches('/');
            let rebuilt = match &query {
                Some(q) => format!("{trimmed}?{q}"),
                None => trimmed.to_owned(),
            };
            if let Ok(uri) = rebuilt.parse::<Uri>() {
                *request.uri_mut() = uri;
            }
        }
        next.run(request).await
    };
    shared.lock().requests.push(RequestRecord {
        method,
        path,
        query,
        status: response.status().as_u16(),
        authorization_scheme,
    });
    response
}

/// Query validation, then authentication.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    spec: Spec,
) -> Result<Query, Rejection> {
    let query =
        query::parse(raw_query, spec).map_err(|m| Rejection::Text(StatusCode::BAD_REQUEST, m))?;
    auth::authorize(shared, headers)?;
    Ok(query)
}

fn limit_of(query: &Query) -> usize {
    query
        .number("limit")
        .filter(|n| *n > 0.0)
        .map(|n| n as usize)
        .unwrap_or(0)
}

fn serialize<T: Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => json_text(StatusCode::OK, body),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "Server error."),
    }
}

async fn list_collections(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(&shared, &headers, raw.as_deref(), COLLECTIONS) {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    let latest_only = query.string("versions") != Some("all");
    let mut state = shared.lock();
    let response = if state.faults.contains(&Fault::EmptyCollectionList) {
        json_text(StatusCode::OK, "[]".to_owned())
    } else {
        let store = &state.store;
        let docs: Vec<_> = store
            .list_collections(latest_only)
            .into_iter()
            .map(|c| store.render_collection(c))
            .collect();
        serialize(&docs)
    };
    let removal = state
        .faults
        .iter()
        .position(|f| matches!(f, Fault::RemoveAfterNextList { .. }));
    if let Some(index) = removal
        && let Fault::RemoveAfterNextList {
            collection_id,
            modified,
        } = state.faults.remove(index)
    {
        state.store.remove_collection(&collection_id, &modified);
    }
    response
}

async fn collection_bundle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(&shared, &headers, raw.as_deref(), COLLECTION_BUNDLES) {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    const EXPORT_FAILED: &str = "Unable to export collection.";
    let collection_id = query.string("collectionId").filter(|s| !s.is_empty());
    let collection_modified = query.string("collectionModified").filter(|s| !s.is_empty());
    let Some(collection_id) = collection_id else {
        if collection_modified.is_some() {
            return text(
                StatusCode::BAD_REQUEST,
                "collectionId is required when providing collectionModified",
            );
        }
        return text(StatusCode::INTERNAL_SERVER_ERROR, EXPORT_FAILED);
    };
    let preview_only = query.flag_or_false("previewOnly");
    let mut state = shared.lock();
    let fails = state.faults.iter().any(
        |f| matches!(f, Fault::BundleServerError { collection_id: id } if id == collection_id),
    );
    if fails {
        return text(StatusCode::INTERNAL_SERVER_ERROR, EXPORT_FAILED);
    }
    let truncate = state.faults.contains(&Fault::TruncatedBundle);
    let modified = match collection_modified {
        Some(given) => match timestamp::normalize(given) {
            Some(m) => Some(m),
            None => return text(StatusCode::INTERNAL_SERVER_ERROR, EXPORT_FAILED),
        },
        None => None,
    };
    let found = match &modified {
        Some(m) => state.store.collection(collection_id, m),
        None => state.store.latest_collection(collection_id),
    };
    let Some(collection) = found else {
        return text(StatusCode::NOT_FOUND, "Collection not found");
    };
    let version = collection.key.modified.clone();
    let bundle_id = format!("bundle--{}", uuid::Uuid::new_v4());
    let body = state.store.bundle_json(collection, &bundle_id);
    if !preview_only && let Some(collection) = state.store.collection_mut(collection_id, &version) {
        collection.workspace.exported.push(ExportRecord {
            export_timestamp: timestamp::now(),
            bundle_id,
        });
    }
    drop(state);
    if truncate {
        truncated(body)
    } else {
        json_text(StatusCode::OK, body)
    }
}

/// A 200 whose body stops halfway: the declared length is the full one and the connection is then aborted.
fn truncated(body: String) -> Response {
    let full_length = body.len();
    let half = Bytes::from(body).slice(0..full_length / 2);
    let chunks: Vec<Result<Bytes, io::Error>> = vec![
        Ok(half),
        Err(io::Error::other("body truncated by the Workbench double")),
    ];
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(full_length));
    response
}

fn attack_object_filter(query: &Query) -> impl Fn(&&StoredObject) -> bool {
    let include_revoked = query.flag_or_false("includeRevoked");
    let include_deprecated = query.flag_or_false("includeDeprecated");
    move |object: &&StoredObject| {
        (include_revoked || !object.head.revoked())
            && (include_deprecated || !object.head.deprecated())
    }
}

async fn attack_objects(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(&shared, &headers, raw.as_deref(), ATTACK_OBJECTS) {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    let state = shared.lock();
    let store = &state.store;
    let keep = attack_object_filter(&query);
    let candidates: Vec<&StoredObject> = if query.string("versions") == Some("all") {
        store.all_object_versions().filter(&keep).collect()
    } else {
        store.latest_objects().filter(&keep).collect()
    };
    // Workbench lists relationships after every other object.
    let (relationships, objects): (Vec<&StoredObject>, Vec<&StoredObject>) = candidates
        .into_iter()
        .partition(|o| o.head.kind == "relationship");
    let docs: Vec<_> = objects
        .into_iter()
        .chain(relationships)
        .map(|o| store.object_doc(o))
        .collect();
    serialize(&docs)
}

async fn recent_activity(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(&shared, &headers, raw.as_deref(), RECENT_ACTIVITY) {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    let state = shared.lock();
    let store = &state.store;
    let keep = attack_object_filter(&query);
    // Every version, not only the latest: Workbench's recent-activity repository sorts and limits
    // the stored documents without grouping them by id.
    let mut objects: Vec<&StoredObject> = store.all_object_versions().filter(&keep).collect();
    objects.sort_by(|a, b| b.modified.cmp(&a.modified));
    let limit = limit_of(&query);
    if limit > 0 {
        objects.truncate(limit);
    }
    let docs: Vec<_> = objects.into_iter().map(|o| store.object_doc(o)).collect();
    serialize(&docs)
}

async fn apikey_challenge(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let query = match query::parse(raw.as_deref(), AUTHN_SERVICE) {
        Ok(q) => q,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    if !shared.config.challenge_apikey {
        return text(StatusCode::NOT_FOUND, "Authentication mechanism not found");
    }
    let Some(service_name) = query.string("serviceName").filter(|s| !s.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Service name is required");
    };
    let Some(account) = shared
        .config
        .service_accounts
        .iter()
        .find(|a| a.name == service_name)
    else {
        return text(StatusCode::NOT_FOUND, "Service not found");
    };
    let challenge = auth::new_challenge();
    shared.lock().challenges.insert(
        service_name.to_owned(),
        PendingChallenge {
            challenge: challenge.clone(),
            apikey: account.apikey.clone(),
            expires: Instant::now() + shared.config.challenge_validity,
        },
    );
    json(StatusCode::OK, &json!({ "challenge": challenge }))
}

async fn apikey_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match query::parse(raw.as_deref(), AUTHN_SERVICE) {
        Ok(q) => q,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    if !shared.config.challenge_apikey {
        return text(StatusCode::NOT_FOUND, "Authentication mechanism not found");
    }
    let Some(service_name) = query.string("serviceName").filter(|s| !s.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Service name is required");
    };
    let Some(authorization) = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|v| !v.is_empty())
    else {
        return text(StatusCode::BAD_REQUEST, "Authorization header is required");
    };
    let parts: Vec<&str> = authorization.split(' ').collect();
    let [scheme, hash] = parts[..] else {
        return text(StatusCode::BAD_REQUEST, "Badly formatted request");
    };
    if scheme.to_lowercase() != "apikey" {
        return text(StatusCode::BAD_REQUEST, "Badly formatted request");
    }
    // The pending challenge is taken whatever the outcome: a challenge is good for one attempt.
    let pending = shared
        .lock()
        .challenges
        .remove(service_name)
        .filter(|p| p.expires > Instant::now());
    let Some(pending) = pending else {
        return text(StatusCode::BAD_REQUEST, "Challenge not found");
    };
    if auth::challenge_hash(&pending.apikey, &pending.challenge) != hash {
        return text(StatusCode::BAD_REQUEST, "Invalid challenge hash");
    }
    let timeout = shared.config.token_timeout.as_secs();
    let issued_at = auth::unix_now();
    let token = auth::sign_token(
        &shared.jwt_secret,
        service_name,
        issued_at,
        issued_at + timeout,
    );
    shared
        .lock()
        .issued_tokens
        .insert(token.clone(), Instant::now());
    json(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": timeout}),
    )
}
