//! Handler tests of conditional requests, compression and its cache, and the operational
//! endpoints, over an in-memory store built from real ATT&CK bundles (no database).
//!
//! Expected values are computed here from the bundle files, not from the code under test.

use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use crate::api_handlers_queries::{assert_taxii_error, newer_version};
use crate::memory_server::*;
use api::config::ServerConfig;

#[tokio::test]
async fn etag_and_if_none_match_give_304() {
    let (app, _, _) = server().await;
    for uri in [
        format!("/api/v21/collections/{ICS}/objects/?limit=3"),
        "/taxii2/".to_owned(),
        "/api/v21/collections/".to_owned(),
    ] {
        let first = get(&app, &uri).await;
        let tag = first.header("etag").unwrap().to_owned();
        let again = send(
            &app,
            Request::get(&uri)
                .header("if-none-match", &tag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{uri}");
        assert!(again.body.is_empty());
        let other = send(
            &app,
            Request::get(&uri)
                .header("if-none-match", "W/\"0\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(other.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn compression_is_negotiated() {
    let (app, _, _) = server().await;
    let uri = format!("/api/v21/collections/{ICS}/objects/");
    let plain = get(&app, &uri).await.body;
    for encoding in ["gzip", "zstd", "br"] {
        let reply = send(
            &app,
            Request::get(&uri)
                .header("accept-encoding", encoding)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.header("content-encoding"), Some(encoding));
        assert!(reply.body.len() < plain.len() / 3, "{encoding} compresses");
        let decoded = match encoding {
            "gzip" => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&reply.body[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            "zstd" => zstd::decode_all(&reply.body[..]).unwrap(),
            _ => continue,
        };
        assert_eq!(decoded, plain);
    }
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(body).unwrap(),
        "br" => {
            brotli_decompressor::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        other => panic!("unexpected encoding {other}"),
    }
    out
}

async fn get_encoded(app: &axum::Router, uri: &str, encoding: &str) -> Reply {
    send(
        app,
        Request::get(uri)
            .header("accept-encoding", encoding)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

fn compressed_served(state: &api::AppState, encoding: &str, outcome: &str) -> u64 {
    state
        .metrics
        .compressed_cache
        .with_label_values(&[encoding, outcome])
        .get()
}

#[tokio::test]
async fn whole_collections_are_compressed_once_per_revision_and_encoding() {
    let (app, state, store) = server().await;
    let uri = format!("/api/v21/history/collections/{ICS}/objects/?match[version]=all");
    let plain = get(&app, &uri).await.body;
    for encoding in ["gzip", "br", "zstd"] {
        let first = get_encoded(&app, &uri, encoding).await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(first.header("content-encoding"), Some(encoding));
        assert_eq!(first.header("vary"), Some("accept-encoding"));
        assert_eq!(decode(encoding, &first.body), plain, "{encoding}");
        assert_eq!(compressed_served(&state, encoding, "miss"), 1, "{encoding}");
        let again = get_encoded(&app, &uri, encoding).await;
        assert_eq!(again.body, first.body, "{encoding}: the kept bytes");
        assert_eq!(compressed_served(&state, encoding, "hit"), 1, "{encoding}");
    }
    // Python's requests sends "gzip, deflate": gzip it is, from the cache.
    let requests = get_encoded(&app, &uri, "gzip, deflate").await;
    assert_eq!(requests.header("content-encoding"), Some("gzip"));
    assert_eq!(compressed_served(&state, "gzip", "hit"), 2);

    // Pages are compressed per response, never cached.
    let page = get_encoded(&app, &format!("{uri}&limit=100"), "gzip").await;
    assert_eq!(page.header("content-encoding"), Some("gzip"));
    assert_eq!(
        compressed_served(&state, "gzip", "miss") + compressed_served(&state, "gzip", "hit"),
        3
    );

    // A new revision is a new body: the new version is in it.
    let o = &bundle("ics-attack-18.1").objects[3];
    let (row, _) = newer_version(o, 1_000, DATE_BASE + 20_000_000_000, |newer| {
        newer["name"] = Value::String("renamed for the compression test".into());
    });
    store.add_versions(ICS, vec![row]);
    assert!(refresh(&state, &store).await);
    let plain = get(&app, &uri).await.body;
    let reply = get_encoded(&app, &uri, "zstd").await;
    assert_eq!(decode("zstd", &reply.body), plain);
    assert!(String::from_utf8_lossy(&plain).contains("renamed for the compression test"));
    assert_eq!(compressed_served(&state, "zstd", "miss"), 2);
}

#[tokio::test]
async fn without_the_compressed_cache_whole_collections_are_still_compressed() {
    let config = ServerConfig {
        compressed_cache_bytes: 0,
        ..ServerConfig::default()
    };
    let (app, state, _) = server_with(config, None).await;
    let uri = format!("/api/v21/collections/{ICS}/objects/");
    let plain = get(&app, &uri).await.body;
    for encoding in ["gzip", "br", "zstd"] {
        let reply = get_encoded(&app, &uri, encoding).await;
        assert_eq!(reply.header("content-encoding"), Some(encoding));
        assert_eq!(decode(encoding, &reply.body), plain, "{encoding}");
        assert_eq!(compressed_served(&state, encoding, "miss"), 0);
    }
}

#[tokio::test]
async fn operational_endpoints() {
    let (app, _, store) = server().await;
    assert_eq!(
        get(&app, "/health/ping").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
    // refresh_once does not record polls (the refresher loop does): not ready yet.
    assert_eq!(
        get(&app, "/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    get(
        &app,
        &format!("/api/v21/collections/{ICS}/objects/?limit=1"),
    )
    .await;
    let metrics = String::from_utf8(get(&app, "/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"route="/api/v21/collections/{id}/objects/""#),
        "{metrics}"
    );
    assert!(
        metrics.contains("taxiway_api_collection_revision{collection="),
        "{metrics}"
    );
    assert!(metrics.contains("taxiway_api_result_cache_total"));
    drop(store);
}

#[tokio::test]
async fn readiness_follows_the_refresher() {
    let store = store_of(collections());
    let state = api::AppState::new(
        ServerConfig {
            poll_interval: std::time::Duration::from_millis(20),
            ..ServerConfig::default()
        },
        None,
    )
    .unwrap();
    let app = api::app(state.clone());
    assert_taxii_error(
        &get(&app, "/taxii2/").await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(api::refresh::run(
        state.clone(),
        std::sync::Arc::new(store.clone()),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(&app, "/readyz").await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(get(&app, "/taxii2/").await.status, StatusCode::OK);
    shutdown.cancel();
    task.await.unwrap();
}
