//! In a real browser (Debian's headless Chromium): the home page and the API documentation page
//! of an api serving the shipped bundles from memory, checked for what they render and for a
//! clean console, with screenshots for the README; the changes page against the bundle files;
//! and a page on another origin that reads a
//! collection through CORS when it is on and is refused when it is off.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::response::Html;
use serde_json::Value;
use taxiway_tests::api::Api;
use taxiway_tests::browser::{Browser, Seen, Visit};
use taxiway_tests::fixtures::repo_root;

use crate::memory_server::*;
use api::config::ServerConfig;

/// The api over the five shipped releases (re-issued contents included), on 127.0.0.1, ready.
async fn serve(config: ServerConfig) -> Api {
    listening(config, crate::api_changes::collections_with_contents()).await
}

async fn browser(test: &str) -> Browser {
    let log = repo_root().join(format!("target/browser-logs/{test}.log"));
    Browser::start(log).await.unwrap()
}

fn visit(name: &str, url: String, wait_for: &str, evaluate: &str) -> Visit {
    Visit {
        name: name.to_owned(),
        url,
        wait_for: Some(wait_for.to_owned()),
        evaluate: Some(evaluate.to_owned()),
        screenshot: None,
        full_page: false,
    }
}

/// A page that loaded, with no script error, failed request or console error.
fn assert_clean(seen: &Seen) {
    assert!(seen.error.is_none(), "{}: {:?}", seen.url, seen.error);
    assert!(
        seen.page_errors.is_empty(),
        "{}: {:?}",
        seen.url,
        seen.page_errors
    );
    assert!(
        seen.failed_requests.is_empty(),
        "{}: {:?}",
        seen.url,
        seen.failed_requests
    );
    assert!(
        seen.console_errors().is_empty(),
        "{}: console errors {:?}",
        seen.url,
        seen.console_errors()
    );
}

const HOME_ROWS: &str =
    "Array.from(document.querySelectorAll('#collections tbody tr')).map(tr => ({
    id: tr.dataset.collection,
    title: tr.querySelector('.title').innerText,
    objects: tr.querySelector('.objects').innerText,
    release: tr.querySelector('.release').innerText,
    date: tr.querySelector('.date').innerText,
    url: tr.querySelector('.url a').href,
    changes: tr.querySelector('.changes a').getAttribute('href'),
}))";

const CHANGE_COUNTS: &str =
    "Object.fromEntries(Array.from(document.querySelectorAll('#counts tbody tr'))
    .map(tr => [tr.dataset.kind, Number(tr.querySelector('.objects').innerText)]))";

const SWAGGER_OPERATIONS: &str = "Array.from(document.querySelectorAll('.opblock')).map(b => ({
    method: b.querySelector('.opblock-summary-method').innerText.trim().toLowerCase(),
    path: b.querySelector('.opblock-summary-path').dataset.path,
}))";

#[tokio::test]
async fn the_home_page_and_the_api_docs_render_in_chromium() {
    // A fixed public URL: the screenshots do not change with the test's port.
    let public = "http://localhost:8000";
    let api = serve(ServerConfig {
        public_url: Some(public.to_owned()),
        ..ServerConfig::default()
    })
    .await;
    let browser = browser("home_and_api_docs").await;
    // Into target/ unless asked for the README's copies: a test run never rewrites tracked
    // files (TAXIWAY_SCREENSHOTS_DIR=docs/screenshots regenerates them).
    let screenshots = std::env::var_os("TAXIWAY_SCREENSHOTS_DIR")
        .map(std::path::PathBuf::from)
        .map_or_else(
            || repo_root().join("target/e2e-screenshots"),
            |dir| repo_root().join(dir),
        );
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut home = visit("home", format!("{}/", api.base), "#collections", HOME_ROWS);
    home.screenshot = Some(screenshots.join("home.png"));
    home.full_page = true;
    let mut docs = visit(
        "api-docs",
        format!("{}/api-docs", api.base),
        "#swagger-ui .opblock",
        SWAGGER_OPERATIONS,
    );
    docs.screenshot = Some(screenshots.join("api-docs.png"));
    let (from, to) = (bundle("ics-attack-17.1"), bundle("ics-attack-18.0"));
    let mut changes = visit(
        "changes",
        format!(
            "{}/changes?collection={ICS}&from={}&to={}",
            api.base, from.label, to.label
        ),
        "#counts",
        CHANGE_COUNTS,
    );
    changes.screenshot = Some(screenshots.join("changes.png"));
    let seen = browser
        .visit(&[home, docs, changes], Duration::from_secs(180))
        .await
        .unwrap();

    let home = &seen[0];
    assert_clean(home);
    let rows: BTreeMap<String, Value> = home
        .value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    let expected = latest_releases();
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (id, (objects, label, date)) in &expected {
        let row = &rows[id];
        assert_eq!(row["objects"], objects.to_string(), "{id}");
        assert_eq!(row["release"], *label, "{id}");
        assert_eq!(row["date"], *date, "{id}");
        assert_eq!(
            row["url"],
            format!("{public}/api/v21/collections/{id}/"),
            "{id}"
        );
        // The link to the changes from the release before the latest one.
        let mut labels: Vec<(i64, &str)> = bundles()
            .iter()
            .filter(|b| &b.collection_id == id)
            .map(|b| (b.release_timestamp, b.label.as_str()))
            .collect();
        labels.sort();
        let [.., (_, before), (_, latest)] = labels[..] else {
            panic!("{id}: fewer than two releases")
        };
        assert_eq!(
            row["changes"],
            format!("/changes?collection={id}&from={before}&to={latest}"),
            "{id}"
        );
    }

    let changes = &seen[2];
    assert_clean(changes);
    let want = crate::api_changes::expected(from, to);
    for (kind, ids) in &want {
        assert_eq!(changes.value[kind], ids.len(), "changes page: {kind}");
    }

    let docs = &seen[1];
    assert_clean(docs);
    let rendered: BTreeSet<(String, String)> = docs
        .value
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            (
                op["method"].as_str().unwrap().to_owned(),
                op["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Every route of the table is an operation on the page (GET at least).
    let documented: BTreeSet<(String, String)> = api::route_table("/api/v21")
        .into_iter()
        .map(|r| ("get".to_owned(), r.template))
        .collect();
    let missing: Vec<_> = documented.difference(&rendered).collect();
    assert!(missing.is_empty(), "not rendered: {missing:?}");
    for shot in ["home.png", "api-docs.png", "changes.png"] {
        let bytes = std::fs::read(screenshots.join(shot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
    api.stop().await.unwrap();
}

/// The page of the other origin: it fetches `collection`'s first objects from `api` with the
/// headers a TAXII client sends (If-None-Match makes the browser send a preflight) and shows
/// what it could read.
const CROSS_ORIGIN_PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>other site</title></head>
<body><pre id="result"></pre>
<script>
const query = new URLSearchParams(location.search);
const out = document.getElementById("result");
fetch(query.get("api") + "/api/v21/collections/" + query.get("collection") + "/objects/?limit=5", {
  headers: {"Accept": "application/taxii+json;version=2.1", "If-None-Match": "\"no-such-tag\""},
})
  .then(async (r) => {
    const body = await r.json();
    out.textContent = JSON.stringify({ok: true, status: r.status,
      first: r.headers.get("X-TAXII-Date-Added-First"), etag: r.headers.get("ETag"),
      ids: body.objects.map((o) => o.id)});
  })
  .catch((e) => { out.textContent = JSON.stringify({ok: false, error: String(e)}); })
  .finally(() => { out.dataset.done = "1"; });
</script></body></html>"#;

#[tokio::test]
async fn another_origin_reads_a_collection_through_cors_only_when_it_is_on() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let site = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { Html(CROSS_ORIGIN_PAGE) }),
    );
    let site_task = tokio::spawn(async move { axum::serve(listener, site).await });
    let on = serve(ServerConfig {
        cors_origins: vec![origin.clone()],
        ..ServerConfig::default()
    })
    .await;
    let off = serve(ServerConfig::default()).await;

    let browser = browser("cross_origin").await;
    let page = |name: &str, api: &Api| {
        visit(
            name,
            format!("{origin}/?api={}&collection={ICS}", api.base),
            "#result[data-done]",
            "JSON.parse(document.getElementById('result').textContent)",
        )
    };
    let seen = browser
        .visit(
            &[page("cors-on", &on), page("cors-off", &off)],
            Duration::from_secs(120),
        )
        .await
        .unwrap();

    // On: the page read the objects and the TAXII headers, as a direct request gets them.
    let read = &seen[0];
    assert_clean(read);
    let direct = on
        .get(&format!("/api/v21/collections/{ICS}/objects/?limit=5"))
        .await
        .unwrap();
    let ids: Vec<Value> = direct.json()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(read.value["ok"], true, "{:?}", read.value);
    assert_eq!(read.value["status"], 200);
    assert_eq!(read.value["ids"], Value::Array(ids));
    assert_eq!(
        read.value["first"],
        direct.header("x-taxii-date-added-first").unwrap()
    );
    assert_eq!(read.value["etag"], direct.header("etag").unwrap());
    let metrics = on.get("/metrics").await.unwrap().text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("taxiway_api_requests_total")
                && l.contains("\"OPTIONS\"")
                && l.contains("\"200\"")),
        "the browser sent a preflight and it was allowed"
    );

    // Off: the browser refuses the page the response, and says why in the console.
    let refused = &seen[1];
    assert!(refused.error.is_none(), "{:?}", refused.error);
    assert_eq!(refused.value["ok"], false, "{:?}", refused.value);
    assert!(
        refused.console_errors().iter().any(|e| e.contains("CORS")),
        "{:?}",
        refused.console
    );

    drop(browser);
    on.stop().await.unwrap();
    off.stop().await.unwrap();
    site_task.abort();
}
