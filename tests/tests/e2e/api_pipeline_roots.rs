//! The TAXII API over the real pipeline (bundles → ingest → Kafka → projector → Cassandra → api →
//! HTTP): every root serves exactly its releases, paging during an import, and errors, caching
//! and compression through the real stack.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use futures::StreamExt;
use ingest::config::ImportConfig;
use reqwest::StatusCode;
use serde_json::Value;

use taxiway_tests::Deadline;
use taxiway_tests::api::{
    Api, Expected, TAXII, check_objects, check_page_headers, items, key_of, manifest_key, micros,
    serve_projected,
};
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

pub(crate) const ICS_FILES: [&str; 3] = [
    "ics-attack-17.1.json.zst",
    "ics-attack-18.0.json.zst",
    "ics-attack-18.1.json.zst",
];
pub(crate) const MOBILE_FILES: [&str; 2] =
    ["mobile-attack-17.0.json.zst", "mobile-attack-17.1.json.zst"];

pub(crate) fn load(names: &[&str]) -> Vec<Release> {
    names.iter().map(|n| Release::load(n).unwrap()).collect()
}

pub(crate) fn label_of(release: &Release) -> String {
    release.collection().unwrap()["x_mitre_version"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Imports `files` in order on `topics`, returning the revisions they lead to.
pub(crate) async fn import(topics: &Topics, files: &[&str]) -> BTreeMap<String, i64> {
    for f in files {
        let path = fixtures::path(f);
        topics.ingest(ImportConfig::new([&path])).await.unwrap();
    }
    let events = topics.events().await.unwrap();
    projection::final_revisions(events.iter().map(|(_, e)| e))
}

/// Imports `files`, runs the projector until they are projected, and starts an API replica that
/// has loaded them.
pub(crate) async fn pipeline(
    prefix: &str,
    files: &[&str],
) -> (Topics, String, projection::Running, Api) {
    let topics = Topics::new(prefix);
    let expected = import(&topics, files).await;
    let (control, projector, api) = serve_projected(&topics, prefix, &expected).await.unwrap();
    (topics, control, projector, api)
}

/// Served objects without a limit: one response, no `more` key.
pub(crate) async fn all_objects(api: &Api, path: &str) -> Vec<Value> {
    let page = api.page(path, "objects").await.unwrap();
    assert_eq!(page.more, None, "{path}: no limit → no more key");
    assert_eq!(page.content_type.as_deref(), Some(TAXII));
    check_page_headers(path, std::slice::from_ref(&page)).unwrap();
    page.items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_releases_are_served_exactly_by_every_root() {
    let mut names = ICS_FILES.to_vec();
    names.extend(MOBILE_FILES);
    let (_topics, _control, projector, api) = pipeline("api_full", &names).await;
    let ics = load(&ICS_FILES);
    let mobile = load(&MOBILE_FILES);
    let (ics_id, mobile_id) = (ics[0].collection_id(), mobile[0].collection_id());
    let ics_expected = Expected::new(ics.iter().collect());
    let mobile_expected = Expected::new(mobile.iter().collect());
    let (ics_history, mobile_history) = (ics_expected.history(), mobile_expected.history());
    // The fixture is what the suite claims: Mobile 17.1 re-issues 1,329 relationships.
    let reissued = mobile_expected.reissued();
    assert_eq!(reissued.len(), 1329);
    assert!(
        reissued
            .iter()
            .all(|(id, _)| id.starts_with("relationship--"))
    );

    // Discovery: the default root, one pinned root per release label, the history root.
    let reply = api.get("/taxii2/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some(TAXII));
    let discovery = reply.json();
    assert_eq!(discovery["default"], "/api/v21/");
    let roots: BTreeSet<String> = discovery["api_roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let mut expected_roots: BTreeSet<String> = ics
        .iter()
        .chain(&mobile)
        .map(|r| format!("/api/v21/attack-{}/", label_of(r)))
        .collect();
    assert_eq!(expected_roots.len(), 4, "17.0, 17.1, 18.0, 18.1");
    expected_roots.insert("/api/v21/".into());
    expected_roots.insert("/api/v21/history/".into());
    assert_eq!(roots, expected_roots);

    // Default root: each collection exactly as of its latest release.
    for (id, latest, history) in [
        (&ics_id, &ics[2], &ics_history),
        (&mobile_id, &mobile[1], &mobile_history),
    ] {
        let path = format!("/api/v21/collections/{id}/objects/");
        let served = all_objects(&api, &path).await;
        check_objects(&path, &served, &latest.versions(), history).unwrap();
        // The newest file is also the newest content: JSON-equal to that file's objects.
        let by_version = latest.by_version();
        assert!(served.iter().all(|o| by_version[&key_of(o)] == o));
    }

    // Pinned 18.0: exactly ICS 18.0, no Mobile collection.
    let listed = api.get("/api/v21/attack-18.0/collections/").await.unwrap();
    assert_eq!(listed.status, StatusCode::OK);
    let listed: Vec<String> = listed.json()["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, std::slice::from_ref(&ics_id));
    let path = format!("/api/v21/attack-18.0/collections/{ics_id}/objects/");
    let served = all_objects(&api, &path).await;
    check_objects(&path, &served, &ics[1].versions(), &ics_history).unwrap();
    for path in [
        format!("/api/v21/attack-18.0/collections/{mobile_id}/"),
        format!("/api/v21/attack-18.0/collections/{mobile_id}/objects/"),
        format!("/api/v21/attack-18.0/collections/{mobile_id}/manifest/"),
    ] {
        let reply = api.get(&path).await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.json()["http_status"], "404");
    }
    // Every other pinned root, for each collection that has that release.
    for (id, files) in [(&ics_id, &ics), (&mobile_id, &mobile)] {
        for f in files.iter() {
            let path = format!("/api/v21/attack-{}/collections/{id}/objects/", label_of(f));
            let served = all_objects(&api, &path).await;
            // Each pinned root serves its own file's content, re-issued versions included.
            check_objects(&path, &served, &f.versions(), &f.by_version()).unwrap();
        }
    }

    // History root: every version of every file, newest content for re-issued versions.
    for (id, history) in [(&ics_id, &ics_history), (&mobile_id, &mobile_history)] {
        let path = format!("/api/v21/history/collections/{id}/objects/?match[version]=all");
        let served = all_objects(&api, &path).await;
        let keys: BTreeSet<_> = history.keys().cloned().collect();
        check_objects(&path, &served, &keys, history).unwrap();
    }
    let path = format!(
        "/api/v21/history/collections/{mobile_id}/objects/?match[version]=all&match[type]=relationship"
    );
    let served = all_objects(&api, &path).await;
    let fresh: usize = served
        .iter()
        .filter(|o| reissued.contains(&key_of(o)))
        .inspect(|o| assert_eq!(mobile[1].by_version()[&key_of(o)], *o))
        .count();
    assert_eq!(fresh, reissued.len(), "re-issued versions served once, new");

    // Paging: limit 7 and 100 on the whole history, limit 1 under a type filter.
    let ics_keys: BTreeSet<_> = ics_history.keys().cloned().collect();
    for (limit, filter, collection, history) in [
        (100, "", &mobile_id, &mobile_history),
        (100, "", &ics_id, &ics_history),
        (7, "", &ics_id, &ics_history),
        (
            1,
            "&match[type]=x-mitre-tactic,x-mitre-matrix",
            &ics_id,
            &ics_history,
        ),
    ] {
        let base = format!(
            "/api/v21/history/collections/{collection}/objects/?match[version]=all&limit={limit}{filter}"
        );
        let pages = api.walk(&base, "objects").await.unwrap();
        assert!(pages.iter().all(|p| p.items.len() <= limit), "{base}");
        assert!(
            pages[..pages.len() - 1]
                .iter()
                .all(|p| p.more == Some(true))
        );
        assert_eq!(pages.last().unwrap().more, Some(false), "{base}");
        check_page_headers(&base, &pages).unwrap();
        let served = items(&pages);
        let expected: BTreeSet<_> = history
            .iter()
            .filter(|(_, o)| {
                filter.is_empty()
                    || ["x-mitre-tactic", "x-mitre-matrix"].contains(&o["type"].as_str().unwrap())
            })
            .map(|(k, _)| k.clone())
            .collect();
        assert!(!expected.is_empty());
        check_objects(&base, &served, &expected, history).unwrap();
        if limit == 1 {
            assert_eq!(pages.len(), expected.len());
        }
    }

    // Manifest: same versions, same order, date_added within each page's headers.
    for (collection, root) in [(&ics_id, "history"), (&mobile_id, "history")] {
        let objects = items(
            &api.walk(
                &format!(
                    "/api/v21/{root}/collections/{collection}/objects/?match[version]=all&limit=100"
                ),
                "objects",
            )
            .await
            .unwrap(),
        );
        let base = format!(
            "/api/v21/{root}/collections/{collection}/manifest/?match[version]=all&limit=100"
        );
        let pages = api.walk(&base, "objects").await.unwrap();
        check_page_headers(&base, &pages).unwrap();
        for p in &pages {
            let (first, last) = (
                micros(p.first.as_ref().unwrap()).unwrap(),
                micros(p.last.as_ref().unwrap()).unwrap(),
            );
            let added: Vec<i128> = p
                .items
                .iter()
                .map(|e| micros(e["date_added"].as_str().unwrap()).unwrap())
                .collect();
            assert_eq!(added.first(), Some(&first), "{base}");
            assert_eq!(added.last(), Some(&last), "{base}");
            assert!(added.windows(2).all(|w| w[0] < w[1]), "{base}: ordered");
            assert!(p.items.iter().all(|e| {
                e["media_type"] == "application/stix+json;version=2.1"
                    || e["media_type"]
                        .as_str()
                        .unwrap()
                        .starts_with("application/stix+json")
            }));
        }
        let manifest: Vec<(String, String)> = items(&pages).iter().map(manifest_key).collect();
        let objects: Vec<(String, String)> = objects.iter().map(key_of).collect();
        assert_eq!(manifest, objects, "{base}: manifest and objects agree");
    }
    // Default-root manifest without a limit equals the latest release.
    let manifest = api
        .page(
            &format!("/api/v21/collections/{mobile_id}/manifest/"),
            "objects",
        )
        .await
        .unwrap();
    let keys: BTreeSet<_> = manifest.items.iter().map(manifest_key).collect();
    assert_eq!(keys.len(), manifest.items.len());
    assert_eq!(keys, mobile[1].versions());

    // Versions of every ICS object in the history root and in the default root.
    let mut expected_versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, v) in &ics_keys {
        expected_versions
            .entry(id.clone())
            .or_default()
            .insert(v.clone());
    }
    let latest: BTreeMap<String, String> = ics[2].versions().into_iter().collect();
    let checks = futures::stream::iter(expected_versions.iter())
        .map(|(id, versions)| {
            let api = &api;
            let ics_id = &ics_id;
            let latest = &latest;
            async move {
                let base = format!("/api/v21/history/collections/{ics_id}/objects/{id}/versions/");
                let page = api.page(&base, "versions").await.unwrap();
                let served: Vec<String> = page
                    .items
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(served.len(), versions.len(), "{base}");
                assert_eq!(
                    served.iter().cloned().collect::<BTreeSet<_>>(),
                    *versions,
                    "{base}"
                );
                let one = api
                    .page(
                        &format!(
                            "/api/v21/history/collections/{ics_id}/objects/{id}/?match[version]=all"
                        ),
                        "objects",
                    )
                    .await
                    .unwrap();
                let got: BTreeSet<String> = one.items.iter().map(|o| key_of(o).1).collect();
                assert_eq!(got, *versions, "{id}: object endpoint, all versions");
                let default = api
                    .get(&format!(
                        "/api/v21/collections/{ics_id}/objects/{id}/versions/"
                    ))
                    .await
                    .unwrap();
                match latest.get(id) {
                    Some(v) => {
                        assert_eq!(default.status, StatusCode::OK);
                        assert_eq!(default.json()["versions"], serde_json::json!([v]), "{id}");
                    }
                    None => assert_eq!(default.status, StatusCode::NOT_FOUND, "{id} dropped"),
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>();
    checks.await;

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_the_history_root_during_an_import_misses_and_repeats_nothing() {
    let (topics, control, projector, api) = pipeline("api_live", &ICS_FILES[..2]).await;
    let ics = load(&ICS_FILES);
    let ics_id = ics[0].collection_id();
    let expected = Expected::new(ics.iter().collect());
    let history = expected.history();
    // Versions 18.1 re-issues with other content legitimately show up twice to a poller: the
    // second time with the new content and a later date_added.
    let reissued = Expected::new(vec![&ics[0], &ics[1]]).reissued();
    let reissued_by_181: BTreeSet<_> = expected.reissued().difference(&reissued).cloned().collect();

    let before = api.loaded_revisions().await.unwrap();
    let mut background = Some({
        let topics = topics.clone();
        tokio::spawn(async move { import(&topics, &ICS_FILES[2..]).await })
    });
    let mut revisions = BTreeMap::new();
    let mut seen: Vec<Value> = Vec::new();
    let mut last_seen: Option<String> = None;
    let mut pages = 0;
    let base =
        format!("/api/v21/history/collections/{ics_id}/objects/?match[version]=all&limit=50");
    let mut path = base.clone();
    loop {
        let page = api.page(&path, "objects").await.unwrap();
        pages += 1;
        if page.last.is_some() {
            last_seen = page.last.clone();
        }
        seen.extend(page.items);
        if page.more != Some(true) {
            break;
        }
        path = format!("{base}&next={}", page.next.unwrap());
        if pages == 3 {
            // Mid-walk, the API loads 18.1: the rest of the walk runs on the new revision.
            revisions = background.take().unwrap().await.unwrap();
            api.wait_for_revisions(&revisions, Deadline::after(Duration::from_secs(300)))
                .await
                .unwrap();
            assert_ne!(api.loaded_revisions().await.unwrap(), before);
        }
    }
    assert!(background.is_none(), "the walk outlived the import");
    // Then poll with added_after = the last X-TAXII-Date-Added-Last seen, until the projection
    // covers 18.1 and the API has loaded it.
    let deadline = Deadline::after(Duration::from_secs(300));
    let session = projection::session().await.unwrap();
    let mut caught_up = false;
    loop {
        let loaded = api.loaded_revisions().await.unwrap();
        let done = revisions
            .iter()
            .all(|(c, r)| loaded.get(c).is_some_and(|n| n >= r));
        let after = last_seen.clone().unwrap();
        let poll = format!(
            "/api/v21/history/collections/{ics_id}/objects/?match[version]=all&limit=50&added_after={after}"
        );
        let got = api.walk(&poll, "objects").await.unwrap();
        check_page_headers(&poll, &got).unwrap();
        if let Some(last) = got.iter().rev().find_map(|p| p.last.clone()) {
            assert!(micros(&last).unwrap() > micros(&after).unwrap());
            last_seen = Some(last);
        }
        pages += got.len();
        seen.extend(items(&got));
        if caught_up {
            break;
        }
        // One more poll after the API has loaded everything, to drain what it had.
        caught_up = done;
        assert!(
            !deadline.passed(),
            "18.1 not served in time: {loaded:?} < {revisions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    projection::wait_for_revisions(&session, &control, &revisions, deadline)
        .await
        .unwrap();
    assert!(pages > 10, "walked {pages} pages");

    // No version missed; none repeated except a re-issue seen again with its new content.
    let mut count: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for o in &seen {
        count.entry(key_of(o)).or_default().push(o);
    }
    let keys: BTreeSet<_> = count.keys().cloned().collect();
    assert_eq!(keys, history.keys().cloned().collect::<BTreeSet<_>>());
    for (k, served) in &count {
        if served.len() > 1 {
            assert!(
                reissued_by_181.contains(k),
                "{k:?} served {} times",
                served.len()
            );
            assert_eq!(served.len(), 2, "{k:?}");
        }
        assert_eq!(
            *served.last().unwrap(),
            history[k],
            "{k:?}: newest content last"
        );
    }
    api.stop().await.unwrap();
    projector.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_caching_and_compression_through_the_real_stack() {
    let (_topics, _control, projector, api) = pipeline("api_http", &ICS_FILES[2..]).await;
    let ics = Release::load(ICS_FILES[2]).unwrap();
    let ics_id = ics.collection_id();

    // Unknown collection → 404 with a TAXII error body.
    let reply = api
        .get("/api/v21/collections/x-mitre-collection--00000000-0000-4000-8000-000000000000/objects/")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("content-type"), Some(TAXII));
    let body = reply.json();
    assert_eq!(body["http_status"], "404");
    assert!(body["title"].is_string());

    // Accept: application/xml → 406.
    let path = format!("/api/v21/collections/{ics_id}/objects/?limit=5");
    let reply = api
        .client
        .get(format!("{}{path}", api.base))
        .header("accept", "application/xml")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::NOT_ACCEPTABLE);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["http_status"], "406");

    // limit=0 → 400 naming limit.
    let reply = api
        .get(&format!("/api/v21/collections/{ics_id}/objects/?limit=0"))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.header("content-type"), Some(TAXII));
    assert!(reply.text().contains("limit"), "{}", reply.text());

    // A write is refused with an error body.
    let reply = api
        .client
        .post(format!(
            "{}/api/v21/collections/{ics_id}/objects/",
            api.base
        ))
        .header("accept", TAXII)
        .header("content-type", TAXII)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_client_error(), "{}", reply.status());

    // ETag / If-None-Match → 304; the body of the plain answer is the release.
    let path = format!("/api/v21/collections/{ics_id}/objects/");
    let plain = api.get(&path).await.unwrap();
    assert_eq!(plain.status, StatusCode::OK);
    let plain_json = plain.json();
    let served: BTreeSet<_> = plain_json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(key_of)
        .collect();
    assert_eq!(served, ics.versions());
    let etag = plain.header("etag").expect("ETag").to_owned();
    let again = api
        .get_with(&path, &[("if-none-match", &etag)])
        .await
        .unwrap();
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    let other = api
        .get_with(&path, &[("if-none-match", "W/\"something-else\"")])
        .await
        .unwrap();
    assert_eq!(other.status, StatusCode::OK);

    // Accept-Encoding: gzip → a gzip body that decodes to the same JSON.
    let gz = api
        .get_with(&path, &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(gz.status, StatusCode::OK);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz.body.len() * 3 < plain.body.len(), "compressed");
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(gz.body.as_ref())
        .read_to_end(&mut decoded)
        .unwrap();
    assert!(decoded == plain.body, "gzip decodes to the plain bytes");
    let decoded: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(decoded, plain_json);

    // br and zstd: each decodes to exactly the bytes of the plain answer, for a whole
    // collection and for one page.
    let page = format!("/api/v21/collections/{ics_id}/objects/?limit=50");
    let plain_page = api.get(&page).await.unwrap();
    assert_eq!(plain_page.status, StatusCode::OK);
    for (path, plain) in [(&path, &plain), (&page, &plain_page)] {
        for encoding in ["br", "zstd"] {
            let reply = api
                .get_with(path, &[("accept-encoding", encoding)])
                .await
                .unwrap();
            assert_eq!(reply.status, StatusCode::OK, "{path} {encoding}");
            assert_eq!(reply.header("content-encoding"), Some(encoding), "{path}");
            assert!(
                reply.body.len() < plain.body.len(),
                "{path}: {encoding} compresses"
            );
            let decoded = match encoding {
                "br" => {
                    let mut out = Vec::new();
                    brotli_decompressor::Decompressor::new(reply.body.as_ref(), 64 * 1024)
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                _ => zstd::decode_all(reply.body.as_ref()).unwrap(),
            };
            assert!(
                decoded == plain.body,
                "{path}: {encoding} decodes to the plain bytes"
            );
        }
    }

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
}
