//! The TAXII API over the real pipeline (bundles → ingest → Kafka → projector → Cassandra → api →
//! HTTP): replicas that start late or hold little in memory, and per-collection access rights.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use projector::config::Command;
use reqwest::StatusCode;
use serde_json::Value;

use crate::api_pipeline_roots::{
    ICS_FILES, MOBILE_FILES, all_objects, import, label_of, load, pipeline,
};
use taxiway_tests::Deadline;
use taxiway_tests::api::{Api, Expected, TAXII, check_objects, check_page_headers, items};
use taxiway_tests::fixtures::Release;
use taxiway_tests::projection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_replica_serves_quickly_and_a_rebuild_is_picked_up() {
    let (topics, control, projector, api) = pipeline("api_replica", &ICS_FILES[..1]).await;
    let ics = load(&ICS_FILES);
    let ics_id = ics[0].collection_id();
    let path = format!("/api/v21/collections/{ics_id}/objects/");
    let first = api.get(&path).await.unwrap();
    assert_eq!(first.status, StatusCode::OK);

    // A replica started after the data is there becomes ready and serves the same. How fast is
    // printed (about a second here); the deadline only bounds a hang, with room for a CI node
    // whose Cassandra once took over 10 s for one schema change.
    let started = Instant::now();
    let replica = Api::start(&control).await.unwrap();
    replica
        .wait_ready(Deadline::after(Duration::from_secs(60)))
        .await
        .unwrap();
    let ready_after = started.elapsed();
    let second = replica.get(&path).await.unwrap();
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.json(), first.json());
    println!("replica ready after {ready_after:?}");
    replica.stop().await.unwrap();

    // Rebuild into generation 2, drop generation 1, then import 18.0: the running API follows
    // the switch and serves the new release from the new generation.
    projection::command(&topics, &control, Command::Rebuild)
        .await
        .unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    while api.generation().await.unwrap() != Some(2) {
        assert!(
            !deadline.passed(),
            "API did not follow the generation switch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Deadline::after(Duration::from_secs(60));
    while projector.metrics.active_generation.get() != 2 {
        assert!(!deadline.passed(), "run did not follow the switch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    projection::command(&topics, &control, Command::DropGeneration { generation: 1 })
        .await
        .unwrap();
    let after_switch = api.get(&path).await.unwrap();
    assert_eq!(after_switch.json(), first.json());
    let revisions = import(&topics, &ICS_FILES[1..2]).await;
    api.wait_for_revisions(&revisions, Deadline::after(Duration::from_secs(300)))
        .await
        .unwrap();
    let history = Expected::new(vec![&ics[0], &ics[1]]).history();
    let served = all_objects(&api, &path).await;
    check_objects(&path, &served, &ics[1].versions(), &history).unwrap();
    api.stop().await.unwrap();
    projector.stop().await.unwrap();
}

/// A served listing's objects, keyed by (id, version), checked to be JSON-equal to the files.
fn served_equals_files(
    what: &str,
    served: &[Value],
    expected: &BTreeSet<(String, String)>,
    history: &BTreeMap<(String, String), &Value>,
) {
    check_objects(what, served, expected, history).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_tiny_memory_bound_serves_every_object_from_cql() {
    let mut names = ICS_FILES.to_vec();
    names.extend(MOBILE_FILES);
    let (_topics, control, projector, held) = pipeline("api_lean", &names).await;
    let ics = load(&ICS_FILES);
    let mobile = load(&MOBILE_FILES);
    let (ics_id, mobile_id) = (ics[0].collection_id(), mobile[0].collection_id());
    let ics_history = Expected::new(ics.iter().collect()).history();
    let mobile_history = Expected::new(mobile.iter().collect()).history();
    let revisions = held.loaded_revisions().await.unwrap();

    // One byte: no collection's JSON fits, both are served lean.
    let mut config = Api::config(&control);
    config.server.max_snapshot_bytes = 1;
    let lean = Api::start_with(config).await.unwrap();
    lean.wait_for_revisions(&revisions, Deadline::after(Duration::from_secs(120)))
        .await
        .unwrap();
    let metrics = lean.get("/metrics").await.unwrap().text();
    for id in [&ics_id, &mobile_id] {
        assert!(
            metrics.contains(&format!(
                "taxiway_api_collection_lean{{collection=\"{id}\"}} 1"
            )),
            "{id} is lean: {metrics}"
        );
    }
    let metrics = held.get("/metrics").await.unwrap().text();
    assert!(
        metrics.contains(&format!(
            "taxiway_api_collection_lean{{collection=\"{ics_id}\"}} 0"
        )),
        "the default bound holds everything: {metrics}"
    );

    let mut served_total = 0;
    for (id, files, history) in [
        (&ics_id, &ics, &ics_history),
        (&mobile_id, &mobile, &mobile_history),
    ] {
        // Whole collections, streamed without a limit: default root, every pinned root, history.
        let path = format!("/api/v21/collections/{id}/objects/");
        let served = all_objects(&lean, &path).await;
        served_equals_files(&path, &served, &files.last().unwrap().versions(), history);
        served_total += served.len();
        for f in files.iter() {
            let path = format!("/api/v21/attack-{}/collections/{id}/objects/", label_of(f));
            let served = all_objects(&lean, &path).await;
            served_equals_files(&path, &served, &f.versions(), &f.by_version());
            served_total += served.len();
        }
        let path = format!("/api/v21/history/collections/{id}/objects/?match[version]=all");
        let served = all_objects(&lean, &path).await;
        let keys: BTreeSet<_> = history.keys().cloned().collect();
        served_equals_files(&path, &served, &keys, history);
        served_total += served.len();
        // And the same byte for byte as the replica holding everything.
        let from_held = held.get(&path).await.unwrap();
        let from_lean = lean.get(&path).await.unwrap();
        assert!(
            from_held.body == from_lean.body,
            "{path}: lean and held differ"
        );
        assert_eq!(from_held.header("etag"), from_lean.header("etag"), "{path}");

        // Paged: every version once, across pages of 100 and of 7.
        for limit in [100, 7] {
            let base = format!(
                "/api/v21/history/collections/{id}/objects/?match[version]=all&limit={limit}"
            );
            let pages = lean.walk(&base, "objects").await.unwrap();
            check_page_headers(&base, &pages).unwrap();
            let served = items(&pages);
            served_equals_files(&base, &served, &keys, history);
            served_total += served.len();
            if limit == 7 {
                break;
            }
        }
        // One object's versions through the object endpoint.
        let (object, _) = keys.iter().next().unwrap();
        let path =
            format!("/api/v21/history/collections/{id}/objects/{object}/?match[version]=all");
        let one = lean.page(&path, "objects").await.unwrap();
        let expected: BTreeSet<_> = keys.iter().filter(|(o, _)| o == object).cloned().collect();
        served_equals_files(&path, &one.items, &expected, history);
        served_total += one.items.len();
    }

    // Every object sent was fetched from CQL and counted.
    let metrics = lean.get("/metrics").await.unwrap().text();
    let fetched: f64 = [&ics_id, &mobile_id]
        .iter()
        .filter_map(|id| {
            let prefix = format!("taxiway_api_store_fetched_objects_sum{{collection=\"{id}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .sum();
    assert!(
        fetched >= served_total as f64,
        "{fetched} fetched < {served_total} served"
    );

    lean.stop().await.unwrap();
    held.stop().await.unwrap();
    projector.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_allows_and_denies_per_collection_through_the_real_stack() {
    use base64::Engine;
    use sha2::{Digest, Sha256};

    let names = [ICS_FILES[2], MOBILE_FILES[1]];
    let (_topics, control, projector, open) = pipeline("api_auth", &names).await;
    let (ics, mobile) = (
        Release::load(ICS_FILES[2]).unwrap(),
        Release::load(MOBILE_FILES[1]).unwrap(),
    );
    let (ics_id, mobile_id) = (ics.collection_id(), mobile.collection_id());
    let revisions = open.loaded_revisions().await.unwrap();
    open.stop().await.unwrap();

    // A token that reads ICS only, a user that reads Mobile only, no anonymous rights.
    let token = taxiway_tests::unique_name("token");
    let password = taxiway_tests::unique_name("password");
    let file = std::env::temp_dir().join(format!("{}.json", taxiway_tests::unique_name("auth")));
    let sha = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    std::fs::write(
        &file,
        serde_json::json!({
            "principals": [
                { "name": "ci", "token_sha256": sha(&token), "collections": [ics_id] },
                { "name": "alice", "username": "alice",
                  "password_hash": api::password::hash(password.as_bytes()).unwrap(),
                  "collections": [mobile_id] }
            ]
        })
        .to_string(),
    )
    .unwrap();
    let mut config = Api::config(&control);
    config.auth_file = Some(file.clone());
    let api = Api::start_with(config).await.unwrap();
    api.wait_for_revisions(&revisions, Deadline::after(Duration::from_secs(120)))
        .await
        .unwrap();
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let bearer = format!("Bearer {token}");
    let alice = basic("alice", &password);
    let objects = |id: &str| format!("/api/v21/collections/{id}/objects/");

    // Allowed: each principal reads its collection, and gets exactly the release.
    for (authorization, id, release) in [(&bearer, &ics_id, &ics), (&alice, &mobile_id, &mobile)] {
        let path = objects(id);
        let reply = api
            .get_with(&path, &[("authorization", authorization)])
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        let served = reply.json()["objects"].as_array().unwrap().clone();
        check_objects(&path, &served, &release.versions(), &release.by_version()).unwrap();
    }
    // Forbidden: the other collection, with a TAXII body.
    for (authorization, id) in [(&bearer, &mobile_id), (&alice, &ics_id)] {
        for path in [objects(id), format!("/api/v21/collections/{id}/manifest/")] {
            let reply = api
                .get_with(&path, &[("authorization", authorization)])
                .await
                .unwrap();
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
            assert_eq!(reply.header("content-type"), Some(TAXII));
            assert_eq!(reply.json()["http_status"], "403");
        }
    }
    // Unauthorized: wrong token, wrong password, unknown user, no credentials at all.
    let wrong_token = format!("Bearer {token}x");
    let wrong_password = basic("alice", "not-the-password");
    let unknown_user = basic("mallory", &password);
    for authorization in [
        Some(wrong_token.as_str()),
        Some(wrong_password.as_str()),
        Some(unknown_user.as_str()),
        None,
    ] {
        for id in [&ics_id, &mobile_id] {
            let path = objects(id);
            let headers: Vec<(&str, &str)> = authorization
                .map(|a| ("authorization", a))
                .into_iter()
                .collect();
            let reply = api.get_with(&path, &headers).await.unwrap();
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{path} with {authorization:?}"
            );
            assert_eq!(reply.json()["http_status"], "401");
            assert!(reply.header("www-authenticate").is_some());
        }
    }
    // Listings show every collection, can_read as the caller may.
    for (authorization, readable) in [(&bearer, &ics_id), (&alice, &mobile_id)] {
        let reply = api
            .get_with("/api/v21/collections/", &[("authorization", authorization)])
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        let listed: BTreeMap<String, bool> = reply.json()["collections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["can_read"].as_bool().unwrap(),
                )
            })
            .collect();
        let expected: BTreeMap<String, bool> = [&ics_id, &mobile_id]
            .into_iter()
            .map(|id| (id.clone(), id == readable))
            .collect();
        assert_eq!(listed, expected);
    }
    // Operational endpoints stay open.
    assert_eq!(api.get("/healthz").await.unwrap().status, StatusCode::OK);

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
    let _ = std::fs::remove_file(&file);
}
