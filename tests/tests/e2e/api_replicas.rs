//! Two API replicas, each a child process, over the projections of a real release: under a load
//! of clients paging both, replica A is SIGKILLed; replica B keeps answering every page
//! correctly, and A, restarted, is ready and serving correct pages within seconds.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ingest::config::ImportConfig;
use projector::config::Command;
use reqwest::StatusCode;
use serde_json::Value;
use taxiway_tests::api::{TAXII, check_objects, key_of};
use taxiway_tests::api_child::{self, ApiChild};
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::{Deadline, projection};

const ENTRY: &str = "child_process::api_entry";
const FILE: &str = "ics-attack-18.1.json.zst";
/// Kill and restart A this many times; the restart figure is their median.
const RESTARTS: usize = 3;
const CLIENTS_PER_REPLICA: usize = 2;
const PAGE: usize = 200;

fn log_path(name: &str) -> PathBuf {
    fixtures::repo_root()
        .join("target/e2e-logs")
        .join(format!("{name}.log"))
}

/// Two distinct loopback addresses no one listens on now (both held until both are known).
fn free_addrs() -> (SocketAddr, SocketAddr) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

/// What the clients of one replica saw.
#[derive(Default)]
struct Counts {
    /// Pages answered 200 with objects of the file, JSON-equal.
    pages: AtomicU64,
    /// Walks that ended with exactly the file's objects.
    walks: AtomicU64,
    /// Anything else: connection errors, other statuses, wrong bodies, wrong walks.
    errors: AtomicU64,
}

/// The file's truth: every (id, version) with its object.
struct Truth {
    file: Release,
}

impl Truth {
    /// A page is right if it is a 200 TAXII page whose every object is the file's, JSON-equal.
    fn check_page(&self, status: StatusCode, content_type: Option<&str>, body: &Value) -> bool {
        let by_version = self.file.by_version();
        status == StatusCode::OK
            && content_type == Some(TAXII)
            && body["objects"].as_array().is_some_and(|objects| {
                objects
                    .iter()
                    .all(|o| by_version.get(&key_of(o)).is_some_and(|want| *want == o))
            })
    }
}

/// One client: walks the collection on `base` page by page until `stop`, counting.
async fn client(
    base: String,
    path: String,
    truth: Arc<Truth>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let versions = truth.file.versions();
    let by_version = truth.file.by_version();
    while !stop.load(Ordering::Relaxed) {
        let mut served: Vec<Value> = Vec::new();
        let mut next: Option<String> = None;
        let complete = loop {
            let uri = match &next {
                None => format!("{base}{path}"),
                Some(n) => format!("{base}{path}&next={n}"),
            };
            let reply = http.get(&uri).header("accept", TAXII).send().await;
            let Ok(reply) = reply else { break false };
            let status = reply.status();
            let content_type = reply
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let Ok(body) = reply.json::<Value>().await else {
                break false;
            };
            if !truth.check_page(status, content_type.as_deref(), &body) {
                break false;
            }
            counts.pages.fetch_add(1, Ordering::Relaxed);
            served.extend(body["objects"].as_array().into_iter().flatten().cloned());
            match (body["more"].as_bool(), body["next"].as_str()) {
                (Some(true), Some(n)) => next = Some(n.to_owned()),
                _ => break true,
            }
        };
        if complete && check_objects(&path, &served, &versions, &by_version).is_ok() {
            counts.walks.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            // Not a busy loop against a dead replica.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Time from the child's spawn until `/readyz` answers 200, and until a first page is right.
async fn wait_serving(
    replica: &ApiChild,
    path: &str,
    truth: &Truth,
    deadline: Deadline,
) -> (Duration, Duration) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://{}", replica.addr);
    let ready = loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            break replica.started.elapsed();
        }
        assert!(!deadline.passed(), "{base}: not ready in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let page = loop {
        if let Ok(r) = http
            .get(format!("{base}{path}"))
            .header("accept", TAXII)
            .send()
            .await
        {
            let status = r.status();
            let content_type = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Ok(body) = r.json::<Value>().await
                && truth.check_page(status, content_type.as_deref(), &body)
                && body["objects"].as_array().is_some_and(|o| o.len() == PAGE)
            {
                break replica.started.elapsed();
            }
        }
        assert!(!deadline.passed(), "{base}: no right page in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (ready, page)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_leaves_the_other_serving_and_restarts_ready_in_seconds() {
    let deadline = Deadline::after(Duration::from_secs(400));
    let topics = Topics::new("api_replicas");
    topics
        .ingest(ImportConfig::new([fixtures::path(FILE)]))
        .await
        .unwrap();
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    let control = projection::control_keyspace("api_replicas");
    let projector = projection::start(&topics, &control, Command::Run).unwrap();
    let session = projection::session().await.unwrap();
    projection::wait_for_revisions(&session, &control, &expected, deadline)
        .await
        .unwrap();

    let truth = Arc::new(Truth {
        file: Release::load(FILE).unwrap(),
    });
    let ics = truth.file.collection_id();
    let path = format!("/api/v21/collections/{ics}/objects/?limit={PAGE}");
    let cursor_key = uuid::Uuid::new_v4().to_string();
    let log = log_path(&control);
    println!("api_replicas: child logs in {}", log.display());
    let (addr_a, addr_b) = free_addrs();
    let mut a = api_child::spawn(addr_a, &control, &cursor_key, ENTRY, &log).unwrap();
    let b = api_child::spawn(addr_b, &control, &cursor_key, ENTRY, &log).unwrap();
    let (first_ready, _) = wait_serving(&a, &path, &truth, deadline).await;
    wait_serving(&b, &path, &truth, deadline).await;
    println!("api_replicas: first start ready in {first_ready:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let counts: BTreeMap<&str, Arc<Counts>> = [("A", Arc::default()), ("B", Arc::default())].into();
    let mut clients = Vec::new();
    for (name, addr) in [("A", addr_a), ("B", addr_b)] {
        for _ in 0..CLIENTS_PER_REPLICA {
            clients.push(tokio::spawn(client(
                format!("http://{addr}"),
                path.clone(),
                truth.clone(),
                counts[name].clone(),
                stop.clone(),
            )));
        }
    }
    let walks_of = |name: &str| counts[name].walks.load(Ordering::Relaxed);
    let errors_of = |name: &str| counts[name].errors.load(Ordering::Relaxed);
    // Both replicas under load before the first kill.
    while walks_of("A") < 2 || walks_of("B") < 2 {
        assert!(!deadline.passed(), "no load went through");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut restarts = Vec::new();
    let mut pages = Vec::new();
    for round in 0..RESTARTS {
        let b_walks = walks_of("B");
        a.kill().await.unwrap();
        // B alone for a while: its clients must finish walks, with no error.
        let alone = Instant::now();
        while walks_of("B") < b_walks + 3 || alone.elapsed() < Duration::from_secs(1) {
            assert!(!deadline.passed(), "B stopped serving after A was killed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        a = api_child::spawn(addr_a, &control, &cursor_key, ENTRY, &log).unwrap();
        let (ready, page) = wait_serving(&a, &path, &truth, deadline).await;
        println!("api_replicas: restart {round}: ready in {ready:?}, a right page in {page:?}");
        restarts.push(ready);
        pages.push(page);
        // A's clients get through again.
        let a_walks = walks_of("A");
        while walks_of("A") < a_walks + 2 {
            assert!(!deadline.passed(), "A's clients never got through again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .unwrap()
            .unwrap();
    }

    let total =
        |name: &str, what: fn(&Counts) -> &AtomicU64| what(&counts[name]).load(Ordering::Relaxed);
    println!(
        "api_replicas: B {} pages, {} full walks, {} errors; A {} pages, {} walks, {} failed \
         walks (killed {RESTARTS} times); restart → ready median {:?}, → right page median {:?}",
        total("B", |c| &c.pages),
        total("B", |c| &c.walks),
        total("B", |c| &c.errors),
        total("A", |c| &c.pages),
        total("A", |c| &c.walks),
        total("A", |c| &c.errors),
        median(restarts.clone()),
        median(pages.clone()),
    );
    assert_eq!(errors_of("B"), 0, "B failed requests while A died");
    assert!(errors_of("A") > 0, "the kills reached A's clients");
    // "In seconds", with a wide margin for a loaded CI host; the figure is printed above.
    assert!(
        median(pages) < Duration::from_secs(30),
        "a restarted replica took {restarts:?} to be ready"
    );

    a.kill().await.unwrap();
    b.kill().await.unwrap();
    projector.stop().await.unwrap();
    projection::drop_keyspaces(&session, &control)
        .await
        .unwrap();
    topics.delete().await.unwrap();
}
