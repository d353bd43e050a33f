//! Authentication allow/deny over real data, and the OpenAPI document against the router.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::memory_server::*;
use api::Auth;
use api::config::ServerConfig;

fn auth() -> Auth {
    let mobile = collection_of("mobile");
    Auth::from_json(&format!(
        r#"{{"principals":[
            {{"name":"ci","token_sha256":"{}","collections":["*"]}},
            {{"name":"ics-reader","username":"alice","password_sha256":"{}","collections":["{ICS}"]}}],
          "anonymous":["{mobile}"]}}"#,
        hex::encode(Sha256::digest(b"s3cret-token")),
        hex::encode(Sha256::digest(b"pa55"))
    ))
    .unwrap()
}

async fn get_as(app: &axum::Router, uri: &str, authorization: Option<&str>) -> Reply {
    let mut request = axum::http::Request::get(uri);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn auth_allows_and_denies_per_collection() {
    let (app, _, _) = server_with(ServerConfig::default(), Some(auth())).await;
    let ics = format!("/api/v21/collections/{ICS}/objects/?limit=1");
    let mobile = format!(
        "/api/v21/collections/{}/objects/?limit=1",
        collection_of("mobile")
    );
    let alice = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pa55")
    );
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:nope")
    );

    assert_eq!(
        get_as(&app, &ics, Some("Bearer s3cret-token")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, &ics, Some(&alice)).await.status,
        StatusCode::OK
    );
    // Anonymous callers read only the collections granted to "anonymous".
    assert_eq!(get_as(&app, &mobile, None).await.status, StatusCode::OK);
    let denied = get_as(&app, &ics, None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.json()["http_status"], "403");
    assert_eq!(
        get_as(&app, &mobile, Some(&alice)).await.status,
        StatusCode::FORBIDDEN
    );
    for bad in [wrong.as_str(), "Bearer nope"] {
        let reply = get_as(&app, &ics, Some(bad)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json()["http_status"], "401");
        assert!(reply.header("www-authenticate").is_some());
    }
    // Listings show every collection; can_read reflects the caller.
    let listing = get_as(&app, "/api/v21/collections/", Some(&alice))
        .await
        .json();
    for c in listing["collections"].as_array().unwrap() {
        assert_eq!(c["can_read"], c["id"] == ICS, "{c}");
    }
    // Operational endpoints stay open.
    assert_eq!(
        get_as(&app, "/health/ping", None).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn without_anonymous_rights_credentials_are_required() {
    let auth = Auth::from_json(&format!(
        r#"{{"principals":[{{"name":"ci","token_sha256":"{}","collections":["*"]}}]}}"#,
        hex::encode(Sha256::digest(b"t"))
    ))
    .unwrap();
    let (app, _, _) = server_with(ServerConfig::default(), Some(auth)).await;
    assert_eq!(
        get_as(&app, "/taxii2/", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&app, "/taxii2/", Some("Bearer t")).await.status,
        StatusCode::OK
    );
}

async fn tag_matched_path(request: Request, next: Next) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(m) = matched {
        response
            .headers_mut()
            .insert("x-matched", m.parse().unwrap());
    }
    response
}

#[tokio::test]
async fn openapi_document_matches_the_router() {
    let (app, _, _) = server().await;
    let app = app.layer(from_fn(tag_matched_path));
    let doc = get(&app, "/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let table: BTreeSet<String> = api::route_table("/api/v21")
        .into_iter()
        .map(|r| r.template)
        .collect();
    assert_eq!(
        documented, table,
        "the document lists exactly the route table"
    );
    let object = bundle("ics-attack-18.1").objects[0]["id"].as_str().unwrap();
    // Every documented path is routed to itself, with and without trailing slash.
    for path in &documented {
        let concrete = path
            .replace("{root}", "history")
            .replace("{id}", ICS)
            .replace("{object_id}", object)
            .replace("{status_id}", "s1");
        for variant in [concrete.clone(), concrete.trim_end_matches('/').to_owned()] {
            if variant.is_empty() {
                continue;
            }
            let reply = get(&app, &variant).await;
            let matched = reply
                .header("x-matched")
                .unwrap_or_else(|| panic!("{variant} is not routed"));
            assert_eq!(
                matched.trim_end_matches('/'),
                path.trim_end_matches('/'),
                "{variant}"
            );
        }
    }
}
