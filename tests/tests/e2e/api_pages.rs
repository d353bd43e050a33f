//! The api's face for browsers, over the shipped bundles in memory: CORS on the TAXII routes
//! (off by default, per origin when on), the home page at `/` and the Swagger UI page. What the
//! pages show is compared with what the bundle files say, not with our own output.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sha2::{Digest, Sha256};

use crate::memory_server::*;
use api::Auth;
use api::config::ServerConfig;

const NAVIGATOR: &str = "https://mitre-attack.github.io";
const OTHER: &str = "https://evil.example";
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

fn cors(origins: &[&str]) -> ServerConfig {
    ServerConfig {
        cors_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        ..ServerConfig::default()
    }
}

fn objects_path() -> String {
    format!("/api/v21/collections/{ICS}/objects/?limit=5")
}

/// The preflight a browser sends before a cross-origin GET with TAXII headers.
async fn preflight(app: &axum::Router, path: &str, origin: &str) -> Reply {
    let request = Request::builder()
        .method("OPTIONS")
        .uri(path)
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "accept,authorization,if-none-match",
        )
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

async fn get_from(app: &axum::Router, path: &str, origin: &str) -> Reply {
    let request = Request::get(path)
        .header("accept", "application/taxii+json;version=2.1")
        .header("origin", origin)
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

/// The comma-separated values of a header, lower-cased.
fn listed(reply: &Reply, name: &str) -> BTreeSet<String> {
    reply
        .header(name)
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let (app, _, _) = server().await;
    let reply = preflight(&app, &objects_path(), NAVIGATOR).await;
    // As before: OPTIONS is no method of a TAXII route.
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(reply.header("access-control-allow-origin").is_none());
    let reply = get_from(&app, &objects_path(), NAVIGATOR).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("access-control-allow-origin").is_none());
    assert!(reply.header("access-control-expose-headers").is_none());
}

#[tokio::test]
async fn a_preflight_is_allowed_for_a_listed_origin_only() {
    let (app, _, _) = server_with(cors(&[NAVIGATOR, "http://127.0.0.1:8080"]), None).await;
    for path in [
        "/taxii2/".to_owned(),
        "/api/v21/collections/".to_owned(),
        objects_path(),
        format!("/api/v21/attack-18.0/collections/{ICS}/manifest/"),
    ] {
        let reply = preflight(&app, &path, NAVIGATOR).await;
        assert!(reply.status.is_success(), "{path}: {}", reply.status);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(NAVIGATOR),
            "{path}"
        );
        assert_eq!(
            listed(&reply, "access-control-allow-methods"),
            BTreeSet::from(["get".to_owned(), "head".to_owned()]),
            "{path}"
        );
        let headers = listed(&reply, "access-control-allow-headers");
        for h in ["accept", "authorization", "if-none-match"] {
            assert!(headers.contains(h), "{path}: {h} in {headers:?}");
        }
        // Refused: no allow-origin, so the browser keeps the response from the page.
        let refused = preflight(&app, &path, OTHER).await;
        assert!(
            refused.header("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    let reply = get_from(&app, &objects_path(), OTHER).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_cross_origin_read_exposes_the_taxii_headers() {
    let (app, _, _) = server_with(cors(&[NAVIGATOR]), None).await;
    let reply = get_from(&app, &objects_path(), NAVIGATOR).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("access-control-allow-origin"), Some(NAVIGATOR));
    let exposed = listed(&reply, "access-control-expose-headers");
    for h in [
        "x-taxii-date-added-first",
        "x-taxii-date-added-last",
        "etag",
    ] {
        assert!(exposed.contains(h), "{h} in {exposed:?}");
        assert!(reply.header(h).is_some(), "the response has {h}");
    }
    // Errors are readable by the page too: it can show the TAXII error body.
    let missing = get_from(&app, "/api/v21/collections/nope/", NAVIGATOR).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.header("access-control-allow-origin"),
        Some(NAVIGATOR)
    );
}

#[tokio::test]
async fn any_origin_with_a_star() {
    let (app, _, _) = server_with(cors(&["*"]), None).await;
    let reply = preflight(&app, &objects_path(), OTHER).await;
    assert!(reply.status.is_success());
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let reply = get_from(&app, &objects_path(), NAVIGATOR).await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn a_preflight_needs_no_credentials_and_is_no_405() {
    let file = format!(
        r#"{{"principals":[{{"name":"ci","token_sha256":"{}","collections":["*"]}}]}}"#,
        hex::encode(Sha256::digest(b"t0ken"))
    );
    let auth = Auth::from_json(&file).unwrap();
    let (app, _, _) = server_with(cors(&[NAVIGATOR]), Some(auth)).await;
    let reply = preflight(&app, &objects_path(), NAVIGATOR).await;
    assert!(reply.status.is_success(), "{}", reply.status);
    assert_eq!(reply.header("access-control-allow-origin"), Some(NAVIGATOR));
    // The read itself still needs the token.
    let anonymous = get_from(&app, &objects_path(), NAVIGATOR).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.header("access-control-allow-origin"),
        Some(NAVIGATOR)
    );
    let metrics = String::from_utf8_lossy(&get(&app, "/metrics").await.body).into_owned();
    let options: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("taxiway_api_requests_total") && l.contains("\"OPTIONS\""))
        .collect();
    assert!(!options.is_empty(), "the preflight is counted");
    assert!(
        options.iter().all(|l| !l.contains("\"405\"")),
        "{options:?}"
    );
}

/// The text of the first `<td class="{class}">` after `from` in `html`.
fn cell<'a>(html: &'a str, from: usize, class: &str) -> &'a str {
    let open = format!("<td class=\"{class}\">");
    let start = html[from..].find(&open).unwrap() + from + open.len();
    let end = html[start..].find("</td>").unwrap() + start;
    &html[start..end]
}

async fn home_page(app: &axum::Router, host: &str) -> Reply {
    let request = Request::get("/")
        .header("accept", BROWSER_ACCEPT)
        .header("host", host)
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

#[tokio::test]
async fn the_home_page_lists_each_collection_as_its_latest_release() {
    let (app, _, _) = server().await;
    let reply = home_page(&app, "taxii.example.org:8443").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        reply
            .header("vary")
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept")
    );
    let html = String::from_utf8(reply.body.to_vec()).unwrap();
    let expected = latest_releases();
    assert_eq!(expected.len(), 2, "ICS and Mobile");
    for (id, (objects, label, date)) in &expected {
        let row = html
            .find(&format!("<tr data-collection=\"{id}\">"))
            .unwrap_or_else(|| panic!("no row for {id}"));
        assert_eq!(cell(&html, row, "objects"), objects.to_string(), "{id}");
        assert_eq!(cell(&html, row, "release"), label, "{id}");
        assert_eq!(cell(&html, row, "date"), date, "{id}");
        // Links and snippets use the address the client used.
        let url = format!("http://taxii.example.org:8443/api/v21/collections/{id}/");
        assert!(
            cell(&html, row, "url").contains(&format!("href=\"{url}\"")),
            "{id}"
        );
    }
    for root in [
        "/api/v21/",
        "/api/v21/attack-18.1/",
        "/api/v21/attack-17.0/",
        "/api/v21/history/",
    ] {
        assert!(html.contains(&format!("href=\"{root}\"")), "root {root}");
    }
    assert!(html.contains("href=\"/api-docs\"") && html.contains("href=\"/taxii2/\""));
    assert!(html.contains("Accept: application/taxii+json;version=2.1"));
    assert!(html.contains("taxii2client.v21") && html.contains("TAXIICollectionSource"));
    // Nothing is loaded from elsewhere, and the page needs no script.
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(!html.contains("src=\"http") && !html.contains("stylesheet"));
}

#[tokio::test]
async fn the_home_page_uses_the_public_url_when_configured() {
    let config = ServerConfig {
        public_url: Some("https://attack.example.org/".to_owned()),
        ..ServerConfig::default()
    };
    let (app, _, _) = server_with(config, None).await;
    let html = String::from_utf8(home_page(&app, "10.0.0.7:8000").await.body.to_vec()).unwrap();
    assert!(html.contains(&format!(
        "https://attack.example.org/api/v21/collections/{ICS}/"
    )));
    assert!(!html.contains("10.0.0.7"));
}

#[tokio::test]
async fn clients_that_do_not_ask_for_html_get_the_taxii_404_at_the_root() {
    let (app, _, _) = server().await;
    for accept in [
        "application/taxii+json;version=2.1",
        "*/*",
        "application/json",
    ] {
        let request = Request::get("/")
            .header("accept", accept)
            .body(Body::empty())
            .unwrap();
        let reply = send(&app, request).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{accept}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/taxii+json;version=2.1")
        );
        let body = reply.json();
        assert_eq!(body["http_status"], "404");
        assert!(
            body["description"].as_str().unwrap().contains("/taxii2/"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_home_page_escapes_what_the_data_says() {
    let store = store_of(collections().into_iter().map(|mut c| {
        c.meta.title = format!("<script>alert(1)</script> {}", c.meta.title);
        c
    }));
    let state = api::AppState::new(ServerConfig::default(), None).unwrap();
    refresh(&state, &store).await;
    let app = api::app(state);
    let html = String::from_utf8(
        home_page(&app, "h\"><script>x</script>")
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test]
async fn with_authentication_the_home_page_shows_what_anonymous_callers_may_read() {
    let mobile = collection_of("mobile");
    let file = format!(
        r#"{{"principals":[{{"name":"ci","token_sha256":"{}","collections":["*"]}}],
            "anonymous":["{mobile}"]}}"#,
        hex::encode(Sha256::digest(b"t0ken"))
    );
    let (app, _, _) = server_with(
        ServerConfig::default(),
        Some(Auth::from_json(&file).unwrap()),
    )
    .await;
    let html = String::from_utf8(home_page(&app, "h").await.body.to_vec()).unwrap();
    assert!(html.contains(&format!("data-collection=\"{mobile}\"")));
    assert!(!html.contains(&format!("data-collection=\"{ICS}\"")));
    assert!(html.contains("1 more collection(s) need credentials"));
}

#[tokio::test]
async fn the_api_docs_page_serves_swagger_ui_from_the_binary() {
    let (app, _, _) = server().await;
    let request = Request::get("/api-docs")
        .header("accept", BROWSER_ACCEPT)
        .body(Body::empty());
    let reply = send(&app, request.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = String::from_utf8(reply.body.to_vec()).unwrap();
    let assets = taxiway_tests::fixtures::repo_root().join("api/assets");
    for (name, file) in [
        ("swagger-ui.css", assets.join("swagger-ui/swagger-ui.css")),
        (
            "swagger-ui-bundle.js",
            assets.join("swagger-ui/swagger-ui-bundle.js"),
        ),
        ("api-docs.js", assets.join("api-docs.js")),
    ] {
        let link = format!("/api-docs/{name}?v=");
        assert!(html.contains(&link), "{link}");
        let reply = get(&app, &format!("/api-docs/{name}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}");
        assert_eq!(reply.body, std::fs::read(&file).unwrap(), "{name}");
        let expected_type = if name.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with(expected_type)
        );
    }
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert_eq!(
        get(&app, "/api-docs/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
    // The license travels with the files.
    assert!(assets.join("swagger-ui/LICENSE").is_file());
}
