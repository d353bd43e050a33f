//! The live stream (`…/collections/{id}/stream/`) over the real pipeline: a subscriber connected
//! while ICS 18.0 and then 18.1 are imported receives exactly the versions each import adds to
//! the history root (computed from the files), in `date_added` order; a reconnect with
//! `Last-Event-ID` resumes without gap or repeat; a subscriber over the cap gets a TAXII 503.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use api::config::ServerConfig;

use ingest::config::ImportConfig;
use serde_json::Value;
use taxiway_tests::Deadline;
use taxiway_tests::api::{Api, key_of, micros, serve_projected};
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;
use taxiway_tests::sse::{EventStream, SseEvent};

use crate::memory_server::{ICS, collections, listening};

/// The (id, version) pairs the history root gets anew when `next` is imported after
/// `before`: versions it did not have, and versions it re-issues with other content (delivered
/// again as corrections).
fn added_by(before: &[&Release], next: &Release) -> BTreeMap<(String, String), Value> {
    let mut known: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for file in before {
        for o in &file.objects {
            known.insert(key_of(o), o);
        }
    }
    next.objects
        .iter()
        .filter(|o| known.get(&key_of(o)).is_none_or(|k| *k != *o))
        .map(|o| (key_of(o), o.clone()))
        .collect()
}

/// Checks events are objects with strictly increasing ids (date_added) and returns them parsed.
fn objects(what: &str, events: &[SseEvent]) -> Vec<Value> {
    let mut last = i128::MIN;
    events
        .iter()
        .map(|e| {
            assert_eq!(e.event.as_deref(), Some("object"), "{what}: {e:?}");
            let at = micros(e.id.as_deref().expect("an id")).unwrap();
            assert!(at > last, "{what}: ids not increasing at {e:?}");
            last = at;
            serde_json::from_str(&e.data).unwrap()
        })
        .collect()
}

fn check(what: &str, received: &[Value], expected: &BTreeMap<(String, String), Value>) {
    let keys: BTreeSet<_> = received.iter().map(key_of).collect();
    assert_eq!(keys.len(), received.len(), "{what}: a version sent twice");
    let want: BTreeSet<_> = expected.keys().cloned().collect();
    assert_eq!(keys, want, "{what}: other versions than the import added");
    for o in received {
        assert_eq!(o, &expected[&key_of(o)], "{what}: {:?} differs", key_of(o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_gets_exactly_what_each_import_adds_and_resumes_without_gap_or_repeat() {
    let files: Vec<Release> = [
        "ics-attack-17.1.json.zst",
        "ics-attack-18.0.json.zst",
        "ics-attack-18.1.json.zst",
    ]
    .iter()
    .map(|n| Release::load(n).unwrap())
    .collect();
    let id = files[0].collection_id();
    let topics = Topics::new("api_stream");
    let import = |name: &str| {
        let path = fixtures::path(name);
        let topics = &topics;
        async move { topics.ingest(ImportConfig::new([&path])).await.unwrap() }
    };
    import("ics-attack-17.1.json.zst").await;
    let events = topics.events().await.unwrap();
    let revisions = projection::final_revisions(events.iter().map(|(_, e)| e));
    let (_control, projector, api) = serve_projected(&topics, "api_stream", &revisions)
        .await
        .unwrap();
    // A second replica on the same projections, with two stream slots.
    let mut config = Api::config(&_control);
    config.server.limits.max_stream_subscribers = 2;
    let capped = Api::start_with(config).await.unwrap();
    capped
        .wait_for_revisions(&revisions, Deadline::after(Duration::from_secs(120)))
        .await
        .unwrap();

    let history = format!("{}/api/v21/history/collections/{id}/stream/", api.base);
    // Without a position: only what is added after connecting.
    let mut live = EventStream::open(&api.client, &history, &[]).await.unwrap();

    import("ics-attack-18.0.json.zst").await;
    let expected_18_0 = added_by(&[&files[0]], &files[1]);
    assert!(!expected_18_0.is_empty());
    let deadline = Deadline::after(Duration::from_secs(300));
    let first = live.take(expected_18_0.len(), &deadline).await.unwrap();
    check("18.0", &objects("18.0", &first), &expected_18_0);

    // A client that dropped in the middle of 18.0 resumes from the last id it saw, on the
    // capped replica (same projections, same date_added).
    let middle = first.len() / 2;
    let resume_at = first[middle].id.clone().unwrap();
    let capped_url = format!("{}/api/v21/history/collections/{id}/stream/", capped.base);
    let mut resumed = EventStream::open(
        &capped.client,
        &capped_url,
        &[("last-event-id", &resume_at)],
    )
    .await
    .unwrap();
    let rest = resumed
        .take(first.len() - middle - 1, &deadline)
        .await
        .unwrap();
    assert_eq!(rest, first[middle + 1..], "resumed without gap or repeat");
    // added_after does the same as Last-Event-ID.
    let mut polled = EventStream::open(
        &capped.client,
        &format!("{capped_url}?added_after={resume_at}"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        polled.take(rest.len(), &deadline).await.unwrap(),
        rest,
        "added_after"
    );

    // Both slots of the capped replica are taken: a third subscriber is refused at once.
    let refused = capped
        .client
        .get(&capped_url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["http_status"], "503");
    drop(polled);

    import("ics-attack-18.1.json.zst").await;
    let expected_18_1 = added_by(&[&files[0], &files[1]], &files[2]);
    let second = live.take(expected_18_1.len(), &deadline).await.unwrap();
    check("18.1", &objects("18.1", &second), &expected_18_1);
    assert!(
        micros(second[0].id.as_deref().unwrap()).unwrap()
            > micros(first.last().unwrap().id.as_deref().unwrap()).unwrap()
    );
    // The resumed subscriber, still connected, got the same 18.1 events.
    assert_eq!(resumed.take(second.len(), &deadline).await.unwrap(), second);
    // Heartbeats keep an idle stream open past the keep-alive timeout (5 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let metrics = api.get("/metrics").await.unwrap().text();
    assert!(
        metrics.contains("taxiway_api_stream_subscribers 1"),
        "{metrics}"
    );
    let sent = (expected_18_0.len() + expected_18_1.len()).to_string();
    assert!(
        metrics.contains(&format!("taxiway_api_stream_events_total {sent}")),
        "{metrics}"
    );
    drop(live);
    drop(resumed);
    capped.stop().await.unwrap();
    api.stop().await.unwrap();
    projector.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_position_is_a_taxii_400_naming_it() {
    let api = listening(ServerConfig::default(), collections()).await;
    let url = format!("{}/api/v21/collections/{ICS}/stream/", api.base);
    for (query, header, parameter) in [
        ("?added_after=yesterday", None, "added_after"),
        ("", Some("not-a-time"), "Last-Event-ID"),
    ] {
        let mut request = api
            .client
            .get(format!("{url}{query}"))
            .header("accept", "text/event-stream");
        if let Some(h) = header {
            request = request.header("last-event-id", h);
        }
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status(), reqwest::StatusCode::BAD_REQUEST);
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["http_status"], "400");
        assert!(body.to_string().contains(parameter), "{body}");
    }
    api.stop().await.unwrap();
}
