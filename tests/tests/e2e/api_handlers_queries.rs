//! Handler tests of the TAXII queries over an in-memory store built from real ATT&CK bundles (no
//! database): roots, objects, versions and manifests, paging, parameters and media types.
//!
//! Expected values are computed here from the bundle files, not from the code under test.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use crate::memory_server::*;
use api::config::ServerConfig;
use api::store::VersionRow;

const TAXII: &str = "application/taxii+json;version=2.1";

fn ids_and_versions(objects: &[Value]) -> Vec<(String, i64)> {
    objects
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_owned(), version_of(o)))
        .collect()
}

fn by_id(objects: &[Value]) -> BTreeMap<String, Value> {
    objects
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_owned(), o.clone()))
        .collect()
}

/// Every distinct (id, version) of a domain's files, with the newest file's content.
fn history_of(prefix: &str) -> BTreeMap<(String, i64), Value> {
    let mut all = BTreeMap::new();
    for b in bundles().iter().filter(|b| b.name.starts_with(prefix)) {
        for o in &b.objects {
            all.insert(
                (o["id"].as_str().unwrap().to_owned(), version_of(o)),
                o.clone(),
            );
        }
    }
    all
}

pub(crate) fn assert_taxii_error(reply: &Reply, status: StatusCode) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some(TAXII));
    let json = reply.json();
    assert_eq!(json["http_status"], status.as_u16().to_string());
    assert!(json["title"].is_string());
    json
}

#[tokio::test]
async fn discovery_lists_default_pinned_and_history_roots_as_absolute_paths() {
    let (app, _, _) = server().await;
    let reply = get(&app, "/taxii2/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some(TAXII));
    let json = reply.json();
    assert_eq!(json["title"], MITRE_TITLE);
    assert_eq!(json["description"], MITRE_DESCRIPTION);
    assert!(
        json.get("contact").is_none(),
        "no contact unless set: {json}"
    );
    assert_eq!(json["default"], "/api/v21/");
    let roots: Vec<&str> = json["api_roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(roots.first(), Some(&"/api/v21/"));
    assert_eq!(roots.last(), Some(&"/api/v21/history/"));
    let mut expected: Vec<(i64, String)> = Vec::new();
    for b in bundles() {
        match expected.iter_mut().find(|(_, l)| *l == b.label) {
            Some(e) => e.0 = e.0.max(b.release_timestamp),
            None => expected.push((b.release_timestamp, b.label.clone())),
        }
    }
    expected.sort_by_key(|e| std::cmp::Reverse(e.0));
    let pinned: Vec<String> = expected
        .iter()
        .map(|(_, l)| format!("/api/v21/attack-{l}/"))
        .collect();
    assert_eq!(roots[1..roots.len() - 1], pinned[..]);
}

/// The texts attack-taxii.mitre.org serves, as its user guide (docs/USAGE.md of
/// mitre-attack/attack-workbench-taxii-server) shows them.
const MITRE_TITLE: &str = "MITRE ATT&CK TAXII 2.1";
const MITRE_DESCRIPTION: &str =
    "This API Root contains TAXII 2.1 REST API endpoints that serve MITRE ATT&CK STIX 2.1 data";

#[tokio::test]
async fn a_contact_is_served_only_when_the_operator_sets_one() {
    let config = ServerConfig {
        contact: Some("cti-team@example.org".to_owned()),
        ..ServerConfig::default()
    };
    let (app, _, _) = server_with(config, None).await;
    let json = get(&app, "/taxii2/").await.json();
    assert_eq!(json["contact"], "cti-team@example.org");
}

#[tokio::test]
async fn api_roots_have_mitre_titles() {
    let (app, _, _) = server().await;
    let json = get(&app, "/api/v21/").await.json();
    assert_eq!(json["title"], MITRE_TITLE);
    assert_eq!(json["description"], MITRE_DESCRIPTION);
    assert_eq!(json["versions"], serde_json::json!([TAXII]));
    assert!(json["max_content_length"].is_u64());
    // Pinned roots as MITRE's server names them (discovery.service.ts): suffixes with the label.
    let label = &bundle("ics-attack-18.1").label;
    let json = get(&app, &format!("/api/v21/attack-{label}/")).await.json();
    assert_eq!(json["title"], format!("{MITRE_TITLE} (ATT&CK v{label})"));
    assert_eq!(
        json["description"],
        format!("{MITRE_DESCRIPTION} This API Root is pinned to ATT&CK release {label}.")
    );
    // The history root, ours, keeps its own descriptive texts.
    let json = get(&app, "/api/v21/history/").await.json();
    assert_eq!(json["title"], format!("{MITRE_TITLE} (all versions)"));
    let description = json["description"].as_str().unwrap();
    assert!(
        description.starts_with(MITRE_DESCRIPTION) && description.contains("every version"),
        "{description}"
    );
}

/// TAXII 2.1 §4.2.1: `max_content_length` is a positive integer, on every root discovery lists.
#[tokio::test]
async fn every_root_announces_a_positive_max_content_length() {
    let (app, _, _) = server().await;
    let discovery = get(&app, "/taxii2/").await.json();
    let roots = discovery["api_roots"].as_array().unwrap();
    assert!(roots.len() >= 3, "{discovery}");
    for root in roots {
        let path = root.as_str().unwrap();
        let path = &path[path.find("/api/").unwrap()..];
        let json = get(&app, path).await.json();
        let max = json["max_content_length"].as_u64();
        assert!(max.is_some_and(|m| m > 0), "{path}: {json}");
    }
}

#[tokio::test]
async fn default_root_serves_each_collection_as_of_its_latest_release() {
    let (app, _, _) = server().await;
    for (prefix, latest) in [("ics", "ics-attack-18.1"), ("mobile", "mobile-attack-17.1")] {
        let id = collection_of(prefix);
        let reply = get(&app, &format!("/api/v21/collections/{id}/objects/")).await;
        assert_eq!(reply.status, StatusCode::OK);
        let json = reply.json();
        assert!(json.get("more").is_none(), "no limit → no more key");
        let served = json["objects"].as_array().unwrap();
        assert_eq!(
            by_id(served),
            by_id(&bundle(latest).objects),
            "{prefix}: JSON-equal to {latest}"
        );
        assert_eq!(served.len(), bundle(latest).objects.len());
    }
}

#[tokio::test]
async fn pinned_root_serves_exactly_that_release_and_only_its_collections() {
    let (app, _, _) = server().await;
    let json = get(&app, "/api/v21/attack-18.0/collections/").await.json();
    let listed: Vec<&str> = json["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ICS]);
    let c = &json["collections"][0];
    assert_eq!(c["can_read"], true);
    assert_eq!(c["can_write"], false);
    assert_eq!(
        c["media_types"],
        serde_json::json!(["application/stix+json;version=2.1"])
    );
    let (objects, _) = walk(
        &app,
        &format!("/api/v21/attack-18.0/collections/{ICS}/objects/?limit=500"),
        "objects",
    )
    .await;
    assert_eq!(by_id(&objects), by_id(&bundle("ics-attack-18.0").objects));
    let mobile = collection_of("mobile");
    assert_taxii_error(
        &get(
            &app,
            &format!("/api/v21/attack-18.0/collections/{mobile}/objects/"),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    // Mobile 17.1 re-issued some 17.0 versions with other content (same id and modified): a
    // version has one content, the newest, so the pinned 17.0 root serves that content.
    let (objects, _) = walk(
        &app,
        &format!("/api/v21/attack-17.0/collections/{mobile}/objects/?limit=999"),
        "objects",
    )
    .await;
    let release: BTreeSet<(String, i64)> = ids_and_versions(&bundle("mobile-attack-17.0").objects)
        .into_iter()
        .collect();
    let served = ids_and_versions(&objects);
    assert_eq!(served.len(), release.len());
    assert_eq!(served.into_iter().collect::<BTreeSet<_>>(), release);
    let history = history_of("mobile");
    assert!(
        objects
            .iter()
            .all(|o| history[&(o["id"].as_str().unwrap().to_owned(), version_of(o))] == *o)
    );
}

#[tokio::test]
async fn history_root_serves_every_version_with_the_newest_content() {
    let (app, _, _) = server().await;
    for prefix in ["ics", "mobile"] {
        let id = collection_of(prefix);
        let reply = get(
            &app,
            &format!("/api/v21/history/collections/{id}/objects/?match[version]=all"),
        )
        .await;
        let served = reply.json()["objects"].as_array().unwrap().clone();
        let expected = history_of(prefix);
        let got: BTreeMap<(String, i64), Value> = served
            .iter()
            .map(|o| {
                (
                    (o["id"].as_str().unwrap().to_owned(), version_of(o)),
                    o.clone(),
                )
            })
            .collect();
        assert_eq!(got.len(), served.len(), "each version once");
        assert_eq!(got, expected);
        // Without match[version], only the latest version of each object.
        let last = get(&app, &format!("/api/v21/history/collections/{id}/objects/"))
            .await
            .json();
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        for (oid, v) in expected.keys() {
            let e = newest.entry(oid.clone()).or_insert(*v);
            *e = (*e).max(*v);
        }
        let got: BTreeMap<String, i64> = ids_and_versions(last["objects"].as_array().unwrap())
            .into_iter()
            .collect();
        assert_eq!(got, newest);
    }
}

#[tokio::test]
async fn paging_with_limit_1_7_100_walks_every_version_exactly_once() {
    let (app, _, _) = server().await;
    let base = format!("/api/v21/history/collections/{ICS}/objects/?match[version]=all");
    let (everything, _) = walk(&app, &base, "objects").await;
    let expected: BTreeSet<(String, i64)> = history_of("ics").into_keys().collect();
    for limit in [1usize, 7, 100] {
        let (items, requests) = walk(&app, &format!("{base}&limit={limit}"), "objects").await;
        let seen = ids_and_versions(&items);
        assert_eq!(seen.len(), expected.len(), "limit {limit}");
        assert_eq!(
            seen.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "limit {limit}"
        );
        assert_eq!(
            items, everything,
            "limit {limit}: same order as one response"
        );
        assert_eq!(requests, expected.len().div_ceil(limit).max(1));
    }
}

#[tokio::test]
async fn manifest_and_versions_page_like_objects() {
    let (app, _, _) = server().await;
    let base = format!(
        "/api/v21/history/collections/{ICS}/manifest/?match[version]=all&match[type]=attack-pattern"
    );
    let (records, _) = walk(&app, &format!("{base}&limit=7"), "objects").await;
    let expected: BTreeSet<(String, i64)> = history_of("ics")
        .into_keys()
        .filter(|(id, _)| id.starts_with("attack-pattern--"))
        .collect();
    let got: Vec<(String, i64)> = records
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                micros(r["version"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
    for r in &records {
        assert_eq!(r["media_type"], "application/stix+json;version=2.1");
        let date = r["date_added"].as_str().unwrap();
        assert_eq!(date.len(), "2025-01-01T00:00:00.000000Z".len(), "{date}");
    }
    // date_added strictly increasing across the walk.
    let dates: Vec<i64> = records
        .iter()
        .map(|r| micros(r["date_added"].as_str().unwrap()))
        .collect();
    assert!(dates.windows(2).all(|w| w[0] < w[1]));

    // versions of one object with several versions in history.
    let history = history_of("ics");
    let mut counts: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (id, v) in history.keys() {
        counts.entry(id).or_default().push(*v);
    }
    let (object, versions) = counts.iter().find(|(_, v)| v.len() > 1).unwrap();
    let json = get(
        &app,
        &format!("/api/v21/history/collections/{ICS}/objects/{object}/versions/"),
    )
    .await
    .json();
    let got: BTreeSet<i64> = json["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| micros(v.as_str().unwrap()))
        .collect();
    assert_eq!(got, versions.iter().copied().collect());
    let (paged, _) = walk(
        &app,
        &format!("/api/v21/history/collections/{ICS}/objects/{object}/versions/?limit=1"),
        "versions",
    )
    .await;
    assert_eq!(paged, *json["versions"].as_array().unwrap());
}

#[tokio::test]
async fn object_by_id_and_unknown_ids() {
    let (app, _, _) = server().await;
    let source = &bundle("ics-attack-18.1").objects[5];
    let id = source["id"].as_str().unwrap();
    let json = get(&app, &format!("/api/v21/collections/{ICS}/objects/{id}/"))
        .await
        .json();
    assert_eq!(json["objects"], serde_json::json!([source]));
    assert_taxii_error(&get(&app, &format!("/api/v21/collections/{ICS}/objects/indicator--00000000-0000-4000-8000-000000000000/")).await, StatusCode::NOT_FOUND);
    assert_taxii_error(
        &get(
            &app,
            "/api/v21/collections/x-mitre-collection--nope/objects/",
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    assert_taxii_error(
        &get(&app, "/api/v21/nowhere/collections/").await,
        StatusCode::NOT_FOUND,
    );
    assert_taxii_error(
        &get(&app, "/api/v21/attack-99.9/").await,
        StatusCode::NOT_FOUND,
    );
    assert_taxii_error(&get(&app, "/no/such/endpoint").await, StatusCode::NOT_FOUND);
    assert_taxii_error(
        &get(&app, "/api/v21/status/123/").await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn empty_results_are_an_empty_objects_list_without_headers() {
    let (app, _, _) = server().await;
    for query in [
        "added_after=2099-01-01T00:00:00.000Z",
        "added_after=2099-01-01T00:00:00.000Z&limit=5",
        "match[type]=nothing",
    ] {
        let reply = get(
            &app,
            &format!("/api/v21/collections/{ICS}/objects/?{query}"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(&reply.body[..], br#"{"objects":[]}"#, "{query}");
        assert!(reply.header("x-taxii-date-added-first").is_none());
    }
}

#[tokio::test]
async fn date_added_headers_bound_the_page_and_added_after_is_exclusive() {
    let (app, _, _) = server().await;
    let page = get(
        &app,
        &format!("/api/v21/history/collections/{ICS}/manifest/?limit=10"),
    )
    .await;
    let records = page.json()["objects"].as_array().unwrap().clone();
    assert_eq!(
        page.header("x-taxii-date-added-first"),
        records[0]["date_added"].as_str()
    );
    assert_eq!(
        page.header("x-taxii-date-added-last"),
        records[9]["date_added"].as_str()
    );
    let after = records[4]["date_added"].as_str().unwrap();
    let next = get(
        &app,
        &format!("/api/v21/history/collections/{ICS}/manifest/?limit=5&added_after={after}"),
    )
    .await;
    assert_eq!(
        next.json()["objects"].as_array().unwrap()[..],
        records[5..10]
    );
}

#[tokio::test]
async fn accept_headers_are_negotiated() {
    let (app, _, _) = server().await;
    for accept in [
        Some(TAXII),
        Some("application/taxii+json"),
        Some("*/*"),
        None,
    ] {
        let mut request = Request::get("/taxii2/");
        if let Some(a) = accept {
            request = request.header("accept", a);
        }
        let reply = send(&app, request.body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{accept:?}");
        assert_eq!(reply.header("content-type"), Some(TAXII));
    }
    for accept in [
        "application/json",
        "application/taxii+json;version=2.0",
        "text/html",
    ] {
        let uri = format!("/api/v21/collections/{ICS}/objects/");
        let reply = send(
            &app,
            Request::get(uri)
                .header("accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_taxii_error(&reply, StatusCode::NOT_ACCEPTABLE);
    }
}

#[tokio::test]
async fn invalid_parameters_are_400_naming_the_parameter() {
    let (app, _, _) = server().await;
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("added_after=yesterday", "added_after"),
        ("match[version]=newest", "match[version]"),
        ("match[spec_version]=9", "match[spec_version]"),
        ("next=garbage", "next"),
    ] {
        for endpoint in ["objects", "manifest"] {
            let reply = get(
                &app,
                &format!("/api/v21/collections/{ICS}/{endpoint}/?{query}"),
            )
            .await;
            let json = assert_taxii_error(&reply, StatusCode::BAD_REQUEST);
            assert_eq!(json["details"]["parameter"], parameter, "{query}");
            assert!(json["description"].as_str().unwrap().contains(parameter));
        }
    }
}

#[tokio::test]
async fn a_cursor_only_continues_its_own_query() {
    let (app, _, _) = server().await;
    let json = get(
        &app,
        &format!("/api/v21/collections/{ICS}/objects/?limit=2"),
    )
    .await
    .json();
    let next = json["next"].as_str().unwrap();
    let reply = get(
        &app,
        &format!("/api/v21/collections/{ICS}/objects/?limit=2&match[type]=malware&next={next}"),
    )
    .await;
    assert_eq!(
        assert_taxii_error(&reply, StatusCode::BAD_REQUEST)["details"]["parameter"],
        "next"
    );
    let reply = get(
        &app,
        &format!("/api/v21/history/collections/{ICS}/objects/?limit=2&next={next}"),
    )
    .await;
    assert_taxii_error(&reply, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn write_methods_are_refused_with_the_spec_status() {
    let (app, _, _) = server().await;
    let object = bundle("ics-attack-18.1").objects[0]["id"].as_str().unwrap();
    for (method, uri, status) in [
        (
            "POST",
            format!("/api/v21/collections/{ICS}/objects/"),
            StatusCode::FORBIDDEN,
        ),
        (
            "DELETE",
            format!("/api/v21/collections/{ICS}/objects/{object}/"),
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            format!("/api/v21/history/collections/{ICS}/objects"),
            StatusCode::FORBIDDEN,
        ),
        (
            "PUT",
            format!("/api/v21/collections/{ICS}/"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST",
            "/taxii2/".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("content-type", "application/taxii+json;version=2.1")
            .body(Body::from("{}"))
            .unwrap();
        assert_taxii_error(&send(&app, request).await, status);
    }
}

#[tokio::test]
async fn every_endpoint_answers_with_and_without_a_trailing_slash() {
    let (app, _, _) = server().await;
    let object = bundle("ics-attack-18.1").objects[0]["id"].as_str().unwrap();
    for root in ["/api/v21", "/api/v21/attack-18.1", "/api/v21/history"] {
        for path in [
            String::new(),
            "/collections".into(),
            format!("/collections/{ICS}"),
            format!("/collections/{ICS}/objects"),
            format!("/collections/{ICS}/manifest"),
            format!("/collections/{ICS}/objects/{object}"),
            format!("/collections/{ICS}/objects/{object}/versions"),
        ] {
            for slash in ["", "/"] {
                let uri = format!("{root}{path}{slash}");
                let reply = get(&app, &uri).await;
                assert_eq!(reply.status, StatusCode::OK, "{uri}");
                assert_eq!(reply.header("content-type"), Some(TAXII), "{uri}");
            }
        }
    }
    assert_eq!(get(&app, "/taxii2").await.status, StatusCode::OK);
}

/// A later version of ICS object `o` (`modified` moved by `bump` µs, then `edit`), added at
/// `date_added`; with its version.
pub(crate) fn newer_version(
    o: &Value,
    bump: i64,
    date_added: i64,
    edit: impl FnOnce(&mut Value),
) -> (VersionRow, i64) {
    let version = version_of(o) + bump;
    let text = schemas::Timestamp::from_micros(version).to_canonical();
    let mut newer = o.clone();
    newer["modified"] = Value::String(text.clone());
    edit(&mut newer);
    let row = VersionRow {
        object_id: o["id"].as_str().unwrap().to_owned(),
        version,
        version_text: text,
        stix_type: o["type"].as_str().unwrap().to_owned(),
        spec_version: "2.1".into(),
        date_added,
        object_json: serde_json::to_string(&newer).unwrap().into(),
        content: None,
    };
    (row, version)
}

#[tokio::test]
async fn new_versions_during_paging_are_neither_missed_nor_repeated() {
    let (app, state, store) = server().await;
    let base = format!("/api/v21/history/collections/{ICS}/objects/?match[version]=all&limit=250");
    let mut seen = Vec::new();
    let mut uri = base.clone();
    let mut added = Vec::new();
    let mut round = 0;
    loop {
        let json = get(&app, &uri).await.json();
        seen.extend(ids_and_versions(json["objects"].as_array().unwrap()));
        round += 1;
        if round <= 3 {
            // A new version of some object arrives mid-walk, with the next date_added.
            let o = &bundle("ics-attack-18.1").objects[round];
            let (row, version) = newer_version(
                o,
                1_000 * round as i64,
                DATE_BASE + 10_000_000_000 + round as i64,
                |_| {},
            );
            store.add_versions(ICS, vec![row]);
            assert!(refresh(&state, &store).await, "revision moved → reloaded");
            added.push((o["id"].as_str().unwrap().to_owned(), version));
        }
        if json["more"] != true {
            break;
        }
        uri = format!("{base}&next={}", json["next"].as_str().unwrap());
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no version repeated");
    let mut expected: BTreeSet<(String, i64)> = history_of("ics").into_keys().collect();
    expected.extend(added);
    assert_eq!(
        unique, expected,
        "every version, including those added mid-walk"
    );
}
