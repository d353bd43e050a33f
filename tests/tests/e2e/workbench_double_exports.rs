//! Behaviour of the Workbench test double's collection and object endpoints and its fault
//! injection against the contract in `shared/design/workbench-api.md`, with expected values
//! computed from the ATT&CK bundle files it serves.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use taxiway_tests::fixtures;
use taxiway_tests::workbench_double::{Fault, WorkbenchConfig, WorkbenchDouble};

const ICS_17_1: &str = "ics-attack-17.1.json.zst";
const ICS_18_0: &str = "ics-attack-18.0.json.zst";
const ICS_18_1: &str = "ics-attack-18.1.json.zst";
const MOBILE_17_0: &str = "mobile-attack-17.0.json.zst";
const MOBILE_17_1: &str = "mobile-attack-17.1.json.zst";
const ALL_FILES: [&str; 5] = [ICS_17_1, ICS_18_0, ICS_18_1, MOBILE_17_0, MOBILE_17_1];

/// Decompressed bundle files, read once per test binary.
fn bundle_bytes(name: &str) -> Arc<Vec<u8>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache
        .entry(name.to_owned())
        .or_insert_with(|| {
            let compressed = std::fs::read(fixtures::path(name)).unwrap();
            Arc::new(zstd::decode_all(compressed.as_slice()).unwrap())
        })
        .clone()
}

fn bundle_json(name: &str) -> Value {
    serde_json::from_slice(&bundle_bytes(name)).unwrap()
}

fn collection_object(bundle: &Value) -> Value {
    bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "x-mitre-collection")
        .unwrap()
        .clone()
}

pub(crate) async fn double_with(files: &[&str], config: WorkbenchConfig) -> WorkbenchDouble {
    let workbench = WorkbenchDouble::start(config).await.unwrap();
    for name in files {
        workbench
            .add_collection_version_from_bundle(bundle_bytes(name).to_vec())
            .unwrap();
    }
    workbench
}

pub(crate) fn basic(name: &str, key: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{name}:{key}")))
}

pub(crate) fn taxii_basic() -> String {
    basic("taxii-server", "secret-squirrel")
}

pub(crate) async fn get(
    workbench: &WorkbenchDouble,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}{path}", workbench.base_url()));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap()
}

async fn get_json(workbench: &WorkbenchDouble, path: &str) -> Value {
    let response = get(workbench, path, Some(&taxii_basic())).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

pub(crate) async fn status_and_text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn lists_every_version_sorted_by_id_then_newest_first() {
    let workbench = double_with(&ALL_FILES, WorkbenchConfig::default()).await;
    let mut expected: Vec<(String, String, String)> = ALL_FILES
        .iter()
        .map(|f| {
            let c = collection_object(&bundle_json(f));
            (
                c["id"].as_str().unwrap().to_owned(),
                c["modified"].as_str().unwrap().to_owned(),
                c["x_mitre_version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));

    for path in [
        "/api/collections?versions=all",
        "/api/collections/?versions=all",
    ] {
        let listed = get_json(&workbench, path).await;
        let listed = listed.as_array().unwrap();
        let got: Vec<(String, String, String)> = listed
            .iter()
            .map(|d| {
                (
                    d["stix"]["id"].as_str().unwrap().to_owned(),
                    d["stix"]["modified"].as_str().unwrap().to_owned(),
                    d["stix"]["x_mitre_version"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{path}");
        let ids: std::collections::BTreeSet<_> = got.iter().map(|g| &g.0).collect();
        assert_eq!(ids.len(), 2);
        for doc in listed {
            assert_eq!(doc["__t"], "Collection");
            assert_eq!(doc["__v"], 0);
            let mongo_id = doc["_id"].as_str().unwrap();
            assert!(mongo_id.len() == 24 && mongo_id.chars().all(|c| c.is_ascii_hexdigit()));
            assert_eq!(doc["stix"]["x_mitre_deprecated"], false);
            assert_eq!(doc["workspace"]["exported"], json!([]));
            assert_eq!(
                doc["created_by_identity"]["stix"]["id"],
                doc["stix"]["created_by_ref"]
            );
            assert!(doc["stix"]["x_mitre_contents"].as_array().unwrap().len() > 1000);
        }
    }
    assert_eq!(expected.len(), 5);
}

#[tokio::test]
async fn latest_lists_the_newest_version_of_each_collection() {
    let workbench = double_with(&ALL_FILES, WorkbenchConfig::default()).await;
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    for f in ALL_FILES {
        let c = collection_object(&bundle_json(f));
        let entry = newest
            .entry(c["id"].as_str().unwrap().to_owned())
            .or_default();
        let modified = c["modified"].as_str().unwrap().to_owned();
        if modified > *entry {
            *entry = modified;
        }
    }
    for path in ["/api/collections", "/api/collections?versions=latest"] {
        let listed = get_json(&workbench, path).await;
        let got: BTreeMap<String, String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["stix"]["id"].as_str().unwrap().to_owned(),
                    d["stix"]["modified"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(listed.as_array().unwrap().len(), newest.len());
        assert_eq!(got, newest, "{path}");
    }
}

#[tokio::test]
async fn bundle_holds_the_collection_then_exactly_its_contents_in_order() {
    let workbench = double_with(&[ICS_18_0], WorkbenchConfig::default()).await;
    let file = bundle_json(ICS_18_0);
    let collection = collection_object(&file);
    let by_id: HashMap<&str, &Value> = file["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o))
        .collect();
    let path = format!(
        "/api/collection-bundles?collectionId={}&collectionModified={}&previewOnly=true",
        collection["id"].as_str().unwrap(),
        enc(collection["modified"].as_str().unwrap())
    );
    let bundle = get_json(&workbench, &path).await;
    assert_eq!(bundle["type"], "bundle");
    assert!(bundle.get("spec_version").is_none());
    assert!(bundle["id"].as_str().unwrap().starts_with("bundle--"));
    let objects = bundle["objects"].as_array().unwrap();

    let mut expected_collection = collection.clone();
    expected_collection["x_mitre_deprecated"] = json!(false);
    assert_eq!(objects[0], expected_collection);

    let contents = collection["x_mitre_contents"].as_array().unwrap();
    assert_eq!(objects.len(), 1 + contents.len());
    for (reference, served) in contents.iter().zip(&objects[1..]) {
        assert_eq!(served["id"], reference["object_ref"]);
        assert_eq!(served["modified"], reference["object_modified"]);
        assert_eq!(served, by_id[reference["object_ref"].as_str().unwrap()]);
    }

    let again = get_json(&workbench, &path).await;
    assert_ne!(again["id"], bundle["id"]);
    let latest = get_json(
        &workbench,
        &format!(
            "/api/collection-bundles?collectionId={}&previewOnly=true",
            collection["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(latest["objects"], bundle["objects"]);
}

#[tokio::test]
async fn an_already_stored_version_keeps_its_first_content() {
    let workbench = double_with(&[ICS_17_1], WorkbenchConfig::default()).await;
    let older = bundle_json(ICS_17_1);
    let newer = bundle_json(ICS_18_0);
    let older_by_key: HashMap<(String, String), &Value> = older["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("modified").is_some())
        .map(|o| {
            (
                (
                    o["id"].as_str().unwrap().to_owned(),
                    o["modified"].as_str().unwrap().to_owned(),
                ),
                o,
            )
        })
        .collect();
    let differing: Vec<(String, String)> = newer["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] != "x-mitre-collection" && o.get("modified").is_some())
        .filter_map(|o| {
            let key = (
                o["id"].as_str().unwrap().to_owned(),
                o["modified"].as_str().unwrap().to_owned(),
            );
            older_by_key.get(&key).filter(|old| **old != o).map(|_| key)
        })
        .collect();
    assert!(!differing.is_empty());

    let report = workbench
        .add_collection_version_from_bundle(bundle_bytes(ICS_18_0).to_vec())
        .unwrap();
    let reported: Vec<(String, String)> = report
        .duplicates_with_different_content
        .iter()
        .map(|k| (k.id.clone(), k.modified.clone()))
        .collect();
    assert_eq!(reported, differing);

    let collection = collection_object(&newer);
    let bundle = get_json(
        &workbench,
        &format!(
            "/api/collection-bundles?collectionId={}&collectionModified={}&previewOnly=true",
            collection["id"].as_str().unwrap(),
            enc(collection["modified"].as_str().unwrap())
        ),
    )
    .await;
    let served: HashMap<&str, &Value> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o))
        .collect();
    for key in &differing {
        assert_eq!(served[key.0.as_str()], older_by_key[key]);
    }
}

#[tokio::test]
async fn preview_only_leaves_exports_unchanged_and_a_plain_export_appends() {
    let workbench = double_with(&[ICS_18_1], WorkbenchConfig::default()).await;
    let collection = collection_object(&bundle_json(ICS_18_1));
    let (id, modified) = (
        collection["id"].as_str().unwrap(),
        collection["modified"].as_str().unwrap(),
    );
    let base = format!(
        "/api/collection-bundles?collectionId={id}&collectionModified={}",
        enc(modified)
    );

    get_json(&workbench, &format!("{base}&previewOnly=true")).await;
    assert!(workbench.exports_of(id, modified).is_empty());

    let plain = get_json(&workbench, &base).await;
    let explicit_false = get_json(&workbench, &format!("{base}&previewOnly=false")).await;
    let exports = workbench.exports_of(id, modified);
    assert_eq!(exports.len(), 2);
    assert_eq!(exports[0].bundle_id, plain["id"].as_str().unwrap());
    assert_eq!(exports[1].bundle_id, explicit_false["id"].as_str().unwrap());
    assert!(exports[0].export_timestamp.ends_with('Z') && exports[0].export_timestamp.len() == 24);

    let listed = get_json(&workbench, "/api/collections").await;
    assert_eq!(
        listed[0]["workspace"]["exported"].as_array().unwrap().len(),
        2
    );

    let previews: Vec<_> = workbench
        .requests()
        .into_iter()
        .filter(|r| r.route() == "/api/collection-bundles")
        .map(|r| r.query_param("previewOnly"))
        .collect();
    assert_eq!(
        previews,
        [Some("true".to_owned()), None, Some("false".to_owned())]
    );
}

#[tokio::test]
async fn undocumented_or_badly_typed_query_parameters_are_400() {
    let workbench = double_with(&[], WorkbenchConfig::default()).await;
    let auth = taxii_basic();
    let cases = [
        (
            "/api/collections?versions=all&page=2",
            "Unknown query parameter 'page'",
        ),
        (
            "/api/attack-objects/?includeRevoked=yes",
            "request/query/includeRevoked must be boolean",
        ),
        (
            "/api/recent-activity?limit=ten",
            "request/query/limit must be number",
        ),
        (
            "/api/collections?versions=some",
            "request/query/versions must be equal to one of the allowed values: all, latest",
        ),
        (
            "/api/collection-bundles?collectionId=x&previewOnly=1",
            "request/query/previewOnly must be boolean",
        ),
        (
            "/api/collection-bundles?collectionId=x&retrieveContents=true",
            "Unknown query parameter 'retrieveContents'",
        ),
        (
            "/api/collections?search=mobile",
            "Unknown query parameter 'search'",
        ),
        (
            "/api/authn/service/apikey-challenge?x=1",
            "Unknown query parameter 'x'",
        ),
    ];
    for (path, message) in cases {
        let response = get(&workbench, path, Some(&auth)).await;
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(
            status_and_text(response).await,
            (400, message.to_owned()),
            "{path}"
        );
    }
    // Validation comes before authentication.
    let response = get(&workbench, "/api/collections?foo=1", None).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn bundle_errors_have_the_documented_statuses_and_bodies() {
    let workbench = double_with(&[ICS_18_1], WorkbenchConfig::default()).await;
    let auth = taxii_basic();
    let cases = [
        (
            "/api/collection-bundles?collectionModified=2025-11-13T14%3A00%3A00.188Z",
            400,
            "collectionId is required when providing collectionModified",
        ),
        (
            "/api/collection-bundles",
            500,
            "Unable to export collection.",
        ),
        (
            "/api/collection-bundles?collectionId=x-mitre-collection--nope",
            404,
            "Collection not found",
        ),
        (
            "/api/collection-bundles?collectionId=x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09&collectionModified=2001-01-01T00%3A00%3A00.000Z",
            404,
            "Collection not found",
        ),
        ("/api/nothing-here", 404, "not found"),
    ];
    for (path, status, body) in cases {
        assert_eq!(
            status_and_text(get(&workbench, path, Some(&auth)).await).await,
            (status, body.to_owned()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn edited_objects_get_a_new_version_without_touching_collections() {
    let workbench = double_with(&[ICS_18_1], WorkbenchConfig::default()).await;
    let file = bundle_json(ICS_18_1);
    let technique = file["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| {
            o["type"] == "attack-pattern" && o["revoked"] != true && o["x_mitre_deprecated"] != true
        })
        .unwrap();
    let id = technique["id"].as_str().unwrap();
    let attack_id = technique["external_references"][0]["external_id"]
        .as_str()
        .unwrap();
    let edited = workbench
        .edit_object(id, |stix| stix["name"] = json!("Renamed"))
        .unwrap();
    assert!(edited.modified.as_str() > technique["modified"].as_str().unwrap());
    assert_eq!(
        workbench.object_version(id, &edited.modified).unwrap()["name"],
        "Renamed"
    );

    let versions_of = |listed: &Value| -> Vec<Value> {
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["stix"]["id"] == id)
            .cloned()
            .collect()
    };
    let latest = versions_of(&get_json(&workbench, "/api/attack-objects").await);
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0]["stix"]["name"], "Renamed");
    assert_eq!(latest[0]["workspace"]["attack_id"], attack_id);
    let all = versions_of(&get_json(&workbench, "/api/attack-objects?versions=all").await);
    assert_eq!(all.len(), 2);

    let collection = collection_object(&file);
    let bundle = get_json(
        &workbench,
        &format!(
            "/api/collection-bundles?collectionId={}&previewOnly=true",
            collection["id"].as_str().unwrap()
        ),
    )
    .await;
    let served = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .unwrap();
    assert_eq!(served, technique);
}

#[tokio::test]
async fn bundle_server_error_fails_only_that_collection() {
    let workbench = double_with(&[ICS_18_1, MOBILE_17_1], WorkbenchConfig::default()).await;
    let ics = collection_object(&bundle_json(ICS_18_1));
    let mobile = collection_object(&bundle_json(MOBILE_17_1));
    workbench.set_fault(Fault::BundleServerError {
        collection_id: ics["id"].as_str().unwrap().to_owned(),
    });
    let path = |c: &Value| {
        format!(
            "/api/collection-bundles?collectionId={}&previewOnly=true",
            c["id"].as_str().unwrap()
        )
    };
    assert_eq!(
        status_and_text(get(&workbench, &path(&ics), Some(&taxii_basic())).await).await,
        (500, "Unable to export collection.".to_owned())
    );
    assert_eq!(
        get(&workbench, &path(&mobile), Some(&taxii_basic()))
            .await
            .status(),
        200
    );
    workbench.clear_faults();
    assert_eq!(
        get(&workbench, &path(&ics), Some(&taxii_basic()))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn empty_list_and_unavailable_faults() {
    let workbench = double_with(&[ICS_18_1], WorkbenchConfig::default()).await;
    workbench.set_fault(Fault::EmptyCollectionList);
    assert_eq!(
        get_json(&workbench, "/api/collections?versions=all").await,
        json!([])
    );
    workbench.clear_faults();
    assert_eq!(
        get_json(&workbench, "/api/collections")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    workbench.set_fault(Fault::ServiceUnavailable);
    assert_eq!(
        get(&workbench, "/api/collections", Some(&taxii_basic()))
            .await
            .status(),
        503
    );
}

#[tokio::test]
async fn truncated_bundle_cannot_be_read_whole() {
    let workbench = double_with(&[ICS_18_1], WorkbenchConfig::default()).await;
    let collection = collection_object(&bundle_json(ICS_18_1));
    workbench.set_fault(Fault::TruncatedBundle);
    let response = get(
        &workbench,
        &format!(
            "/api/collection-bundles?collectionId={}&previewOnly=true",
            collection["id"].as_str().unwrap()
        ),
        Some(&taxii_basic()),
    )
    .await;
    assert_eq!(response.status(), 200);
    let declared: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    match response.bytes().await {
        Err(_) => {}
        Ok(body) => {
            assert!(body.len() < declared);
            assert!(serde_json::from_slice::<Value>(&body).is_err());
        }
    }
    // Other routes are unaffected.
    assert_eq!(
        get(&workbench, "/api/collections", Some(&taxii_basic()))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn slow_responses_outlast_a_short_client_timeout() {
    let workbench = double_with(&[], WorkbenchConfig::default()).await;
    workbench.set_fault(Fault::SlowResponses(Duration::from_secs(3)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = client
        .get(format!("{}/api/collections", workbench.base_url()))
        .header("Authorization", taxii_basic())
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout());
}

#[tokio::test]
async fn a_version_removed_between_list_and_export_is_404() {
    let workbench = double_with(&[ICS_18_0, ICS_18_1], WorkbenchConfig::default()).await;
    let removed = collection_object(&bundle_json(ICS_18_1));
    let (id, modified) = (
        removed["id"].as_str().unwrap(),
        removed["modified"].as_str().unwrap(),
    );
    workbench.set_fault(Fault::RemoveAfterNextList {
        collection_id: id.to_owned(),
        modified: modified.to_owned(),
    });
    let listed = get_json(&workbench, "/api/collections/?versions=all").await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let export = get(
        &workbench,
        &format!(
            "/api/collection-bundles?collectionId={id}&collectionModified={}",
            enc(modified)
        ),
        Some(&taxii_basic()),
    )
    .await;
    assert_eq!(
        status_and_text(export).await,
        (404, "Collection not found".to_owned())
    );
    let listed = get_json(&workbench, "/api/collections?versions=all").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn request_log_records_what_the_client_sent() {
    let workbench = double_with(&[], WorkbenchConfig::default()).await;
    get(
        &workbench,
        "/api/collections/?versions=all",
        Some(&taxii_basic()),
    )
    .await;
    get(&workbench, "/api/collections?versions=all", None).await;
    assert_eq!(workbench.count_requests("/api/collections"), 2);
    let log = workbench.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/api/collections/");
    assert_eq!(log[0].query.as_deref(), Some("versions=all"));
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].authorization_scheme.as_deref(), Some("Basic"));
    assert_eq!(log[1].status, 401);
}
