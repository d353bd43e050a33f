//! Authentication allow/deny over real data, cursor keys between processes, and the OpenAPI
//! document against the router.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::memory_server::*;
use api::Auth;
use api::config::{Secret, ServerConfig};
use taxiway_tests::python;

/// The auth file of these tests: a token for everything, alice (argon2id password) for ICS,
/// Mobile for anonymous callers.
fn auth_json(alice_hash: &str) -> String {
    let mobile = collection_of("mobile");
    format!(
        r#"{{"principals":[
            {{"name":"ci","token_sha256":"{}","collections":["*"]}},
            {{"name":"ics-reader","username":"alice","password_hash":"{alice_hash}","collections":["{ICS}"]}}],
          "anonymous":["{mobile}"]}}"#,
        hex::encode(Sha256::digest(b"s3cret-token")),
    )
}

fn auth() -> Auth {
    Auth::from_json(&auth_json(&api::password::hash(b"pa55").unwrap())).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A file under the system temp directory with a unique name.
fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.json", taxiway_tests::unique_name(name)));
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_taxii_error(reply: &Reply, status: StatusCode) {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/taxii+json;version=2.1")
    );
    let body = reply.json();
    assert!(body["title"].is_string(), "{body}");
    assert_eq!(body["http_status"], status.as_u16().to_string(), "{body}");
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
    let alice = basic("alice", "pa55");
    let wrong = basic("alice", "nope");

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
    let unknown = basic("mallory", "pa55");
    for bad in [wrong.as_str(), unknown.as_str(), "Bearer nope"] {
        let reply = get_as(&app, &ics, Some(bad)).await;
        assert_taxii_error(&reply, StatusCode::UNAUTHORIZED);
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
async fn a_password_is_checked_with_argon2_once_and_a_wrong_one_every_time() {
    let (app, _, _) = server_with(ServerConfig::default(), Some(auth())).await;
    let ics = format!("/api/v21/collections/{ICS}/manifest/?limit=1");
    let mobile = format!(
        "/api/v21/collections/{}/manifest/?limit=1",
        collection_of("mobile")
    );
    let alice = basic("alice", "pa55");
    let timed = |authorization: String| {
        let app = app.clone();
        let uri = ics.clone();
        async move {
            let started = Instant::now();
            let reply = get_as(&app, &uri, Some(&authorization)).await;
            (reply, started.elapsed())
        }
    };
    let (first, checked) = timed(alice.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let (second, remembered) = timed(alice.clone()).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(first.body, second.body);
    // A remembered login keeps alice's rights, no more.
    assert_taxii_error(
        &get_as(&app, &mobile, Some(&alice)).await,
        StatusCode::FORBIDDEN,
    );
    // A wrong password after the right one is still refused, each time.
    for _ in 0..2 {
        let (reply, _) = timed(basic("alice", "pa55x")).await;
        assert_taxii_error(&reply, StatusCode::UNAUTHORIZED);
    }
    let (reply, _) = timed(basic("alice", "")).await;
    assert_taxii_error(&reply, StatusCode::UNAUTHORIZED);
    println!("basic login: first (argon2id) {checked:?}, remembered {remembered:?}");
}

#[tokio::test]
async fn legacy_sha256_password_entries_stop_the_start() {
    let legacy = auth_json("unused").replace(
        r#""password_hash":"unused""#,
        &format!(
            r#""password_sha256":"{}""#,
            hex::encode(Sha256::digest(b"pa55"))
        ),
    );
    let file = temp_file("legacy_auth", &legacy);
    let mut config = taxiway_tests::api::Api::config("unused_keyspace");
    config.auth_file = Some(file.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    // The auth file is read before anything connects, so the start fails at once.
    let error = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        api::run(config, listener, token),
    )
    .await
    .expect("api::run did not refuse the file")
    .unwrap_err()
    .to_string();
    std::fs::remove_file(&file).unwrap();
    for part in [
        file.display().to_string().as_str(),
        "\"alice\"",
        "password_sha256",
        "unsalted",
        "api hash-password",
    ] {
        assert!(error.contains(part), "{part:?} in {error}");
    }
}

#[tokio::test]
async fn the_hash_command_output_logs_in() {
    // What `api hash-password` does with a password piped on stdin.
    let password = api::hash_password::read_line(&b"correct horse battery\n"[..]).unwrap();
    let line = api::hash_password::hash_line(&password).unwrap();
    assert!(
        line.ends_with('\n') && line.lines().count() == 1,
        "{line:?}"
    );
    let file = temp_file("hashed_auth", &auth_json(line.trim_end()));
    let auth = Auth::from_file(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let (app, _, _) = server_with(ServerConfig::default(), Some(auth)).await;
    let ics = format!("/api/v21/collections/{ICS}/");
    assert_eq!(
        get_as(&app, &ics, Some(&basic("alice", "correct horse battery")))
            .await
            .status,
        StatusCode::OK
    );
    assert_taxii_error(
        &get_as(&app, &ics, Some(&basic("alice", "correct horse battery\n"))).await,
        StatusCode::UNAUTHORIZED,
    );
}

/// The first page (limit 5) of ICS objects and its `next` cursor, from `app`.
async fn first_page(app: &axum::Router) -> (String, String) {
    let uri = format!("/api/v21/collections/{ICS}/objects/?limit=5");
    let json = get(app, &uri).await.json();
    assert_eq!(json["more"], true, "{json}");
    (uri, json["next"].as_str().unwrap().to_owned())
}

fn with_key(key: Option<&str>) -> ServerConfig {
    ServerConfig {
        cursor_key: key.map(|k| Secret(k.to_owned())),
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn cursors_cross_processes_only_with_a_shared_key() {
    // Two processes without a configured key: each signs with its own random key.
    let (a, _, _) = server_with(with_key(None), None).await;
    let (b, _, _) = server_with(with_key(None), None).await;
    let (uri, next) = first_page(&a).await;
    let second = format!("{uri}&next={next}");
    let own = get(&a, &second).await;
    assert_eq!(own.status, StatusCode::OK);
    let refused = get(&b, &second).await;
    assert_taxii_error(&refused, StatusCode::BAD_REQUEST);
    assert_eq!(refused.json()["details"]["parameter"], "next");

    // Two processes sharing a key accept each other's cursors, and serve the same page.
    let (c, _, _) = server_with(with_key(Some("shared-between-replicas")), None).await;
    let (d, _, _) = server_with(with_key(Some("shared-between-replicas")), None).await;
    let (uri, next) = first_page(&c).await;
    let second = format!("{uri}&next={next}");
    let (from_c, from_d) = (get(&c, &second).await, get(&d, &second).await);
    assert_eq!(from_d.status, StatusCode::OK);
    assert_eq!(from_c.body, from_d.body);

    // A cursor signed with the public key of earlier versions ("taxiway-cursor") is a forgery
    // for a process that was given no key.
    let (old, _, _) = server_with(with_key(Some("taxiway-cursor")), None).await;
    let (uri, forged) = first_page(&old).await;
    assert_eq!(
        get(&old, &format!("{uri}&next={forged}")).await.status,
        StatusCode::OK
    );
    assert_taxii_error(
        &get(&a, &format!("{uri}&next={forged}")).await,
        StatusCode::BAD_REQUEST,
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
            .replace("{status_id}", "s1")
            .replace("{asset}", "swagger-ui.css");
        for variant in [concrete.clone(), concrete.trim_end_matches('/').to_owned()] {
            if variant.is_empty() {
                continue;
            }
            // Only the response head: a live stream's body never ends.
            let head = app
                .clone()
                .oneshot(Request::get(&variant).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let matched = head
                .headers()
                .get("x-matched")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{variant} is not routed"));
            assert_eq!(
                matched.trim_end_matches('/'),
                path.trim_end_matches('/'),
                "{variant}"
            );
        }
    }
}

/// The api serving the five releases from memory over HTTP on 127.0.0.1, as a process would.
struct HttpServer {
    base: String,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), api::Error>>,
}

impl HttpServer {
    async fn start() -> HttpServer {
        let (_, state, store) = server_with(ServerConfig::default(), None).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let store: std::sync::Arc<dyn api::store::Store> = std::sync::Arc::new(store);
        let task = tokio::spawn(api::serve(state, store, listener, shutdown.clone()));
        HttpServer {
            base,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// `python -m openapi_spec_validator` on `document`.
async fn validate(document: &serde_json::Value) -> python::Output {
    let file = temp_file("openapi", &document.to_string());
    let path = file.to_string_lossy().into_owned();
    let output = python::run(
        "python",
        &["-m", "openapi_spec_validator", &path],
        &[],
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    std::fs::remove_file(&file).unwrap();
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_openapi_3() {
    let server = HttpServer::start().await;
    let document: serde_json::Value = reqwest::get(format!("{}/openapi.json", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.stop().await;
    let valid = validate(&document).await;
    assert!(valid.success, "openapi-spec-validator: {}", valid.text);

    // The validator does catch what issue 16 found: operations missing their path parameters.
    let objects = "/api/v21/{root}/collections/{id}/objects/";
    let mut broken = document.clone();
    broken["paths"][objects]
        .as_object_mut()
        .unwrap()
        .remove("parameters")
        .unwrap();
    let invalid = validate(&broken).await;
    assert!(!invalid.success, "accepted without path parameters");
    assert!(
        invalid.text.contains("was not resolved"),
        "{}",
        invalid.text
    );

    // Every route and every response schema of the TAXII resources is there, and each TAXII
    // error response carries the error body schema.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for name in [
        "Discovery",
        "ApiRoot",
        "Collections",
        "Collection",
        "Envelope",
        "Manifest",
        "Versions",
        "Status",
        "Error",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    assert_eq!(
        document["paths"]["/health/ping"]["get"]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["204"]
    );
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') {
                    let schema = &response["content"]["application/taxii+json;version=2.1"]["schema"]
                        ["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

/// `N` of schemathesis' summary line `N generated, N passed`.
fn generated(output: &str) -> Option<usize> {
    output.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words
            .windows(2)
            .find(|w| w[1].trim_end_matches(',') == "generated")
            .and_then(|w| w[0].parse().ok())
    })
}

#[test]
fn schemathesis_summary_is_read() {
    let summary = "Schema validation mismatch: 4 operations mostly rejected generated data\n\
                   Test cases:\n  2723 generated, 2723 passed\n";
    assert_eq!(generated(summary), Some(2723));
    assert_eq!(generated("no summary"), None);
}

/// Python calling the `taxii_error_body` check on a response with `status`, `content_type` and
/// `body`; it exits 1 when the check refuses it.
const CALL_CHECK: &str = "import sys, taxii_checks
class R: pass
r = R(); r.status_code = int(sys.argv[1]); r.headers = {'content-type': [sys.argv[2]]}
r.content = sys.argv[3].encode()
try:
    taxii_checks.taxii_error_body(None, r, None)
except AssertionError as e:
    print(e); sys.exit(1)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_only_taxii_error_bodies() {
    let hooks_path = python::repo().join("tests/python");
    let hooks = hooks_path.to_string_lossy().into_owned();
    // The check refuses what it must: a 4xx that is not a TAXII error message.
    let taxii = "application/taxii+json;version=2.1";
    for (status, content_type, body, accepted) in [
        (
            "404",
            taxii,
            r#"{"title":"Not Found","http_status":"404"}"#,
            true,
        ),
        ("200", "text/plain", "anything", true),
        (
            "404",
            "text/plain",
            r#"{"title":"Not Found","http_status":"404"}"#,
            false,
        ),
        ("404", taxii, "not json", false),
        (
            "400",
            taxii,
            r#"{"title":"Bad Request","http_status":400}"#,
            false,
        ),
        ("400", taxii, r#"{"http_status":"400"}"#, false),
    ] {
        let out = python::run(
            "python",
            &["-c", CALL_CHECK, status, content_type, body],
            &[("PYTHONPATH", &hooks)],
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(
            out.success, accepted,
            "{status} {content_type} {body}: {}",
            out.text
        );
    }

    let server = HttpServer::start().await;
    let schema = format!("{}/openapi.json", server.base);
    let output = python::run(
        "st",
        &[
            "run",
            &schema,
            "--checks",
            "not_a_server_error,response_schema_conformance,taxii_error_body",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "10",
            "--seed",
            "16",
            "--max-time",
            "60",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            // A live stream never ends: a request-response check cannot call it (its own
            // tests are in api_stream).
            "--exclude-path-regex",
            "/stream/$",
            "--no-color",
        ],
        &[
            ("SCHEMATHESIS_HOOKS", "taxii_checks"),
            ("PYTHONPATH", &hooks),
        ],
        std::time::Duration::from_secs(240),
    )
    .await
    .unwrap();
    server.stop().await;
    let cases = generated(&output.text);
    assert!(
        output.success,
        "schemathesis {}:\n{}",
        output.status, output.text
    );
    assert!(
        cases.is_some_and(|n| n > 0),
        "no test case ran:\n{}",
        output.text
    );
    let summary = output
        .text
        .find("SUMMARY")
        .map_or("", |at| &output.text[at..]);
    println!("schemathesis: {cases:?} test cases, no failure\n{summary}");
}
