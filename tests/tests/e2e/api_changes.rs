//! The changes endpoint (`history/collections/{id}/changes/`) against a computation of its own
//! from the bundle files, for every pair of consecutive shipped releases; and those figures
//! against the data README's account of the changes between releases.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::memory_server::*;
use api::config::ServerConfig;
use api::store::{CollectionData, CollectionMeta, ReleaseRow, VersionRow};

/// One release of a collection for [`collection_data`].
pub(crate) struct File<'a> {
    pub label: String,
    pub timestamp: i64,
    pub objects: &'a [Value],
}

/// A collection as ingest and the projector store it: a version MITRE re-issued with other
/// content keeps every content, the newest one unnamed and each older one under its digest,
/// and each release names the content it shipped. `files` in import order.
pub(crate) fn collection_data(meta: CollectionMeta, files: &[File<'_>]) -> CollectionData {
    // (id, version) → its contents in import order, and the type of the object.
    let mut contents: BTreeMap<(String, i64), Vec<&Value>> = BTreeMap::new();
    for f in files {
        for o in f.objects {
            let list = contents
                .entry((o["id"].as_str().unwrap().to_owned(), version_of(o)))
                .or_default();
            if !list.contains(&o) {
                list.push(o);
            }
        }
    }
    let digest =
        |o: &Value| -> [u8; 32] { Sha256::digest(serde_json::to_string(o).unwrap()).into() };
    let mut versions = Vec::new();
    let mut date_added = DATE_BASE;
    for ((id, version), list) in &contents {
        for (n, o) in list.iter().enumerate() {
            date_added += 1001;
            let newest = n + 1 == list.len();
            versions.push(VersionRow {
                object_id: id.clone(),
                version: *version,
                version_text: schemas::Timestamp::from_micros(*version).to_canonical(),
                stix_type: o["type"].as_str().unwrap().to_owned(),
                spec_version: o["spec_version"].as_str().unwrap_or("2.0").to_owned(),
                date_added,
                object_json: Bytes::from(serde_json::to_string(o).unwrap()),
                content: (!newest).then(|| digest(o)),
            });
        }
    }
    let releases = files
        .iter()
        .map(|f| ReleaseRow {
            release_timestamp: f.timestamp,
            label: f.label.clone(),
            complete: true,
            members: f
                .objects
                .iter()
                .map(|o| {
                    let id = o["id"].as_str().unwrap().to_owned();
                    (id, version_of(o), Some(digest(o)))
                })
                .collect(),
        })
        .collect();
    CollectionData {
        meta,
        revision: 1,
        versions,
        releases,
    }
}

/// The five shipped releases, re-issued contents included.
pub(crate) fn collections_with_contents() -> Vec<CollectionData> {
    collections()
        .into_iter()
        .map(|c| {
            let files: Vec<File<'_>> = bundles()
                .iter()
                .filter(|b| b.collection_id == c.meta.id)
                .map(|b| File {
                    label: b.label.clone(),
                    timestamp: b.release_timestamp,
                    objects: &b.objects,
                })
                .collect();
            collection_data(c.meta, &files)
        })
        .collect()
}

/// The expected changes between two bundle files: kind → set of object ids.
pub(crate) fn expected(from: &Bundle, to: &Bundle) -> BTreeMap<&'static str, BTreeSet<String>> {
    expected_between(&from.objects, &to.objects)
}

/// The expected changes between two lists of objects: kind → set of object ids.
fn expected_between(from: &[Value], to: &[Value]) -> BTreeMap<&'static str, BTreeSet<String>> {
    let index = |objects: &[Value]| -> BTreeMap<String, Value> {
        objects
            .iter()
            .map(|o| (o["id"].as_str().unwrap().to_owned(), o.clone()))
            .collect()
    };
    let (before, after) = (index(from), index(to));
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = [
        "added",
        "removed",
        "new_version",
        "reissued",
        "deprecated",
        "revoked",
    ]
    .into_iter()
    .map(|k| (k, BTreeSet::new()))
    .collect();
    for (id, now) in &after {
        let Some(then) = before.get(id) else {
            out.get_mut("added").unwrap().insert(id.clone());
            continue;
        };
        if then == now {
            continue;
        }
        let kind = if version_of(then) == version_of(now) {
            "reissued"
        } else {
            "new_version"
        };
        out.get_mut(kind).unwrap().insert(id.clone());
        for (flag, kind) in [("x_mitre_deprecated", "deprecated"), ("revoked", "revoked")] {
            if now[flag] == true && then[flag] != true {
                out.get_mut(kind).unwrap().insert(id.clone());
            }
        }
    }
    for id in before.keys() {
        if !after.contains_key(id) {
            out.get_mut("removed").unwrap().insert(id.clone());
        }
    }
    out
}

/// The ids the endpoint listed under `kind`, checking each is grouped under its own type.
fn served(body: &Value, kind: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (stix_type, list) in body["changes"][kind].as_object().unwrap() {
        for change in list.as_array().unwrap() {
            let id = change["id"].as_str().unwrap();
            assert!(id.starts_with(&format!("{stix_type}--")), "{kind}: {id}");
            assert!(ids.insert(id.to_owned()), "{kind}: {id} twice");
        }
    }
    ids
}

/// Consecutive releases of each collection, oldest first.
fn pairs() -> Vec<(&'static Bundle, &'static Bundle)> {
    let mut by_collection: BTreeMap<&str, Vec<&Bundle>> = BTreeMap::new();
    for b in bundles() {
        by_collection.entry(&b.collection_id).or_default().push(b);
    }
    by_collection
        .into_values()
        .flat_map(|mut files| {
            files.sort_by_key(|b| b.release_timestamp);
            files.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>()
        })
        .collect()
}

async fn server_with_contents() -> axum::Router {
    let store = store_of(collections_with_contents());
    let state = api::AppState::new(ServerConfig::default(), None).unwrap();
    refresh(&state, &store).await;
    api::app(state)
}

#[tokio::test]
async fn changes_between_consecutive_releases_are_what_the_files_say() {
    let app = server_with_contents().await;
    let pairs = pairs();
    assert_eq!(pairs.len(), 3, "ICS 17.1→18.0→18.1, Mobile 17.0→17.1");
    for (from, to) in pairs {
        let uri = format!(
            "/api/v21/history/collections/{}/changes/?from={}&to={}",
            from.collection_id, from.label, to.label
        );
        let reply = get(&app, &uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {:?}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body = reply.json();
        let want = expected(from, to);
        for (kind, ids) in &want {
            assert_eq!(&served(&body, kind), ids, "{uri}: {kind}");
            assert_eq!(body["counts"][kind], ids.len(), "{uri}: {kind}");
        }
        // The same with the defaults: `to` the latest release, `from` the one before it.
        if to.release_timestamp
            == bundles()
                .iter()
                .filter(|b| b.collection_id == to.collection_id)
                .map(|b| b.release_timestamp)
                .max()
                .unwrap()
        {
            let plain = format!("/api/v21/history/collections/{}/changes/", to.collection_id);
            assert_eq!(get(&app, &plain).await.json(), body, "{plain}");
        }
    }
}

#[tokio::test]
async fn the_figures_are_the_data_readmes() {
    let figures: BTreeMap<(&str, &str), Vec<(&str, usize)>> = BTreeMap::from([
        (
            ("17.1", "18.0"),
            vec![
                ("new_version", 77),
                ("added", 413),
                ("removed", 238),
                ("reissued", 70),
            ],
        ),
        (("18.0", "18.1"), vec![("new_version", 28)]),
        (
            ("17.0", "17.1"),
            vec![("new_version", 561), ("removed", 2), ("reissued", 1329)],
        ),
    ]);
    for (from, to) in pairs() {
        let want = expected(from, to);
        for (kind, count) in &figures[&(from.label.as_str(), to.label.as_str())] {
            assert_eq!(
                want[kind].len(),
                *count,
                "{} → {}: {kind}",
                from.name,
                to.name
            );
        }
    }
}

#[tokio::test]
async fn technique_changes_name_their_attack_id_and_changed_fields() {
    let app = server_with_contents().await;
    let uri = format!("/api/v21/history/collections/{ICS}/changes/?from=17.1&to=18.0");
    let body = get(&app, &uri).await.json();
    let (from, to) = (bundle("ics-attack-17.1"), bundle("ics-attack-18.0"));
    let find = |b: &Bundle, id: &str| {
        b.objects
            .iter()
            .find(|o| o["id"] == id)
            .unwrap()
            .as_object()
            .unwrap()
            .clone()
    };
    let techniques = body["changes"]["new_version"]["attack-pattern"]
        .as_array()
        .unwrap();
    assert!(!techniques.is_empty());
    for change in techniques {
        let id = change["id"].as_str().unwrap();
        let (then, now) = (find(from, id), find(to, id));
        // ATT&CK puts its own id first among an object's external references.
        let attack_id = now["external_references"][0]["external_id"].clone();
        assert!(attack_id.as_str().unwrap().starts_with('T'), "{id}");
        assert_eq!(change["attack_id"], attack_id, "{id}");
        assert_eq!(change["name"], now["name"], "{id}");
        let mut fields: Vec<&String> = then
            .keys()
            .chain(now.keys())
            .filter(|k| then.get(*k) != now.get(*k))
            .collect();
        fields.sort();
        fields.dedup();
        assert_eq!(change["fields"], serde_json::json!(fields), "{id}");
    }
}

#[tokio::test]
async fn changes_are_a_history_root_extension_with_checked_parameters() {
    let app = server_with_contents().await;
    for (uri, status) in [
        (
            format!("/api/v21/collections/{ICS}/changes/"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v21/attack-18.1/collections/{ICS}/changes/"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v21/history/collections/{ICS}/changes/?from=9.9"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v21/history/collections/{ICS}/changes/?since=18.0"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v21/history/collections/{ICS}/changes/?to=17.1"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let reply = get(&app, &uri).await;
        assert_eq!(reply.status, status, "{uri}");
        assert!(reply.json()["http_status"].is_string(), "{uri}");
    }
}

/// Enterprise, from the STIX 2.0 releases only the shared data has (15.1, 18.0, 18.1): the
/// endpoint against the files for each consecutive pair.
#[tokio::test]
async fn enterprise_changes_between_consecutive_releases_are_what_the_files_say() {
    let labels = ["15.1", "18.0", "18.1"];
    let mut releases = Vec::new();
    for label in labels {
        let name = format!("stix-2.0/enterprise-attack-{label}.json.zst");
        if taxiway_tests::fixtures::shared_only(&name).is_none() {
            return;
        }
        releases.push(taxiway_tests::fixtures::Release::load(&name).unwrap());
    }
    // STIX 2.0 bundles have no collection object: the id is Enterprise's in the 2.1 files.
    let id = "x-mitre-collection--1f5f1533-f617-4ca8-9ab4-6a02367fa019";
    let files: Vec<File<'_>> = labels
        .iter()
        .zip(&releases)
        .enumerate()
        .map(|(n, (label, r))| File {
            label: (*label).to_owned(),
            timestamp: DATE_BASE + n as i64,
            objects: &r.objects,
        })
        .collect();
    let meta = CollectionMeta {
        id: id.to_owned(),
        title: "Enterprise ATT&CK".to_owned(),
        released: true,
        ..CollectionMeta::default()
    };
    let store = store_of([collection_data(meta, &files)]);
    let state = api::AppState::new(ServerConfig::default(), None).unwrap();
    refresh(&state, &store).await;
    let app = api::app(state);
    for pair in files.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        let uri = format!(
            "/api/v21/history/collections/{id}/changes/?from={}&to={}",
            from.label, to.label
        );
        let reply = get(&app, &uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        let body = reply.json();
        let want = expected_between(from.objects, to.objects);
        assert!(want["new_version"].len() > 100, "{uri}: a real release");
        for (kind, ids) in &want {
            assert_eq!(&served(&body, kind), ids, "{uri}: {kind}");
            assert_eq!(body["counts"][kind], ids.len(), "{uri}: {kind}");
        }
    }
}
