//! With authentication on, a caller gets no object of a collection it may not read: through every
//! root (default, each pinned release, history), every route, every filter, every `next` cursor,
//! and cursors minted on another collection or by another caller.
//!
//! The forbidden ids come from the bundle files: the ids of the collection the caller may not
//! read that no readable collection also holds (ATT&CK domains share their marking definition
//! and MITRE's identity). Every body is scanned for them; every refusal must be a TAXII error.

use std::collections::{BTreeSet, HashMap};

use axum::body::Body;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};

use crate::memory_server::*;
use api::Auth;
use api::config::ServerConfig;

const TAXII: &str = "application/taxii+json;version=2.1";
const ALL: &str = "Bearer all-collections-token";

/// alice may read ICS; anonymous callers Mobile; the token everything (it mints the cursors
/// the others replay).
fn auth() -> Auth {
    let hash = api::password::hash(b"pa55").unwrap();
    Auth::from_json(&format!(
        r#"{{"principals":[
            {{"name":"all","token_sha256":"{}","collections":["*"]}},
            {{"name":"ics-reader","username":"alice","password_hash":"{hash}","collections":["{ICS}"]}}],
          "anonymous":["{}"]}}"#,
        hex::encode(Sha256::digest(b"all-collections-token")),
        collection_of("mobile"),
    ))
    .unwrap()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// One caller and what it must never see.
struct Caller {
    name: &'static str,
    authorization: Option<String>,
    /// The collections it may read.
    readable: BTreeSet<String>,
    /// The collections it may not read.
    forbidden: BTreeSet<String>,
    /// Forbidden object ids, by their UUID part (what follows `--`), from the files.
    forbidden_ids: HashMap<String, String>,
    /// Every how many ids and filters are asked: a wrong password costs an argon2 check per
    /// request (by design), and bad credentials are refused before any route is looked at, so
    /// those callers ask a sample.
    sample: usize,
}

/// Object ids of a collection's bundle files.
fn ids_of(collection: &str) -> BTreeSet<String> {
    bundles()
        .iter()
        .filter(|b| b.collection_id == collection)
        .flat_map(|b| b.objects.iter())
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

fn caller(
    name: &'static str,
    authorization: Option<String>,
    readable: &[&str],
    sample: usize,
) -> Caller {
    let all: BTreeSet<String> = bundles().iter().map(|b| b.collection_id.clone()).collect();
    let readable: BTreeSet<String> = readable.iter().map(|s| (*s).to_owned()).collect();
    let forbidden: BTreeSet<String> = all.difference(&readable).cloned().collect();
    let allowed: BTreeSet<String> = readable.iter().flat_map(|c| ids_of(c)).collect();
    let forbidden_ids: HashMap<String, String> = forbidden
        .iter()
        .flat_map(|c| ids_of(c))
        .filter(|id| !allowed.contains(id))
        // A forbidden collection's own id names it in listings and refusals (existence is not
        // secret, docs/api.md); its object is looked for in `objects` arrays instead.
        .filter(|id| !forbidden.contains(id))
        .map(|id| {
            let (_, uuid) = id.split_once("--").unwrap();
            (uuid.to_owned(), id.clone())
        })
        .collect();
    assert!(
        forbidden_ids.len() > 100,
        "{name}: {} forbidden ids",
        forbidden_ids.len()
    );
    Caller {
        name,
        authorization,
        readable,
        forbidden,
        forbidden_ids,
        sample,
    }
}

/// What the walk saw, for the summary line and the final checks.
#[derive(Default)]
struct Tally {
    requests: usize,
    ok: usize,
    refused: usize,
    objects_seen: usize,
}

struct Walker<'a> {
    app: &'a axum::Router,
    caller: &'a Caller,
    tally: Tally,
}

impl Walker<'_> {
    async fn send(&mut self, method: &str, uri: &str, authorization: Option<&str>) -> Reply {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("accept", TAXII);
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        send(self.app, request.body(Body::empty()).unwrap()).await
    }

    /// `GET uri` as the caller, checked: no forbidden id in the body, no forbidden collection
    /// object in an `objects` array, no 5xx, every refusal a TAXII error body.
    async fn get(&mut self, uri: &str) -> Reply {
        let authorization = self.caller.authorization.clone();
        let reply = self.send("GET", uri, authorization.as_deref()).await;
        self.check(uri, &reply);
        reply
    }

    fn check(&mut self, uri: &str, reply: &Reply) {
        let who = self.caller.name;
        self.tally.requests += 1;
        assert!(reply.status.as_u16() < 500, "{who} {uri}: {}", reply.status);
        // A refusal may echo what the request named (a 404 names the id asked for); a success
        // names no forbidden id at all.
        let echo = if reply.status.is_success() { "" } else { uri };
        if let Some(id) = leaked(&reply.body, &self.caller.forbidden_ids, echo) {
            panic!("{who} {uri}: {} body names forbidden {id}", reply.status);
        }
        if reply.status.is_success() {
            self.tally.ok += 1;
            if reply.status == StatusCode::NO_CONTENT || reply.body.is_empty() {
                return;
            }
            let json = reply.json();
            if let Some(objects) = json["objects"].as_array() {
                self.tally.objects_seen += objects.len();
                for o in objects {
                    let id = o["id"].as_str().unwrap_or_default();
                    assert!(
                        !self.caller.forbidden.contains(id),
                        "{who} {uri}: served the forbidden collection's object"
                    );
                }
            }
        } else {
            self.tally.refused += 1;
            assert_eq!(reply.header("content-type"), Some(TAXII), "{who} {uri}");
            let body = reply.json();
            assert!(body["title"].is_string(), "{who} {uri}: {body}");
            assert_eq!(
                body["http_status"],
                reply.status.as_u16().to_string(),
                "{who} {uri}: {body}"
            );
        }
    }

    /// Follows `next` from `base` (which has a `limit`) as the caller, every page checked.
    async fn walk(&mut self, base: &str) {
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut uri = base.to_owned();
        for _ in 0..10_000 {
            let reply = self.get(&uri).await;
            if !reply.status.is_success() {
                return;
            }
            let json = reply.json();
            match (json["more"].as_bool(), json["next"].as_str()) {
                (Some(true), Some(next)) => uri = format!("{base}{sep}next={next}"),
                _ => return,
            }
        }
        panic!("{base}: endless paging");
    }
}

/// The first forbidden id `body` names that `echo` does not, if any: each `--` followed by a
/// known UUID, preceded by the id's type.
fn leaked(body: &[u8], forbidden: &HashMap<String, String>, echo: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = body[from..].windows(2).position(|w| w == b"--") {
        let dashes = from + at;
        let uuid_at = dashes + 2;
        if let Some(uuid) = body.get(uuid_at..uuid_at + 36)
            && let Ok(uuid) = std::str::from_utf8(uuid)
            && let Some(id) = forbidden.get(uuid)
        {
            let type_len = id.len() - 38;
            if dashes >= type_len
                && body[dashes - type_len..dashes] == id.as_bytes()[..type_len]
                && !echo.contains(id.as_str())
            {
                return Some(id.clone());
            }
        }
        from = dashes + 2;
    }
    None
}

/// A `next` cursor of `uri` as the all-collections token gets it; `None` for a collection the
/// root does not hold (Mobile has no 18.x release).
async fn cursor(app: &axum::Router, uri: &str) -> Option<String> {
    let reply = send(
        app,
        axum::http::Request::get(uri)
            .header("accept", TAXII)
            .header("authorization", ALL)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    if reply.status == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(reply.status, StatusCode::OK, "{uri}");
    reply.json()["next"].as_str().map(str::to_owned)
}

/// Every API root path the discovery document lists (as the all-collections token sees it).
async fn roots(app: &axum::Router) -> Vec<String> {
    let reply = send(
        app,
        axum::http::Request::get("/taxii2/")
            .header("accept", TAXII)
            .header("authorization", ALL)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let roots: Vec<String> = reply.json()["api_roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().trim_end_matches('/').to_owned())
        .collect();
    roots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_filter_or_cursor_serves_an_unreadable_collection() {
    let (app, _, _) = server_with(ServerConfig::default(), Some(auth())).await;
    let mobile = collection_of("mobile");
    let roots = roots(&app).await;
    // Default, history, and one pinned root per release of the files (17.0 … 18.1).
    let labels: BTreeSet<&str> = bundles().iter().map(|b| b.label.as_str()).collect();
    assert_eq!(roots.len(), 2 + labels.len(), "{roots:?}");
    let collections = [ICS.to_owned(), mobile.clone()];
    // Types of every collection, from the files: one `match[type]` each.
    let types: BTreeSet<String> = bundles()
        .iter()
        .flat_map(|b| b.objects.iter())
        .map(|o| o["type"].as_str().unwrap().to_owned())
        .collect();

    // Cursors minted by a caller who may read everything, on every root and collection, to be
    // replayed by callers who may not.
    let mut minted = Vec::new();
    for root in &roots {
        for c in &collections {
            for listing in ["objects/?limit=5", "manifest/?limit=5"] {
                let uri = format!("{root}/collections/{c}/{listing}");
                if let Some(next) = cursor(&app, &uri).await {
                    minted.push((root.clone(), c.clone(), next));
                }
            }
        }
    }
    assert!(minted.len() >= 2 * roots.len(), "{} cursors", minted.len());

    let callers = [
        caller("alice", Some(basic("alice", "pa55")), &[ICS], 1),
        caller("anonymous", None, &[&mobile], 1),
        caller("wrong password", Some(basic("alice", "pa56")), &[], 400),
        caller(
            "unknown token",
            Some("Bearer not-a-token".to_owned()),
            &[],
            20,
        ),
    ];
    for caller in &callers {
        let started = std::time::Instant::now();
        let mut w = Walker {
            app: &app,
            caller,
            tally: Tally::default(),
        };
        w.get("/taxii2/").await;
        // A sampling caller is refused before routing: a third of the roots say as much.
        let step = if caller.sample > 1 { 3 } else { 1 };
        for root in roots.iter().step_by(step) {
            w.get(&format!("{root}/")).await;
            w.get(&format!("{root}/collections/")).await;
            w.get(&format!("{root}/collections")).await;
            w.get(&format!("{root}/status/{}/", uuid::Uuid::new_v4()))
                .await;
            for c in &collections {
                let readable = caller.readable.contains(c);
                let base = format!("{root}/collections/{c}");
                let collection = w.get(&format!("{base}/")).await;
                // Its description is no secret (listings show every collection, docs/api.md);
                // it must say the caller cannot read it.
                if collection.status.is_success() {
                    assert_eq!(
                        collection.json()["can_read"],
                        readable,
                        "{} {base}/",
                        caller.name
                    );
                }
                let mut queries: Vec<String> = [
                    "",
                    "?limit=1",
                    "?limit=97",
                    "?match[version]=all&limit=211",
                    "?match[version]=first&limit=300",
                    "?match[version]=last&limit=300",
                    "?match[version]=all",
                    "?match[spec_version]=2.1&limit=400",
                    "?match[spec_version]=2.0",
                    "?added_after=1970-01-01T00:00:00Z&limit=500",
                    "?added_after=2025-11-13T02:13:20.001001Z",
                    "?match[version]=2025-04-16T00:00:00.000Z,all",
                ]
                .iter()
                .map(|q| (*q).to_owned())
                .collect();
                queries.extend(types.iter().map(|t| format!("?match[type]={t}&limit=250")));
                // Forbidden ids asked for by name, 40 at a time.
                let asked: Vec<&String> = caller.forbidden_ids.values().collect();
                for ids in asked.chunks(40).step_by(caller.sample) {
                    let list: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
                    queries.push(format!(
                        "?match[id]={}&match[version]=all&limit=20",
                        list.join(",")
                    ));
                }
                for listing in ["objects", "manifest"] {
                    for q in queries.iter().step_by(caller.sample.min(4)) {
                        let uri = format!("{base}/{listing}/{q}");
                        if q.contains("limit") {
                            w.walk(&uri).await;
                        } else {
                            let reply = w.get(&uri).await;
                            if !readable {
                                assert!(!reply.status.is_success(), "{} {uri}", caller.name);
                            }
                        }
                    }
                }
                // Forbidden objects by id (every one is asked by `match[id]` above; one in four
                // by path, which goes through the same lookup): 404 through a readable
                // collection, a refusal through a forbidden one, never the object.
                for id in caller.forbidden_ids.values().step_by(caller.sample.max(4)) {
                    for path in [
                        format!("{base}/objects/{id}/"),
                        format!("{base}/objects/{id}/versions/?limit=1"),
                    ] {
                        if path.contains("limit") {
                            w.walk(&path).await;
                        } else {
                            let reply = w.get(&path).await;
                            assert!(!reply.status.is_success(), "{} {path}", caller.name);
                        }
                    }
                }
                // The forbidden collection's own object, by id and in a versions listing.
                for f in &caller.forbidden {
                    for path in [
                        format!("{base}/objects/{f}/"),
                        format!("{base}/objects/{f}/versions/"),
                        format!("{base}/objects/{f}"),
                    ] {
                        let reply = w.get(&path).await;
                        assert!(!reply.status.is_success(), "{} {path}", caller.name);
                    }
                }
                // Writes are refused with a TAXII body whoever asks.
                let authorization = caller.authorization.clone();
                let reply = w
                    .send(
                        "POST",
                        &format!("{base}/objects/"),
                        authorization.as_deref(),
                    )
                    .await;
                w.check(&format!("POST {base}/objects/"), &reply);
                assert!(!reply.status.is_success());
            }
            // Every minted cursor replayed on every collection of this root.
            for (from_root, from_collection, next) in minted.iter().step_by(caller.sample.min(4)) {
                for c in &collections {
                    for listing in ["objects", "manifest"] {
                        let uri = format!("{root}/collections/{c}/{listing}/?limit=5&next={next}");
                        let reply = w.get(&uri).await;
                        if !caller.readable.contains(c) {
                            assert!(
                                !reply.status.is_success(),
                                "{}: a cursor of {from_root} {from_collection} opened {uri}",
                                caller.name
                            );
                        }
                    }
                }
            }
        }
        let t = &w.tally;
        println!(
            "{}: {} requests, {} answered 2xx ({} objects), {} refused; 0 forbidden ids served \
             ({:.1?})",
            caller.name,
            t.requests,
            t.ok,
            t.objects_seen,
            t.refused,
            started.elapsed()
        );
        if caller.readable.is_empty() {
            assert_eq!(t.ok, 0, "{}: nothing is readable", caller.name);
        } else {
            assert!(
                t.objects_seen > 1_000,
                "{}: the walk read objects",
                caller.name
            );
        }
    }
}

#[test]
fn the_scanner_finds_an_id_by_type_and_uuid() {
    let ids: HashMap<String, String> = [(
        "0b1e1f2a-0000-4000-8000-000000000001".to_owned(),
        "attack-pattern--0b1e1f2a-0000-4000-8000-000000000001".to_owned(),
    )]
    .into();
    let body = br#"{"objects":[{"id":"attack-pattern--0b1e1f2a-0000-4000-8000-000000000001"}]}"#;
    assert!(leaked(body, &ids, "").is_some());
    assert!(
        leaked(
            body,
            &ids,
            "/objects/attack-pattern--0b1e1f2a-0000-4000-8000-000000000001/"
        )
        .is_none()
    );
    // The same UUID under another type is another object.
    let other = br#"{"id":"malware--0b1e1f2a-0000-4000-8000-000000000001"}"#;
    assert!(leaked(other, &ids, "").is_none());
    assert!(leaked(b"--", &ids, "").is_none());
}
