//! The route table of the double and its handlers: query validation first (as Workbench's OpenAPI validator
//! runs before any route), then authentication and role check, then faults, then the store.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::auth::{self, PendingChallenge};
use super::query::{self, Kind, Query, Spec};
use super::reply::{Rejection, empty, json, json_text, text};
use super::store::{
    CollectionFilter, CollectionVersion, ExportRecord, RenderOptions, StoredObject,
};
use super::{Fault, RequestRecord, ServiceRole, Shared, timestamp};

const VERSIONS: Kind = Kind::OneOf(&["all", "latest"]);

const COLLECTIONS: Spec = &[
    ("limit", Kind::Number),
    ("offset", Kind::Number),
    ("versions", VERSIONS),
    ("state", Kind::StrList),
    ("includeRevoked", Kind::Bool),
    ("includeDeprecated", Kind::Bool),
    ("search", Kind::Str),
    ("lastUpdatedBy", Kind::StrList),
];
const COLLECTION_BY_ID: Spec = &[
    ("versions", VERSIONS),
    ("retrieveContents", Kind::Bool),
    ("stream", Kind::Bool),
];
const COLLECTION_VERSION: Spec = &[("retrieveContents", Kind::Bool), ("stream", Kind::Bool)];
const COLLECTION_BUNDLES: Spec = &[
    ("previewOnly", Kind::Bool),
    ("collectionId", Kind::Str),
    ("collectionModified", Kind::Str),
    ("includeNotes", Kind::Bool),
];
const STIX_BUNDLES: Spec = &[
    (
        "domain",
        Kind::OneOf(&["enterprise-attack", "mobile-attack", "ics-attack"]),
    ),
    ("stixVersion", Kind::Str),
    ("includeRevoked", Kind::Bool),
    ("includeDeprecated", Kind::Bool),
    ("includeDataSources", Kind::Bool),
    ("includeNotes", Kind::Bool),
    ("includeMissingAttackId", Kind::Bool),
    ("useLegacyMethod", Kind::Bool),
    ("state", Kind::StrList),
    ("includeCollectionObject", Kind::Bool),
    ("collectionObjectVersion", Kind::Str),
    ("collectionObjectModified", Kind::Str),
    ("collectionAttackSpecVersion", Kind::Str),
];
const ATTACK_OBJECTS: Spec = &[
    ("versions", VERSIONS),
    ("attackId", Kind::StrList),
    ("state", Kind::StrList),
    ("includeRevoked", Kind::Bool),
    ("includeDeprecated", Kind::Bool),
    ("search", Kind::Str),
    ("lastUpdatedBy", Kind::StrList),
    ("limit", Kind::Number),
    ("offset", Kind::Number),
    ("includePagination", Kind::Bool),
];
const RECENT_ACTIVITY: Spec = &[
    ("limit", Kind::Number),
    ("offset", Kind::Number),
    ("includeRevoked", Kind::Bool),
    ("includeDeprecated", Kind::Bool),
    ("lastUpdatedBy", Kind::StrList),
    ("includePagination", Kind::Bool),
];
const AUTHN_SERVICE: Spec = &[("serviceName", Kind::Str)];
const NO_PARAMETERS: Spec = &[];

const READ_ONLY: &[ServiceRole] = &[ServiceRole::ReadOnly];
const COLLECTION_READERS: &[ServiceRole] = &[ServiceRole::ReadOnly, ServiceRole::CollectionManager];
const STIX_EXPORTERS: &[ServiceRole] = &[ServiceRole::ReadOnly, ServiceRole::StixExport];

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/collections", get(list_collections))
        .route("/api/collections/{stix_id}", get(collection_by_id))
        .route(
            "/api/collections/{stix_id}/modified/{modified}",
            get(collection_version),
        )
        .route("/api/collection-bundles", get(collection_bundle))
        .route("/api/stix-bundles", get(stix_bundle))
        .route("/api/attack-objects", get(attack_objects))
        .route("/api/recent-activity", get(recent_activity))
        .route("/api/authn/service/apikey-challenge", get(apikey_challenge))
        .route("/api/authn/service/apikey-token", get(apikey_token))
        .route("/api/health/ping", get(ping))
        .route("/api/health/status", get(status))
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
    let exempt = path.starts_with("/api/health/");
    let (delay, unavailable) = {
        let state = shared.lock();
        let delay = state.faults.iter().find_map(|f| match f {
            Fault::SlowResponses(d) => Some(*d),
            _ => None,
        });
        let unavailable = state.faults.contains(&Fault::ServiceUnavailable);
        (delay, unavailable)
    };
    if let Some(delay) = delay.filter(|_| !exempt) {
        tokio::time::sleep(delay).await;
    }
    let response = if unavailable && !exempt {
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

/// Query validation, then authentication and the role check.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    spec: Spec,
    roles: &[ServiceRole],
) -> Result<Query, Rejection> {
    let query =
        query::parse(raw_query, spec).map_err(|m| Rejection::Text(StatusCode::BAD_REQUEST, m))?;
    auth::authorize(shared, headers, roles)?;
    Ok(query)
}

fn limit_of(query: &Query) -> usize {
    query
        .number("limit")
        .filter(|n| *n > 0.0)
        .map(|n| n as usize)
        .unwrap_or(0)
}

fn offset_of(query: &Query) -> usize {
    query
        .number("offset")
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
    let query = match admit(&shared, &headers, raw.as_deref(), COLLECTIONS, READ_ONLY) {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    let filter = CollectionFilter {
        latest_only: query.string("versions") != Some("all"),
        states: query.list("state").map(<[String]>::to_vec),
        include_revoked: query.flag_or_false("includeRevoked"),
        include_deprecated: query.flag_or_false("includeDeprecated"),
        search: query.string("search").map(str::to_owned),
        last_updated_by: query.list("lastUpdatedBy").map(<[String]>::to_vec),
        limit: limit_of(&query),
    };
    let mut state = shared.lock();
    let response = if state.faults.contains(&Fault::EmptyCollectionList) {
        json_text(StatusCode::OK, "[]".to_owned())
    } else {
        let store = &state.store;
        let options = RenderOptions {
            mongo_fields: true,
            identities: true,
            contents: false,
        };
        let docs: Vec<_> = store
            .list_collections(&filter)
            .into_iter()
            .map(|c| store.render_collection(c, options))
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

async fn collection_by_id(
    State(shared): State<Arc<Shared>>,
    Path(stix_id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(
        &shared,
        &headers,
        raw.as_deref(),
        COLLECTION_BY_ID,
        COLLECTION_READERS,
    ) {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    let all = query.string("versions") == Some("all");
    let state = shared.lock();
    let store = &state.store;
    let versions: Vec<&CollectionVersion> = if all {
        store.collection_versions_of(&stix_id)
    } else {
        store.latest_collection(&stix_id).into_iter().collect()
    };
    if versions.is_empty() {
        return text(StatusCode::NOT_FOUND, "Collection not found.");
    }
    let options = RenderOptions {
        mongo_fields: all,
        identities: false,
        contents: query.flag_or_false("retrieveContents"),
    };
    let docs: Vec<_> = versions
        .into_iter()
        .map(|c| store.render_collection(c, options))
        .collect();
    serialize(&docs)
}

async fn collection_version(
    State(shared): State<Arc<Shared>>,
    Path((stix_id, modified)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(
        &shared,
        &headers,
        raw.as_deref(),
        COLLECTION_VERSION,
        READ_ONLY,
    ) {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(modified) = timestamp::normalize(&modified) else {
        // Mongoose cannot cast the value to a date.
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unable to get collection. Server error.",
        );
    };
    let state = shared.lock();
    let store = &state.store;
    let Some(collection) = store.collection(&stix_id, &modified) else {
        return json(
            StatusCode::NOT_FOUND,
            &json!({"error": "Collection version not found"}),
        );
    };
    let contents = query.flag_or_false("retrieveContents");
    if contents && query.flag_or_false("stream") {
        return event_stream(store, collection);
    }
    let options = RenderOptions {
        mongo_fields: true,
        identities: true,
        contents,
    };
    serialize(&store.render_collection(collection, options))
}

/// `retrieveContents=true&stream=true`: the Server-Sent Events form, sent in one body.
fn event_stream(store: &super::store::Store, collection: &CollectionVersion) -> Response {
    fn event(out: &mut String, data: &impl Serialize) {
        out.push_str("data: ");
        out.push_str(&serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned()));
        out.push_str("\n\n");
    }
    #[derive(Serialize)]
    struct Content<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        position: usize,
        object: super::store::ObjectDoc<'a>,
    }
    let mut out = String::new();
    let options = RenderOptions {
        mongo_fields: true,
        identities: true,
        contents: false,
    };
    event(
        &mut out,
        &json!({"type": "collection", "data": serde_json::to_value(store.render_collection(collection, options)).unwrap_or_default()}),
    );
    event(
        &mut out,
        &json!({"type": "contentCount", "count": collection.contents.len()}),
    );
    for (position, key) in collection.contents.iter().enumerate() {
        if let Some(object) = store.object(&key.id, &key.modified) {
            event(
                &mut out,
                &Content {
                    kind: "content",
                    position,
                    object: store.object_doc(object),
                },
            );
        }
    }
    out.push_str("event: complete\ndata: {}\n\n");
    let mut response = Response::new(Body::from(out));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn collection_bundle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(
        &shared,
        &headers,
        raw.as_deref(),
        COLLECTION_BUNDLES,
        READ_ONLY,
    ) {
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

fn attack_object_filter<'a>(query: &'a Query) -> impl Fn(&&StoredObject) -> bool + 'a {
    let search = query.string("search").map(str::to_lowercase);
    move |object: &&StoredObject| {
        let head = &object.head;
        (query.flag_or_false("includeRevoked") || !head.revoked())
            && (query.flag_or_false("includeDeprecated") || !head.deprecated())
            && query
                .list("state")
                .is_none_or(|states| states.contains(&object.workflow_state))
            && query.list("lastUpdatedBy").is_none()
            && query
                .list("attackId")
                .is_none_or(|ids| object.attack_id.as_ref().is_some_and(|id| ids.contains(id)))
            && search.as_deref().is_none_or(|needle| {
                head.matches_search(needle)
                    || object
                        .attack_id
                        .as_deref()
                        .is_some_and(|id| id.to_lowercase().contains(needle))
            })
    }
}

fn paginated(query: &Query, docs: Vec<super::store::ObjectDoc<'_>>, total: usize) -> Response {
    if query.flag_or_false("includePagination") {
        serialize(&json!({
            "pagination": {"total": total, "offset": offset_of(query), "limit": limit_of(query)},
            "data": docs,
        }))
    } else {
        serialize(&docs)
    }
}

fn page<T>(items: Vec<T>, query: &Query) -> Vec<T> {
    let limit = limit_of(query);
    let taken = items.into_iter().skip(offset_of(query));
    if limit > 0 {
        taken.take(limit).collect()
    } else {
        taken.collect()
    }
}

async fn attack_objects(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(&shared, &headers, raw.as_deref(), ATTACK_OBJECTS, READ_ONLY) {
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
    let (relationships, objects): (Vec<&StoredObject>, Vec<&StoredObject>) = candidates
        .into_iter()
        .partition(|o| o.head.kind == "relationship");
    let total = objects.len();
    let mut docs: Vec<_> = page(objects, &query)
        .into_iter()
        .map(|o| store.object_doc(o))
        .collect();
    if query.list("attackId").is_none() && query.string("search").is_none() {
        docs.extend(relationships.into_iter().map(|o| store.object_doc(o)));
    }
    paginated(&query, docs, total)
}

async fn recent_activity(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(
        &shared,
        &headers,
        raw.as_deref(),
        RECENT_ACTIVITY,
        READ_ONLY,
    ) {
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
    let total = objects.len();
    let docs: Vec<_> = page(objects, &query)
        .into_iter()
        .map(|o| store.object_doc(o))
        .collect();
    paginated(&query, docs, total)
}

/// `GET /api/stix-bundles`, simplified: the latest version of every object of the domain, the relationships
/// between them, and the identities and marking definitions they reference.
async fn stix_bundle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match admit(
        &shared,
        &headers,
        raw.as_deref(),
        STIX_BUNDLES,
        STIX_EXPORTERS,
    ) {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(domain) = query.string("domain") else {
        return text(StatusCode::BAD_REQUEST, "domain is required");
    };
    let stix_version = query.string("stixVersion").unwrap_or("2.0");
    if stix_version != "2.0" && stix_version != "2.1" {
        return text(StatusCode::BAD_REQUEST, "invalid STIX version");
    }
    let state = shared.lock();
    let store = &state.store;
    let keep = |o: &&StoredObject| {
        (query.flag_or_false("includeRevoked") || !o.head.revoked())
            && (query.flag_or_false("includeDeprecated") || !o.head.deprecated())
            && query
                .list("state")
                .is_none_or(|states| states.contains(&o.workflow_state))
    };
    let in_domain: Vec<&StoredObject> = store
        .latest_objects()
        .filter(|o| {
            o.head
                .x_mitre_domains
                .as_ref()
                .is_some_and(|d| d.iter().any(|x| x == domain))
        })
        .filter(keep)
        .collect();
    let ids: std::collections::HashSet<&str> =
        in_domain.iter().map(|o| o.head.id.as_str()).collect();
    let mut values: Vec<Value> = Vec::new();
    let mut referenced: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut push = |raw: &RawValue, values: &mut Vec<Value>| {
        if let Ok(value) = serde_json::from_str::<Value>(raw.get()) {
            if let Some(r) = value.get("created_by_ref").and_then(Value::as_str) {
                referenced.insert(r.to_owned());
            }
            if let Some(refs) = value.get("object_marking_refs").and_then(Value::as_array) {
                referenced.extend(refs.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            values.push(value);
        }
    };
    for object in &in_domain {
        push(&object.raw, &mut values);
    }
    for relationship in store
        .latest_objects()
        .filter(|o| o.head.kind == "relationship")
        .filter(keep)
    {
        if let Ok(value) = serde_json::from_str::<Value>(relationship.raw.get()) {
            let source = value
                .get("source_ref")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let target = value
                .get("target_ref")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if ids.contains(source) && ids.contains(target) {
                push(&relationship.raw, &mut values);
            }
        }
    }
    for id in referenced {
        if ids.contains(id.as_str()) {
            continue;
        }
        if let Some(object) = store.latest_object(&id) {
            if let Ok(value) = serde_json::from_str::<Value>(object.raw.get()) {
                values.push(value);
            }
        } else if let Some(marking) = store.marking(&id)
            && let Ok(value) = serde_json::from_str::<Value>(marking.get())
        {
            values.push(value);
        }
    }
    let mut bundle = Map::new();
    bundle.insert("type".into(), json!("bundle"));
    bundle.insert(
        "id".into(),
        json!(format!("bundle--{}", uuid::Uuid::new_v4())),
    );
    if stix_version == "2.1" {
        for value in &mut values {
            if let Some(map) = value.as_object_mut() {
                map.insert("spec_version".into(), json!("2.1"));
                if map.get("type").and_then(Value::as_str) != Some("course-of-action") {
                    map.remove("labels");
                }
                map.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
            }
        }
    } else {
        bundle.insert("spec_version".into(), json!("2.0"));
    }
    bundle.insert("objects".into(), Value::Array(values));
    serialize(&bundle)
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

async fn ping(RawQuery(raw): RawQuery) -> Response {
    match query::parse(raw.as_deref(), NO_PARAMETERS) {
        Ok(_) => empty(StatusCode::NO_CONTENT),
        Err(message) => text(StatusCode::BAD_REQUEST, message),
    }
}

async fn status(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    match query::parse(raw.as_deref(), NO_PARAMETERS) {
        Ok(_) => json(
            StatusCode::OK,
            &json!({"uptime": shared.started.elapsed().as_secs_f64()}),
        ),
        Err(message) => text(StatusCode::BAD_REQUEST, message),
    }
}
