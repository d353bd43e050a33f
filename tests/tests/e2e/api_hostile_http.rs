//! Hostile HTTP: 10,000 generated requests — methods, paths under every root with
//! percent-encoding oddities, filter and paging parameters with garbage values, Accept, Range,
//! Authorization and other headers — against a served api (`api::serve` over the ATT&CK bundles
//! in memory). No answer may be a 5xx, and every 4xx must be a TAXII error message.
//!
//! Requests hyper cannot parse as HTTP/1.1 never reach the router (hyper answers a bare 400 and
//! closes); reqwest only sends well-formed HTTP, so every request here reaches it.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use api::config::ServerConfig;
use futures::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use taxiway_tests::api::{Api, TAXII};

use crate::memory_server::{ICS, bundles, collections, listening};

/// Batches of requests, sent 8 at a time: 200 × 50 = 10,000 requests.
const CASES: u32 = 200;
const PER_CASE: usize = 50;
const CONCURRENCY: usize = 8;

/// Real names to aim at: ids, types and labels of the bundles, cursors the server issued.
struct Targets {
    collections: Vec<String>,
    objects: Vec<String>,
    types: Vec<String>,
    labels: Vec<String>,
    cursors: Vec<String>,
}

impl Targets {
    async fn gather(api: &Api) -> Targets {
        let mut objects = Vec::new();
        let mut types = std::collections::BTreeSet::new();
        for b in bundles() {
            for o in b.objects.iter().step_by(97) {
                objects.push(o["id"].as_str().unwrap().to_owned());
            }
            for o in &b.objects {
                types.insert(o["type"].as_str().unwrap().to_owned());
            }
        }
        let mut cursors = Vec::new();
        for listing in ["objects", "manifest"] {
            for root in ["/api/v21", "/api/v21/history"] {
                let page = api
                    .get(&format!("{root}/collections/{ICS}/{listing}/?limit=3"))
                    .await
                    .unwrap();
                let next = page.json()["next"].as_str().unwrap().to_owned();
                cursors.push(next);
            }
        }
        let mut labels: Vec<String> = bundles().iter().map(|b| b.label.clone()).collect();
        labels.dedup();
        Targets {
            collections: collections().into_iter().map(|c| c.meta.id).collect(),
            objects,
            types: types.into_iter().collect(),
            labels,
            cursors,
        }
    }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Generated {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn pick(values: Vec<String>) -> BoxedStrategy<String> {
    prop::sample::select(values).boxed()
}

fn words(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// Path segments that have broken routers: encodings of `/`, NUL, invalid UTF-8, dot segments.
fn odd_segment() -> BoxedStrategy<String> {
    prop_oneof![
        pick(words(&[
            "..",
            ".",
            "%2e%2e",
            "%00",
            "%ZZ",
            "%",
            "%2F",
            "%252F",
            "%FF",
            "%C3%A9",
            "é",
            "~",
            "*",
            ";x=1",
            "",
            "objects",
            "collections",
            "versions",
            "manifest",
            "%20",
            "+",
        ])),
        "[a-zA-Z0-9%._~-]{1,12}",
        Just("a".repeat(300)),
    ]
    .boxed()
}

fn path(t: &Targets) -> BoxedStrategy<String> {
    // Mostly real names, so that most requests reach a handler rather than the 404 fallback.
    let mut real_roots = words(&["/api/v21", "/api/v21/history"]);
    real_roots.extend(t.labels.iter().map(|l| format!("/api/v21/attack-{l}")));
    let roots = prop_oneof![
        3 => pick(real_roots),
        1 => pick(words(&[
            "/api/v21/attack-",
            "/api/v21/attack-99.9",
            "/api/v21/attack-%31%38.1",
            "/API/V21",
            "/api",
            "",
        ])),
    ];
    let collections = prop_oneof![
        3 => pick(t.collections.clone()),
        1 => pick(words(&[
            "x-mitre-collection--00000000-0000-0000-0000-000000000000",
            "not-an-id",
            "%20",
            "",
        ])),
    ]
    .boxed();
    let objects = prop_oneof![
        3 => pick(t.objects.clone()),
        1 => pick(words(&[
            "attack-pattern--00000000-0000-0000-0000-000000000000",
            "attack-pattern--",
            "--",
            "%00",
        ])),
    ]
    .boxed();
    let tails = prop_oneof![
        Just(String::new()),
        Just("/collections".to_owned()),
        collections
            .clone()
            .prop_map(|c| format!("/collections/{c}")),
        collections
            .clone()
            .prop_map(|c| format!("/collections/{c}/objects")),
        collections
            .clone()
            .prop_map(|c| format!("/collections/{c}/manifest")),
        (collections.clone(), objects.clone())
            .prop_map(|(c, o)| format!("/collections/{c}/objects/{o}")),
        (collections, objects).prop_map(|(c, o)| format!("/collections/{c}/objects/{o}/versions")),
        odd_segment().prop_map(|s| format!("/status/{s}")),
        prop::collection::vec(odd_segment(), 1..4).prop_map(|s| format!("/{}", s.join("/"))),
    ];
    let taxii = (roots, tails, any::<bool>()).prop_map(|(root, tail, slash)| {
        let path = format!("{root}{tail}");
        if slash { format!("{path}/") } else { path }
    });
    prop_oneof![
        8 => taxii,
        1 => pick(words(&[
            "/taxii2/", "/taxii2", "/taxii2//", "/taxii2/..", "/health/ping", "/healthz",
            "/readyz", "/metrics", "/openapi.json", "/", "//", "/%2e%2e/etc/passwd",
        ])),
        1 => prop::collection::vec(odd_segment(), 1..5).prop_map(|s| format!("/{}", s.join("/"))),
    ]
    .boxed()
}

fn timestamp() -> BoxedStrategy<String> {
    prop_oneof![
        Just("2020-01-01T00:00:00Z".to_owned()),
        Just("2025-11-13T02:13:20.001001Z".to_owned()),
        Just("2025-11-13T02:13:20.123456789Z".to_owned()),
        Just("9999-12-31T23:59:59.999999Z".to_owned()),
        Just("0000-00-00T00:00:00Z".to_owned()),
        Just("2020-02-30T25:61:61Z".to_owned()),
        Just("yesterday".to_owned()),
        "[0-9TZ:.+-]{0,30}",
    ]
    .boxed()
}

fn parameter(t: &Targets) -> BoxedStrategy<String> {
    let ids = {
        let mut ids = t.objects.clone();
        ids.extend(words(&["x--y", "", "attack-pattern--%00", ","]));
        ids
    };
    let mut types = t.types.clone();
    types.extend(words(&[
        "",
        "*",
        "attack-pattern,malware",
        "%00",
        "ATTACK-PATTERN",
    ]));
    let mut cursors = t.cursors.clone();
    cursors.extend(words(&[
        "",
        "abc",
        "%00",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "eyJ9",
    ]));
    let versions = prop_oneof![
        pick(words(&[
            "last",
            "first",
            "all",
            "",
            "last,first",
            "garbage",
            "all,2020-01-01T00:00:00Z"
        ])),
        timestamp(),
    ];
    let limits = pick(words(&[
        "1",
        "2",
        "5",
        "50",
        "0",
        "-1",
        "99999999999999999999999",
        "abc",
        "1.5",
        "",
        " 1",
        "+3",
    ]));
    let keys = pick(words(&[
        "match%5Btype%5D",
        "MATCH[TYPE]",
        "match[",
        "match[]",
        "limit[]",
        "next%00",
        "%FF",
        "",
    ]));
    prop_oneof![
        timestamp().prop_map(|v| format!("added_after={v}")),
        pick(ids.clone()).prop_map(|v| format!("match[id]={v}")),
        prop::collection::vec(pick(ids), 2..4).prop_map(|v| format!("match[id]={}", v.join(","))),
        pick(types).prop_map(|v| format!("match[type]={v}")),
        versions.prop_map(|v| format!("match[version]={v}")),
        pick(words(&["2.0", "2.1", "2.0,2.1", "3.0", ""]))
            .prop_map(|v| format!("match[spec_version]={v}")),
        limits.prop_map(|v| format!("limit={v}")),
        pick(cursors).prop_map(|v| format!("next={v}")),
        (keys, "[a-z0-9%]{0,8}").prop_map(|(k, v)| format!("{k}={v}")),
        "[a-zA-Z0-9%\\[\\]=&;+.,-]{0,24}",
    ]
    .boxed()
}

/// A query string. Listings without `limit` send a whole collection: most queries carry a small
/// one so that 10,000 requests stay quick, and the rest exercise the unlimited path.
fn query(t: &Targets) -> BoxedStrategy<String> {
    let bounded = prop_oneof![
        9 => (1u32..20).prop_map(|n| Some(format!("limit={n}"))),
        1 => Just(None),
    ];
    (
        prop::collection::vec(parameter(t), 0..5),
        bounded,
        pick(words(&["?", "?", "?", "??", "?&", "?;"])),
    )
        .prop_map(|(mut parameters, limit, mark)| {
            parameters.extend(limit);
            if parameters.is_empty() {
                String::new()
            } else {
                format!("{mark}{}", parameters.join("&"))
            }
        })
        .boxed()
}

fn header() -> BoxedStrategy<(String, String)> {
    let named = |name: &'static str, values: &[&str]| {
        pick(words(values)).prop_map(move |v| (name.to_owned(), v))
    };
    prop_oneof![
        3 => named("accept", &[
            TAXII, "application/taxii+json", "*/*", "application/json", "text/html", "",
            "application/taxii+json;version=2.0", "application/stix+json;version=2.1",
            "application/*", "*/*;q=0", "application/taxii+json;version=2.1;q=0",
            "garbage/;;", "application/taxii+json;version=2.1, text/html;q=0.1",
        ]),
        1 => named("range", &["bytes=0-10", "items 0-10", "items=0-10", "garbage", ""]),
        1 => named("authorization", &[
            "Bearer x", "Basic garbage", "Basic YTpi", "Bearer ", "Digest x", "",
        ]),
        1 => named("if-none-match", &["*", "\"x\"", "W/\"x\"", "garbage", ""]),
        1 => named("accept-encoding", &[
            "gzip", "br", "zstd", "deflate", "identity;q=0", "*", "gzip;q=0, br", "garbage",
        ]),
        1 => named("content-type", &[TAXII, "application/json", "text/plain", "garbage"]),
        1 => ("x-[a-z]{1,10}", "[ -~]{0,40}").prop_map(|(k, v)| (k, v)),
    ]
    .boxed()
}

fn request(t: &Targets) -> BoxedStrategy<Generated> {
    let method = pick(words(&[
        "GET", "GET", "GET", "GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
        "OPTIONS", "TRACE", "PROPFIND", "get",
    ]));
    (
        method,
        path(t),
        query(t),
        prop::collection::vec(header(), 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(method, path, query, headers, body)| {
            let body = if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
                body
            } else {
                Vec::new()
            };
            Generated {
                method,
                path,
                query,
                headers,
                body,
            }
        })
        .boxed()
}

/// The body as sent, decoded per its Content-Encoding.
fn decoded(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let read = match encoding {
        None | Some("identity") => return Ok(body.to_vec()),
        Some("gzip") => flate2::read::GzDecoder::new(body).read_to_end(&mut out),
        Some("deflate") => flate2::read::ZlibDecoder::new(body).read_to_end(&mut out),
        Some("br") => brotli_decompressor::Decompressor::new(body, 4096).read_to_end(&mut out),
        Some("zstd") => {
            zstd::stream::read::Decoder::new(body).and_then(|mut d| d.read_to_end(&mut out))
        }
        Some(other) => return Err(format!("unknown content-encoding {other}")),
    };
    read.map(|_| out)
        .map_err(|e| format!("undecodable {encoding:?} body: {e}"))
}

/// Sends one request; what is wrong with its answer, if anything, and its status.
async fn exchange(client: &reqwest::Client, base: &str, g: &Generated) -> Result<u16, String> {
    let url = format!("{base}{}{}", g.path, g.query);
    let method = Method::from_bytes(g.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client.request(method.clone(), &url).body(g.body.clone());
    for (k, v) in &g.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{g:?}: no answer: {e}"))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        // Not read: a whole collection would only cost time, and nothing is checked in it.
        return Ok(status.as_u16());
    }
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{g:?}: {status}: body failed: {e}"))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if status.is_server_error() {
        return Err(format!("{g:?} ({url}): {status}: {body:?}"));
    }
    if header("content-type") != Some(TAXII) {
        return Err(format!(
            "{g:?} ({url}): {status} with content-type {:?}",
            header("content-type")
        ));
    }
    // A HEAD answer has the headers of the GET answer and no body.
    if method == Method::HEAD {
        return Ok(status.as_u16());
    }
    let body =
        decoded(header("content-encoding"), &body).map_err(|e| format!("{g:?} ({url}): {e}"))?;
    let text = String::from_utf8_lossy(&body);
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{g:?} ({url}): {status}: not JSON ({e}): {text}"))?;
    let titled = json["title"].as_str().is_some_and(|t| !t.is_empty());
    if !titled || json["http_status"].as_str() != Some(status.as_str()) {
        return Err(format!(
            "{g:?} ({url}): {status}: not a TAXII error message: {json}"
        ));
    }
    Ok(status.as_u16())
}

#[test]
fn ten_thousand_hostile_requests_get_no_5xx_and_every_4xx_is_a_taxii_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (api, targets) = runtime.block_on(async {
        let api = listening(ServerConfig::default(), collections()).await;
        let targets = Targets::gather(&api).await;
        (api, targets)
    });
    let client = reqwest::Client::builder()
        .no_gzip()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let statuses = Mutex::new(BTreeMap::<u16, usize>::new());
    let started = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(
        &prop::collection::vec(request(&targets), PER_CASE),
        |batch| {
            let answers: Vec<Result<u16, String>> = runtime.block_on(
                futures::stream::iter(batch.iter())
                    .map(|g| exchange(&client, &api.base, g))
                    .buffer_unordered(CONCURRENCY)
                    .collect(),
            );
            let mut failures = Vec::new();
            let mut counts = statuses.lock().unwrap();
            for answer in answers {
                match answer {
                    Ok(status) => *counts.entry(status).or_default() += 1,
                    Err(failure) => failures.push(failure),
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(TestCaseError::fail(failures.join("\n")))
            }
        },
    );
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let statuses = statuses.into_inner().unwrap();
    let answered: usize = statuses.values().sum();
    // Every case ran once without failing, so every request of every batch was answered.
    assert_eq!(answered, CASES as usize * PER_CASE);
    assert!(answered >= 10_000);
    eprintln!(
        "hostile HTTP: {answered} requests in {:?}, statuses {statuses:?}",
        started.elapsed()
    );
    runtime.block_on(api.stop()).unwrap();
}
