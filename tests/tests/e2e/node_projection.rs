//! A node's in-memory projection against the CQL projection of the same topic: the API over
//! each answers every root, collection, listing page and object with the same bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ingest::config::ImportConfig;
use projector::batch::BatchWriter;
use projector::metrics::Metrics;
use schemas::Event;
use serde_json::Value;
use service::Secret;
use tokio_util::sync::CancellationToken;

use node::Projection;
use taxiway_tests::Deadline;
use taxiway_tests::api::Api;
use taxiway_tests::fixtures;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

/// Objects per listing page: several pages per collection.
const PAGE: usize = 400;

/// What one GET answered: status, content type and the body with the server's own base URL
/// replaced by `BASE` (discovery names roots by absolute URL).
type Answer = (u16, Option<String>, String);

async fn get(api: &Api, path: &str, answers: &mut BTreeMap<String, Answer>) -> Value {
    let reply = api.get(path).await.unwrap();
    let body = reply.text().replace(&api.base, "BASE");
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    answers.insert(
        path.to_owned(),
        (
            reply.status.as_u16(),
            reply.header("content-type").map(str::to_owned),
            body,
        ),
    );
    json
}

/// Every root, collection, page of objects and manifest, and the first objects' versions.
async fn crawl(api: &Api) -> BTreeMap<String, Answer> {
    let mut answers = BTreeMap::new();
    let discovery = get(api, "/taxii2/", &mut answers).await;
    let roots: Vec<String> = discovery["api_roots"]
        .as_array()
        .expect("api_roots")
        .iter()
        .map(|r| r.as_str().unwrap().replace("BASE", ""))
        .collect();
    assert!(roots.len() > 2, "{discovery}");
    for root in roots {
        get(api, &root, &mut answers).await;
        let collections = get(api, &format!("{root}collections/"), &mut answers).await;
        for collection in collections["collections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let base = format!("{root}collections/{}/", collection["id"].as_str().unwrap());
            get(api, &base, &mut answers).await;
            for listing in ["objects", "manifest"] {
                let mut path = format!("{base}{listing}/?limit={PAGE}");
                loop {
                    let page = get(api, &path, &mut answers).await;
                    if listing == "objects" {
                        for object in page["objects"].as_array().into_iter().flatten().take(3) {
                            let id = object["id"].as_str().unwrap();
                            get(api, &format!("{base}objects/{id}/"), &mut answers).await;
                            get(api, &format!("{base}objects/{id}/versions/"), &mut answers).await;
                        }
                    }
                    match page["next"].as_str() {
                        Some(next) => path = format!("{base}{listing}/?limit={PAGE}&next={next}"),
                        None => break,
                    }
                }
            }
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_projection_serves_the_same_bytes_as_the_cql_projection() {
    let topics = Topics::new("node_projection");
    let files: Vec<_> = fixtures::SHIPPED_RELEASES
        .iter()
        .map(|f| fixtures::path(f))
        .collect();
    topics.ingest(ImportConfig::new(&files)).await.unwrap();
    let events: Vec<Event> = topics
        .object_records()
        .await
        .unwrap()
        .iter()
        .map(|r| schemas::decode_event(&r.payload).unwrap())
        .collect();
    let expected = projection::final_revisions(&events);

    // The distributed path: the projector into Cassandra, an API over it.
    let control = projection::control_keyspace("node_projection");
    let projector = projection::start(&topics, &control, projector::config::Command::Run).unwrap();
    let session = projection::session().await.unwrap();
    projection::wait_for_revisions(
        &session,
        &control,
        &expected,
        Deadline::after(Duration::from_secs(300)),
    )
    .await
    .unwrap();
    let cursor_key = Secret(uuid::Uuid::new_v4().to_string());
    let mut config = Api::config(&control);
    config.server.cursor_key = Some(cursor_key.clone());
    let server = config.server.clone();
    let cql = Api::start_with(config).await.unwrap();

    // The node's path: the same events through the projector's batch writer into memory.
    let memory = Projection::new();
    let writer = BatchWriter::new(
        memory.clone(),
        16,
        Metrics::new().unwrap(),
        CancellationToken::new(),
    );
    for batch in events.chunks(500) {
        writer.write_batch(batch).await.unwrap();
    }
    let node = Api::serve_store(server, Arc::new(memory)).await.unwrap();

    for api in [&cql, &node] {
        api.wait_for_revisions(&expected, Deadline::after(Duration::from_secs(120)))
            .await
            .unwrap();
    }
    let from_cql = crawl(&cql).await;
    let from_node = crawl(&node).await;
    assert!(from_cql.len() > 50, "{} answers", from_cql.len());
    assert_eq!(
        from_cql.keys().collect::<Vec<_>>(),
        from_node.keys().collect::<Vec<_>>()
    );
    for (path, answer) in &from_cql {
        assert_eq!(answer.0, 200, "{path}: {}", answer.2);
        assert_eq!(&from_node[path], answer, "{path}");
    }

    node.stop().await.unwrap();
    cql.stop().await.unwrap();
    projector.stop().await.unwrap();
}
