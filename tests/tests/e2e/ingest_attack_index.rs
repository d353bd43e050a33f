//! `ingest attack-index URL --once` against the real broker: a local HTTP server serves an
//! ATT&CK collection index whose URLs point at itself and the real release files; what lands
//! on the topic is checked against expectations computed from those files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ingest::config::AttackIndexConfig;
use schemas::Event;
use serde_json::{Value, json};
use taxiway_tests::fixtures::{self, Release, id_of, version_of};
use taxiway_tests::pipeline::Topics;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The release files every data directory has (a fresh clone ships these five).
const FILES: [&str; 5] = taxiway_tests::fixtures::SHIPPED_RELEASES;

/// What the index endpoint answers.
#[derive(Clone)]
enum IndexReply {
    Json(Value),
    Status(StatusCode),
}

#[derive(Clone)]
struct Served {
    index: Arc<Mutex<IndexReply>>,
    /// Body of each file by name.
    files: Arc<HashMap<String, Vec<u8>>>,
}

/// An HTTP server on 127.0.0.1:<random port> serving `/index.json` and `/files/<name>`.
/// Mobile files are served decompressed, the others as stored (zstd), so both kinds of body
/// are read. Stops when dropped.
struct IndexServer {
    base: String,
    served: Served,
    _stop: oneshot::Sender<()>,
}

impl IndexServer {
    async fn start() -> IndexServer {
        let files = FILES
            .iter()
            .map(|name| {
                let stored = std::fs::read(fixtures::path(name)).unwrap();
                let body = if name.starts_with("mobile") {
                    zstd::decode_all(stored.as_slice()).unwrap()
                } else {
                    stored
                };
                (name.to_string(), body)
            })
            .collect();
        let served = Served {
            index: Arc::new(Mutex::new(IndexReply::Json(json!({"collections": []})))),
            files: Arc::new(files),
        };
        let app = Router::new()
            .route("/index.json", get(index))
            .route("/files/{name}", get(file))
            .with_state(served.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        IndexServer {
            base: format!("http://{address}"),
            served,
            _stop: stop,
        }
    }

    fn index_url(&self) -> String {
        format!("{}/index.json", self.base)
    }

    fn file_url(&self, name: &str) -> String {
        format!("{}/files/{name}", self.base)
    }

    fn answer(&self, reply: IndexReply) {
        *self.served.index.lock().unwrap() = reply;
    }

    /// An index in MITRE's shape, collections in first-listed order, each one's versions
    /// newest first as MITRE lists them.
    fn index_of(&self, entries: &[Entry]) -> Value {
        let mut collections: Vec<(String, Value)> = Vec::new();
        for entry in entries.iter().rev() {
            let version = json!({
                "version": entry.version,
                "url": self.file_url(&entry.file),
                "modified": entry.modified,
            });
            match collections
                .iter_mut()
                .find(|(id, _)| *id == entry.collection_id)
            {
                Some((_, c)) => c["versions"].as_array_mut().unwrap().push(version),
                None => collections.push((
                    entry.collection_id.clone(),
                    json!({
                        "id": entry.collection_id,
                        "name": entry.name,
                        "description": entry.description,
                        "created": "2018-01-17T12:56:55.080Z",
                        "versions": [version],
                    }),
                )),
            }
        }
        json!({
            "id": "10296991-439b-4202-90a3-e38812613ad4",
            "name": "MITRE ATT&CK",
            "collections": collections.into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
        })
    }
}

async fn index(State(served): State<Served>) -> Response {
    let reply = served.index.lock().unwrap().clone();
    match reply {
        IndexReply::Json(value) => axum::Json(value).into_response(),
        IndexReply::Status(status) => (status, "index unavailable").into_response(),
    }
}

async fn file(State(served): State<Served>, Path(name): Path<String>) -> Response {
    match served.files.get(&name) {
        Some(body) => body.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// One index entry, as the file's own collection object describes it.
#[derive(Debug, Clone)]
struct Entry {
    file: String,
    collection_id: String,
    name: String,
    description: String,
    version: String,
    modified: String,
}

impl Entry {
    fn of(release: &Release) -> Entry {
        let c = release.collection().unwrap();
        let text = |key: &str| c[key].as_str().unwrap().to_owned();
        Entry {
            file: release.name.clone(),
            collection_id: text("id"),
            name: text("name"),
            description: text("description"),
            version: text("x_mitre_version"),
            modified: text("modified"),
        }
    }
}

/// "17.1" → [17, 1]: release order as numbers.
fn numeric(version: &str) -> Vec<u64> {
    version.split('.').map(|p| p.parse().unwrap()).collect()
}

async fn run(topics: &Topics, url: &str) -> ingest::Summary {
    let settings = topics.settings(AttackIndexConfig::new(url, true));
    ingest::run(settings, CancellationToken::new())
        .await
        .unwrap()
}

fn pass(summary: &ingest::Summary) -> &ingest::attack_index::IndexPass {
    match summary {
        ingest::Summary::AttackIndex(s) => s.pass.as_ref().unwrap(),
        other => panic!("not an attack-index summary: {other}"),
    }
}

#[tokio::test]
async fn every_listed_release_is_imported_in_version_order_and_a_second_poll_publishes_nothing() {
    let files: Vec<Release> = FILES.iter().map(|n| Release::load(n).unwrap()).collect();
    let entries: Vec<Entry> = files.iter().map(Entry::of).collect();
    let server = IndexServer::start().await;
    server.answer(IndexReply::Json(server.index_of(&entries)));
    let topics = Topics::new("index_all");

    let summary = run(&topics, &server.index_url()).await;
    assert_eq!(summary.outcome(), ingest::Outcome::Complete, "{summary}");
    let events = topics.events().await.unwrap();

    // Per collection, in the order its files are releases (numerically, whatever the index
    // order): the releases, the distinct versions and the corrections those files make.
    let mut by_collection: BTreeMap<String, Vec<(&Entry, &Release)>> = BTreeMap::new();
    for (entry, file) in entries.iter().zip(&files) {
        by_collection
            .entry(entry.collection_id.clone())
            .or_default()
            .push((entry, file));
    }
    for (collection, mut releases) in by_collection {
        releases.sort_by_key(|(entry, _)| numeric(&entry.version));
        let of_collection: Vec<&Event> = events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.collection_id() == collection)
            .collect();

        // Releases on the topic in offset order (one collection → one partition), each
        // with exactly its file's objects.
        let mut labels: Vec<String> = Vec::new();
        let mut members: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
        for e in &of_collection {
            if let Event::Release(r) = e {
                if labels.last() != Some(&r.label) {
                    labels.push(r.label.clone());
                }
                members
                    .entry((r.label.clone(), r.release_version.clone()))
                    .or_default()
                    .extend(
                        r.members
                            .iter()
                            .map(|m| (m.object_id.clone(), m.version.clone())),
                    );
            }
        }
        let expected_labels: Vec<String> =
            releases.iter().map(|(e, _)| e.version.clone()).collect();
        assert_eq!(labels, expected_labels, "{collection}: release order");
        let expected_members: BTreeMap<(String, String), BTreeSet<(String, String)>> = releases
            .iter()
            .map(|(e, f)| ((e.version.clone(), e.modified.clone()), f.versions()))
            .collect();
        assert_eq!(members, expected_members, "{collection}: release members");

        // Every distinct version once, plus one correction per re-issued content, counted
        // over the files in release order.
        let versions: Vec<&schemas::ObjectVersionAdded> = of_collection
            .iter()
            .filter_map(|e| match e {
                Event::ObjectVersion(v) => Some(v),
                _ => None,
            })
            .collect();
        let distinct: BTreeSet<(String, String)> =
            releases.iter().flat_map(|(_, f)| f.versions()).collect();
        let mut last: BTreeMap<(String, String), &Value> = BTreeMap::new();
        let mut corrections = 0;
        for (_, file) in &releases {
            for object in &file.objects {
                if let Some(previous) = last.insert((id_of(object), version_of(object)), object)
                    && previous != object
                {
                    corrections += 1;
                }
            }
        }
        let published: BTreeSet<(String, String)> = versions
            .iter()
            .map(|v| (v.object_id.clone(), v.version.clone()))
            .collect();
        assert_eq!(published, distinct, "{collection}: versions");
        assert_eq!(versions.len(), distinct.len() + corrections, "{collection}");
        // Each event names the file it came from by its URL.
        let urls: BTreeSet<String> = releases
            .iter()
            .map(|(e, _)| server.file_url(&e.file))
            .collect();
        assert!(
            versions.iter().all(|v| urls.contains(&v.source.uri)),
            "{collection}: sources"
        );
    }

    // A second poll, in a new run that rebuilds its checkpoint from the topic, downloads and
    // publishes nothing.
    let before = topics.object_records().await.unwrap().len();
    let again = run(&topics, &server.index_url()).await;
    assert_eq!(again.outcome(), ingest::Outcome::Complete, "{again}");
    assert_eq!(pass(&again).known, FILES.len(), "{again}");
    assert_eq!(pass(&again).imported, 0, "{again}");
    assert_eq!(topics.object_records().await.unwrap().len(), before);
}

#[tokio::test]
async fn a_failing_or_empty_index_publishes_nothing_fails_the_run_and_keeps_what_is_known() {
    let release = Release::load("ics-attack-18.1.json.zst").unwrap();
    let server = IndexServer::start().await;
    let good = server.index_of(&[Entry::of(&release)]);
    server.answer(IndexReply::Json(good.clone()));
    let topics = Topics::new("index_broken");
    let first = run(&topics, &server.index_url()).await;
    assert_eq!(first.outcome(), ingest::Outcome::Complete, "{first}");
    let known = topics.object_records().await.unwrap().len();
    assert!(known > release.objects.len(), "the release was published");

    for (reply, says) in [
        (IndexReply::Status(StatusCode::INTERNAL_SERVER_ERROR), "500"),
        (
            IndexReply::Json(json!({"collections": []})),
            "lists no releases",
        ),
        (
            IndexReply::Json(json!({"objects": []})),
            "not an ATT&CK collection index",
        ),
    ] {
        server.answer(reply);
        let summary = run(&topics, &server.index_url()).await;
        let text = summary.to_string();
        assert_eq!(summary.outcome(), ingest::Outcome::InputsFailed, "{text}");
        assert!(text.contains(&server.index_url()), "{text}");
        assert!(text.contains(says), "{says}: {text}");
        assert_eq!(
            topics.object_records().await.unwrap().len(),
            known,
            "{says}"
        );
    }

    // Once the index answers again, the release is still known: nothing to do.
    server.answer(IndexReply::Json(good));
    let back = run(&topics, &server.index_url()).await;
    assert_eq!(back.outcome(), ingest::Outcome::Complete, "{back}");
    assert_eq!(pass(&back).known, 1, "{back}");
    assert_eq!(topics.object_records().await.unwrap().len(), known);
}

#[tokio::test]
async fn a_file_that_disagrees_with_its_index_entry_is_rejected_naming_its_url() {
    let load = |name: &str| Entry::of(&Release::load(name).unwrap());
    let ics_181 = load("ics-attack-18.1.json.zst");
    let ics_180 = load("ics-attack-18.0.json.zst");
    let ics_171 = load("ics-attack-17.1.json.zst");
    let mobile_170 = load("mobile-attack-17.0.json.zst");
    let mobile_171 = load("mobile-attack-17.1.json.zst");
    // The index calls ICS 18.1's file 18.0 (same modified), gives ICS 18.0's file the modified
    // of 17.1, and lists Mobile 17.1's file as an ICS release; Mobile 17.0 is right.
    let wrong_version = Entry {
        version: ics_180.version.clone(),
        ..ics_181.clone()
    };
    let wrong_modified = Entry {
        modified: ics_171.modified.clone(),
        ..ics_180.clone()
    };
    let wrong_collection = Entry {
        file: mobile_171.file.clone(),
        version: mobile_171.version.clone(),
        modified: mobile_171.modified.clone(),
        ..ics_171.clone()
    };
    let bad = [&wrong_version, &wrong_modified, &wrong_collection];
    let server = IndexServer::start().await;
    let entries = [
        wrong_version.clone(),
        wrong_modified.clone(),
        wrong_collection.clone(),
        mobile_170.clone(),
    ];
    server.answer(IndexReply::Json(server.index_of(&entries)));
    let topics = Topics::new("index_mismatch");

    let summary = run(&topics, &server.index_url()).await;
    let text = summary.to_string();
    assert_eq!(summary.outcome(), ingest::Outcome::InputsFailed, "{text}");
    let failed = &pass(&summary).failed;
    assert_eq!(failed.len(), bad.len(), "{text}");
    for (entry, what) in bad
        .iter()
        .zip(["has x_mitre_version", "has modified", "has id"])
    {
        let url = server.file_url(&entry.file);
        assert!(
            failed.iter().any(|f| f.contains(&url) && f.contains(what)),
            "{url} ({what}): {text}"
        );
    }

    // Nothing of the rejected files: only Mobile 17.0's collection, objects and release.
    let events = topics.events().await.unwrap();
    let good_url = server.file_url(&mobile_170.file);
    let sources: BTreeSet<&str> = events
        .iter()
        .map(|(_, e)| match e {
            Event::Collection(c) => c.source.uri.as_str(),
            Event::ObjectVersion(v) => v.source.uri.as_str(),
            Event::Release(r) => r.source.uri.as_str(),
        })
        .collect();
    assert_eq!(sources, BTreeSet::from([good_url.as_str()]));
    let labels: BTreeSet<&str> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Release(r) => Some(r.label.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(labels, BTreeSet::from([mobile_170.version.as_str()]));
}
