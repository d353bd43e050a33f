//! The api suites' server without a database: real ATT&CK bundles turned into an in-memory store
//! the way ingest and the projector would (versions by `modified`, one date_added sequence per
//! collection, one release per bundle), and helpers to drive the router with `oneshot`.

#![allow(clippy::type_complexity)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde_json::Value;
use tower::ServiceExt;

use taxiway_tests::Deadline;
use taxiway_tests::api::Api;
use taxiway_tests::fixtures::Release;

use api::AppState;
use api::config::ServerConfig;
use api::refresh::refresh_once;
use api::store::memory::MemoryStore;
use api::store::{CollectionData, CollectionMeta, ReleaseRow, Store, VersionRow};

pub const ICS: &str = "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09";
pub const FILES: [&str; 5] = [
    "ics-attack-17.1",
    "ics-attack-18.0",
    "ics-attack-18.1",
    "mobile-attack-17.0",
    "mobile-attack-17.1",
];

/// One bundle file, parsed.
pub struct Bundle {
    pub name: &'static str,
    pub objects: Vec<Value>,
    pub collection_id: String,
    pub label: String,
    pub release_timestamp: i64,
}

pub fn micros(text: &str) -> i64 {
    schemas::Timestamp::parse(text).unwrap().as_micros()
}

/// The version rule: modified, else created, else 0.
pub fn version_of(object: &Value) -> i64 {
    object["modified"]
        .as_str()
        .or(object["created"].as_str())
        .map_or(0, micros)
}

pub fn bundles() -> &'static [Bundle] {
    static BUNDLES: OnceLock<Vec<Bundle>> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        FILES
            .iter()
            .map(|name| {
                let objects = Release::load(&format!("{name}.json.zst")).unwrap().objects;
                let collection = objects
                    .iter()
                    .find(|o| o["type"] == "x-mitre-collection")
                    .unwrap()
                    .clone();
                Bundle {
                    name,
                    collection_id: collection["id"].as_str().unwrap().to_owned(),
                    label: collection["x_mitre_version"].as_str().unwrap().to_owned(),
                    release_timestamp: micros(collection["modified"].as_str().unwrap()),
                    objects,
                }
            })
            .collect()
    })
}

/// Per collection, from the bundle files: the number of objects of its latest release (by the
/// release timestamp), the release's label and its date, as the home page shows them.
pub fn latest_releases() -> BTreeMap<String, (usize, String, String)> {
    let mut latest: BTreeMap<String, &Bundle> = BTreeMap::new();
    for b in bundles() {
        let entry = latest.entry(b.collection_id.clone()).or_insert(b);
        if b.release_timestamp > entry.release_timestamp {
            *entry = b;
        }
    }
    latest
        .into_iter()
        .map(|(id, b)| {
            let ids: BTreeSet<&str> = b
                .objects
                .iter()
                .map(|o| o["id"].as_str().unwrap())
                .collect();
            let collection = b
                .objects
                .iter()
                .find(|o| o["type"] == "x-mitre-collection")
                .unwrap();
            let date = collection["modified"].as_str().unwrap()[..10].to_owned();
            (id, (ids.len(), b.label.clone(), date))
        })
        .collect()
}

pub fn bundle(name: &str) -> &'static Bundle {
    bundles().iter().find(|b| b.name == name).unwrap()
}

/// Collection id of a domain ("ics" or "mobile").
pub fn collection_of(prefix: &str) -> String {
    bundles()
        .iter()
        .find(|b| b.name.starts_with(prefix))
        .unwrap()
        .collection_id
        .clone()
}

/// First date_added of every collection; each new version takes the next value (+1001 µs, so
/// values are not whole milliseconds and exercise the six-digit format).
pub const DATE_BASE: i64 = 1_763_000_000_000_000;

/// What ingest would publish for the five files, imported in order.
pub fn collections() -> Vec<CollectionData> {
    let mut by_id: BTreeMap<String, (CollectionData, BTreeMap<(String, i64), Value>, i64)> =
        BTreeMap::new();
    for b in bundles() {
        let (data, seen, next) = by_id.entry(b.collection_id.clone()).or_insert_with(|| {
            let c = b
                .objects
                .iter()
                .find(|o| o["type"] == "x-mitre-collection")
                .unwrap();
            (
                CollectionData {
                    meta: CollectionMeta {
                        id: b.collection_id.clone(),
                        title: c["name"].as_str().unwrap().to_owned(),
                        description: c["description"].as_str().map(str::to_owned),
                        alias: None,
                        media_types: vec![],
                        released: true,
                    },
                    revision: 1,
                    versions: vec![],
                    releases: vec![],
                },
                BTreeMap::new(),
                DATE_BASE,
            )
        });
        let mut members = Vec::new();
        for o in &b.objects {
            let id = o["id"].as_str().unwrap().to_owned();
            let version = version_of(o);
            // No content named: the newest content of the version, as for events written
            // before releases named their content.
            members.push((id.clone(), version, None));
            if seen.get(&(id.clone(), version)) == Some(o) {
                continue;
            }
            seen.insert((id.clone(), version), o.clone());
            *next += 1001;
            data.versions.push(VersionRow {
                object_id: id,
                version,
                version_text: schemas::Timestamp::from_micros(version).to_canonical(),
                stix_type: o["type"].as_str().unwrap().to_owned(),
                spec_version: o["spec_version"].as_str().unwrap_or("2.0").to_owned(),
                date_added: *next,
                object_json: Bytes::from(serde_json::to_string(o).unwrap()),
                content: None,
            });
        }
        data.releases.push(ReleaseRow {
            release_timestamp: b.release_timestamp,
            label: b.label.clone(),
            complete: true,
            members,
        });
    }
    by_id.into_values().map(|(d, _, _)| d).collect()
}

/// A memory store holding `collections`.
pub fn store_of(collections: impl IntoIterator<Item = CollectionData>) -> MemoryStore {
    let store = MemoryStore::new();
    for c in collections {
        store.put_collection(c);
    }
    store
}

/// The api over a memory store of `collections`, listening on 127.0.0.1 and ready.
pub async fn listening(
    config: ServerConfig,
    collections: impl IntoIterator<Item = CollectionData>,
) -> Api {
    let api = Api::serve_store(config, Arc::new(store_of(collections)))
        .await
        .unwrap();
    api.wait_ready(Deadline::after(Duration::from_secs(60)))
        .await
        .unwrap();
    api
}

/// A loaded server over the five files.
pub async fn server_with(
    config: ServerConfig,
    auth: Option<api::Auth>,
) -> (Router, AppState, MemoryStore) {
    let store = store_of(collections());
    let state = AppState::new(config, auth).unwrap();
    refresh(&state, &store).await;
    (api::app(state.clone()), state, store)
}

/// One poll of the refresher over `store`.
pub async fn refresh(state: &AppState, store: &MemoryStore) -> bool {
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    refresh_once(state, &shared).await.unwrap()
}

pub async fn server() -> (Router, AppState, MemoryStore) {
    server_with(ServerConfig::default(), None).await
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let (reply, body) = send_unchecked(app, request).await;
    Reply {
        body: body.unwrap(),
        ..reply
    }
}

/// As [`send`], but a body that fails mid-stream is returned as the error it ended with.
pub async fn send_unchecked(
    app: &Router,
    request: Request<Body>,
) -> (Reply, Result<Bytes, axum::Error>) {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
    (
        Reply {
            status,
            headers,
            body: Bytes::new(),
        },
        body,
    )
}

pub async fn get(app: &Router, uri: &str) -> Reply {
    send(
        app,
        Request::get(uri)
            .header("accept", "application/taxii+json;version=2.1")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// Walks every page of a listing, returning the items and the number of requests.
pub async fn walk(app: &Router, base: &str, items_key: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut uri = base.to_owned();
    let mut requests = 0;
    loop {
        let reply = get(app, &uri).await;
        requests += 1;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let json = reply.json();
        items.extend(json[items_key].as_array().unwrap().iter().cloned());
        if json["more"] == true {
            let sep = if base.contains('?') { '&' } else { '?' };
            uri = format!("{base}{sep}next={}", json["next"].as_str().unwrap());
        } else {
            return (items, requests);
        }
    }
}
