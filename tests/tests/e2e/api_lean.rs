//! The memory bound: a collection served lean (object JSON fetched from the store per response)
//! answers every query exactly as the same collection held in memory, byte for byte.
//!
//! Two servers over the same store, one with the default bound (everything held) and one with a
//! bound too small for any JSON; expected values are the full server's answers, which the other
//! suites check against the bundle files.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use crate::memory_server::*;
use api::AppState;
use api::config::ServerConfig;
use api::store::memory::MemoryStore;

/// A server config with this memory bound. Both servers of a pair sign cursors with one key,
/// as replicas behind a load balancer must: their `next` links are then the same bytes.
fn bounded(max_snapshot_bytes: usize) -> ServerConfig {
    ServerConfig {
        max_snapshot_bytes,
        cursor_key: Some(service::Secret("api-lean-pair".to_owned())),
        ..ServerConfig::default()
    }
}

/// A full and a lean server over one store.
async fn pair() -> ((Router, AppState), (Router, AppState, MemoryStore)) {
    let (full, full_state, _) =
        server_with(bounded(ServerConfig::default().max_snapshot_bytes), None).await;
    let (lean, lean_state, store) = server_with(bounded(0), None).await;
    for (id, s) in &lean_state.catalog().collections {
        assert!(s.is_lean(), "{id} is lean under a zero bound");
        assert!(
            s.versions.iter().all(|v| v.json.is_empty()),
            "{id}: no JSON held"
        );
    }
    for (id, s) in &full_state.catalog().collections {
        assert!(!s.is_lean(), "{id} is held under the default bound");
    }
    ((full, full_state), (lean, lean_state, store))
}

/// The same request to both servers: same status, headers and body bytes.
async fn same(full: &Router, lean: &Router, uri: &str) -> Reply {
    let a = get(full, uri).await;
    let b = get(lean, uri).await;
    assert_eq!(a.status, b.status, "{uri}");
    assert_eq!(a.headers, b.headers, "{uri}");
    assert!(a.body == b.body, "{uri}: bodies differ");
    a
}

/// Walks every page of `base` on both servers, comparing each; returns the pages walked.
async fn same_walk(full: &Router, lean: &Router, base: &str) -> usize {
    let mut uri = base.to_owned();
    let mut pages = 0;
    loop {
        let reply = same(full, lean, &uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        pages += 1;
        let json = reply.json();
        if json["more"] != true {
            return pages;
        }
        let sep = if base.contains('?') { '&' } else { '?' };
        uri = format!("{base}{sep}next={}", json["next"].as_str().unwrap());
    }
}

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn lean_collections_answer_every_query_byte_for_byte_like_held_ones() {
    let ((full, _), (lean, _, store)) = pair().await;
    let mobile = collection_of("mobile");
    let ics_object = bundle("ics-attack-18.1").objects[5]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mobile_object = bundle("mobile-attack-17.0").objects[7]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut uris = Vec::new();
    for root in [
        "",
        "/history",
        "/attack-18.0",
        "/attack-17.0",
        "/attack-17.1",
    ] {
        for (collection, object) in [(ICS, &ics_object), (mobile.as_str(), &mobile_object)] {
            let c = format!("/api/v21{root}/collections/{collection}");
            for query in [
                "",
                "?match[version]=all",
                "?match[version]=first",
                "?match[type]=relationship,malware",
                "?match[spec_version]=2.0",
                "?match[spec_version]=2.0,2.1&match[version]=all",
                "?added_after=2025-11-13T02:13:20.005005Z&match[version]=all",
                "?match[version]=2018-10-17T00:14:20.652Z,last",
                "?limit=3&match[type]=x-mitre-tactic",
            ] {
                uris.push(format!("{c}/objects/{query}"));
                uris.push(format!("{c}/manifest/{query}"));
            }
            uris.push(format!("{c}/objects/{object}/"));
            uris.push(format!("{c}/objects/{object}/?match[version]=all"));
            uris.push(format!("{c}/objects/{object}/versions/"));
            uris.push(format!(
                "{c}/objects/?match[id]={object},{ics_object}&match[version]=all"
            ));
        }
    }
    let before = store.fetch_counts();
    let mut objects_served = 0;
    for uri in &uris {
        let reply = same(&full, &lean, uri).await;
        if reply.status == StatusCode::OK && uri.contains("/objects/") && !uri.contains("versions")
        {
            objects_served += reply.json()["objects"].as_array().unwrap().len();
        }
    }
    assert!(objects_served > 10_000, "the queries served objects");
    let (calls, fetched) = store.fetch_counts();
    assert!(calls > before.0, "the lean server fetched from the store");
    assert_eq!(
        fetched - before.1,
        objects_served,
        "each object sent was fetched once, nothing else"
    );
}

#[tokio::test]
async fn lean_paging_with_limits_1_7_100_and_the_unlimited_stream_match_held() {
    let ((full, _), (lean, lean_state, _)) = pair().await;
    let mobile = collection_of("mobile");
    let history = format!("/api/v21/history/collections/{mobile}/objects/?match[version]=all");
    // Larger than many stream chunks: the unlimited answer is fetched piecewise.
    let whole = same(&full, &lean, &history).await;
    let total = whole.json()["objects"].as_array().unwrap().len();
    assert!(total > 1_000, "{total}");
    for limit in [7, 100] {
        let pages = same_walk(&full, &lean, &format!("{history}&limit={limit}")).await;
        assert_eq!(pages, total.div_ceil(limit), "limit {limit}");
    }
    let tactics = format!(
        "/api/v21/history/collections/{ICS}/objects/?match[version]=all&match[type]=x-mitre-tactic,x-mitre-matrix&limit=1"
    );
    let pages = same_walk(&full, &lean, &tactics).await;
    assert!(pages > 10, "{pages}");
    same_walk(
        &full,
        &lean,
        &format!("/api/v21/attack-17.0/collections/{mobile}/manifest/?limit=100"),
    )
    .await;
    same_walk(
        &full,
        &lean,
        &format!("/api/v21/collections/{ICS}/objects/?limit=1&match[type]=x-mitre-matrix"),
    )
    .await;

    // Conditional requests: the ETag is the held server's, and it is honoured.
    let reply = get(&lean, &history).await;
    let etag = reply.header("etag").unwrap().to_owned();
    let again = send(
        &lean,
        Request::get(&history)
            .header("accept", "application/taxii+json;version=2.1")
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    // What lean responses fetched is counted per collection, and lean collections are reported.
    let metrics = String::from_utf8(get(&lean, "/metrics").await.body.to_vec()).unwrap();
    assert_eq!(
        metric(
            &metrics,
            &format!("taxiway_api_collection_lean{{collection=\"{mobile}\"}} ")
        ),
        Some(1.0),
        "{metrics}"
    );
    let fetched = metric(
        &metrics,
        &format!("taxiway_api_store_fetched_objects_sum{{collection=\"{mobile}\"}} "),
    )
    .unwrap();
    assert!(fetched >= 3.0 * total as f64, "{fetched} objects counted");
    assert!(
        metric(
            &metrics,
            &format!("taxiway_api_store_fetched_bytes_sum{{collection=\"{mobile}\"}} ")
        )
        .unwrap()
            > fetched * 100.0
    );
    drop(lean_state);
}

#[tokio::test]
async fn the_collection_with_the_most_versions_goes_lean_first() {
    let (_, full_state, _) = server().await;
    let catalog = full_state.catalog();
    let total: usize = catalog.collections.values().map(|s| s.approx_bytes).sum();
    // One byte short of holding everything: exactly one collection must go lean, the larger.
    let (_, state, _) = server_with(bounded(total - 1), None).await;
    let mobile = collection_of("mobile");
    let count = |prefix: &str| {
        let mut keys = std::collections::BTreeSet::new();
        for b in bundles().iter().filter(|b| b.name.starts_with(prefix)) {
            for o in &b.objects {
                keys.insert((o["id"].as_str().unwrap().to_owned(), version_of(o)));
            }
        }
        keys.len()
    };
    let larger = if count("mobile") > count("ics") {
        mobile.clone()
    } else {
        ICS.to_owned()
    };
    let lean: Vec<String> = state
        .catalog()
        .collections
        .iter()
        .filter(|(_, s)| s.is_lean())
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(lean, vec![larger.clone()]);
    // Its fill stopped at the bound, after holding some chunks: none of them is kept.
    let catalog = state.catalog();
    let dropped = &catalog.collections[&larger];
    assert!(dropped.versions.len() > 1024, "more than one fill chunk");
    assert!(dropped.versions.iter().all(|v| v.json.is_empty()));
    let held: usize = state
        .catalog()
        .collections
        .values()
        .map(|s| s.approx_bytes)
        .sum();
    assert!(held < total, "{held} within the bound {}", total - 1);
}

#[tokio::test]
async fn a_store_failure_is_a_taxii_500_or_an_aborted_stream_never_a_panic() {
    let (lean, _, store) = server_with(bounded(0), None).await;
    let mobile = collection_of("mobile");
    let limited = format!("/api/v21/history/collections/{mobile}/objects/?limit=50");
    let whole = format!("/api/v21/history/collections/{mobile}/objects/?match[version]=all");

    store.fail_fetches_after(Some(0));
    for uri in [&limited, &whole] {
        let reply = get(&lean, uri).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/taxii+json;version=2.1")
        );
        let json: Value = reply.json();
        assert_eq!(json["http_status"], "500");
        assert!(json["error_id"].is_string());
    }
    // Manifests and versions need no object JSON: still served.
    let manifest = get(
        &lean,
        &format!("/api/v21/history/collections/{mobile}/manifest/?limit=5"),
    )
    .await;
    assert_eq!(manifest.status, StatusCode::OK);

    // The first chunk of a whole collection fetched, then the store fails: the response has
    // started, so the stream is cut short rather than ended as if complete.
    store.fail_fetches_after(Some(1));
    let (head, body) = send_unchecked(
        &lean,
        Request::get(&whole)
            .header("accept", "application/taxii+json;version=2.1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(body.is_err(), "aborted, not a truncated document");

    store.fail_fetches_after(None);
    let reply = get(&lean, &whole).await;
    assert_eq!(reply.status, StatusCode::OK);
    let metrics = String::from_utf8(get(&lean, "/metrics").await.body.to_vec()).unwrap();
    assert_eq!(
        metric(&metrics, "taxiway_api_store_fetch_errors_total "),
        Some(3.0),
        "{metrics}"
    );
}
