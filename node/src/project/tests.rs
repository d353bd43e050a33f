use std::time::Duration;

use api::store::Store;
use eventlog::Record;
use projector::rows::generated::{log, step};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use super::*;

/// A generated log of valid events, encoded as ingest writes them.
fn valid_records() -> Vec<Record> {
    let mut runner = TestRunner::deterministic();
    let steps = proptest::collection::vec(step(), 20..21)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    log(&steps)
        .iter()
        .map(|event| {
            let payload = schemas::encode_event(event).unwrap();
            let headers = schemas::message::event_headers(event, &payload);
            record(event.key().as_bytes(), payload, &headers)
        })
        .collect()
}

/// The projector task on `log`, running: its projection, the progress it reports, its stop.
struct Running {
    projection: Projection,
    applied: watch::Receiver<i64>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    fn start(log: &EmbeddedLog) -> Running {
        let projection = Projection::new();
        let (progress, applied) = watch::channel(0);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(project(
            log.clone(),
            projection.clone(),
            Metrics::new().unwrap(),
            progress,
            shutdown.clone(),
        ));
        Running {
            projection,
            applied,
            shutdown,
            task,
        }
    }

    /// Waits until every offset below `end` is applied.
    async fn wait_applied(&mut self, end: i64) {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.applied.wait_for(|n| *n >= end),
        )
        .await
        .unwrap()
        .unwrap();
    }

    async fn stop(self) -> Projection {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.projection
    }
}

/// Runs the projector task until it applied everything in the log, then stops it.
async fn project_all(log: &EmbeddedLog) -> Projection {
    let mut running = Running::start(log);
    running.wait_applied(log.high_water(OBJECTS).unwrap()).await;
    running.stop().await
}

async fn served(projection: &Projection) -> Vec<api::store::CollectionData> {
    let generation = projection.active_generation().await.unwrap();
    let mut out = Vec::new();
    for c in projection.list_collections(&generation).await.unwrap() {
        out.push(
            projection
                .load_index(&generation, &c.collection_id)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    out
}

fn dead_letters(log: &EmbeddedLog) -> Vec<DeadLetter> {
    log.read(DEAD_LETTER, 0, usize::MAX)
        .unwrap()
        .iter()
        .map(|s| schemas::decode_dead_letter(s.record.payload.as_ref().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn the_log_is_projected_and_a_bad_record_dead_lettered_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("log.sqlite")).unwrap();
    let mut records = valid_records();
    let garbage = Record {
        key: b"garbage".to_vec(),
        payload: Some(br#"{"not": "avro"}"#.to_vec()),
        headers: Vec::new(),
    };
    records.insert(3, garbage);
    log.append(OBJECTS, &records).unwrap();

    let first = project_all(&log).await;
    let index = served(&first).await;
    assert!(!index.is_empty());
    let letters = dead_letters(&log);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].original_offset, Some(3));
    assert_eq!(letters[0].original_key.as_deref(), Some(&b"garbage"[..]));
    assert!(
        letters[0].reason.starts_with("undecodable: "),
        "{}",
        letters[0].reason
    );

    // A restart rebuilds the same projection and does not dead-letter the record again.
    let again = project_all(&log).await;
    assert_eq!(served(&again).await, index);
    assert_eq!(dead_letters(&log).len(), 1);

    // Events appended while it runs are applied as they arrive.
    let mut running = Running::start(&log);
    running.wait_applied(log.high_water(OBJECTS).unwrap()).await;
    let appended = log.append(OBJECTS, &valid_records()).unwrap();
    running.wait_applied(appended.end).await;
    running.stop().await;
}
