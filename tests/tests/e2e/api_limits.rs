//! The API's limits over a real socket (`api::serve`, as `api run` serves): header-read and
//! keep-alive timeouts, the connection cap, the in-flight cap (503 + `Retry-After`), the request
//! timeout (504) and graceful shutdown. Slow requests come from a store whose object fetches wait
//! at a gate the test opens, with every collection served lean (fetched per response).
//!
//! Bounds on time are behaviour checks (closed after the limit, within 3× it), never speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api::config::{Limits, ServerConfig};
use api::store::memory::MemoryStore;
use api::store::{CollectionData, CollectionRevision, ContentKey, Generation, Store, StoreError};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use taxiway_tests::Deadline;
use taxiway_tests::api::{Api, TAXII};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::memory_server::{ICS, collections};

/// A memory store whose object fetches wait while its gate is shut, then take `delay`.
#[derive(Clone)]
struct GatedStore {
    inner: MemoryStore,
    open: watch::Sender<bool>,
    /// Fetches that have reached the gate.
    entered: Arc<AtomicUsize>,
    delay: Duration,
}

impl GatedStore {
    fn new(delay: Duration) -> Self {
        let inner = MemoryStore::new();
        for c in collections() {
            inner.put_collection(c);
        }
        GatedStore {
            inner,
            open: watch::Sender::new(true),
            entered: Arc::new(AtomicUsize::new(0)),
            delay,
        }
    }

    /// Shuts the gate; [`GatedStore::entered`] counts the fetches that reach it from now on.
    fn shut(&self) {
        self.entered.store(0, Ordering::SeqCst);
        self.open.send_replace(false);
    }

    fn reopen(&self) {
        self.open.send_replace(true);
    }

    fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }

    /// Waits until `n` fetches have reached the gate.
    async fn wait_entered(&self, n: usize) {
        let deadline = Deadline::after(Duration::from_secs(20));
        while self.entered() < n {
            assert!(
                !deadline.passed(),
                "{} of {n} fetches reached the gate",
                self.entered()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Store for GatedStore {
    fn active_generation(&self) -> BoxFuture<'_, Result<Generation, StoreError>> {
        self.inner.active_generation()
    }

    fn list_collections<'a>(
        &'a self,
        generation: &'a Generation,
    ) -> BoxFuture<'a, Result<Vec<CollectionRevision>, StoreError>> {
        self.inner.list_collections(generation)
    }

    fn load_index<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CollectionData>, StoreError>> {
        self.inner.load_index(generation, collection_id)
    }

    fn fetch_objects<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
        versions: &'a [ContentKey<'a>],
    ) -> BoxFuture<'a, Result<Vec<Bytes>, StoreError>> {
        async move {
            let mut open = self.open.subscribe();
            // Fetches while the gate is open (the refresher's, at start) are not the test's.
            if !*open.borrow() {
                self.entered.fetch_add(1, Ordering::SeqCst);
            }
            let _ = open.wait_for(|o| *o).await;
            tokio::time::sleep(self.delay).await;
            self.inner
                .fetch_objects(generation, collection_id, versions)
                .await
        }
        .boxed()
    }
}

/// Serves the five bundles with `limits`, every collection lean so that each page waits for
/// the store.
async fn start(limits: Limits, store: &GatedStore) -> Api {
    let server = ServerConfig {
        limits,
        max_snapshot_bytes: 0,
        poll_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    Api::serve_store(server, Arc::new(store.clone()))
        .await
        .unwrap()
}

/// [`start`], ready (collections loaded) before it returns.
async fn serve(limits: Limits, store: &GatedStore) -> Api {
    let api = start(limits, store).await;
    api.wait_ready(Deadline::after(Duration::from_secs(60)))
        .await
        .unwrap();
    api
}

/// Limits with every timeout long, so a test shortens only the one it is about.
fn patient() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(60),
        keep_alive_timeout: Duration::from_secs(60),
        response_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

fn one_object_page() -> String {
    format!("/api/v21/collections/{ICS}/objects/?limit=1")
}

/// Reads until the server closes the connection (EOF or reset) or `within` passes; returns when
/// it closed (None if it did not) and what it sent.
async fn wait_closed(stream: &mut TcpStream, within: Duration) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (None, received),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(started.elapsed()), received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `GET /health/ping` on a kept-alive connection and reads its 204 head (no body).
async fn ping(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /health/ping HTTP/1.1\r\nHost: taxiway\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("a ping answer in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed before answering: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 204"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// `GET path` on a new connection with `Connection: close`: the whole answer, or None if the
/// connection was refused or closed without one.
async fn raw_get(api: &Api, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(api.addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: taxiway\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let (closed, received) = wait_closed(&mut stream, Duration::from_secs(10)).await;
    closed?;
    (!received.is_empty()).then(|| String::from_utf8_lossy(&received).into_owned())
}

/// The value of the sample `name` (with its labels, exactly as rendered) in a metrics text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Asserts that the `/metrics` text counts `name` at least `at_least` times.
fn assert_counted(metrics: &str, name: &str, at_least: f64) {
    assert!(
        metric(metrics, name) >= at_least,
        "{name} below {at_least}: {metrics}"
    );
}

fn assert_taxii_error(reply: &taxiway_tests::api::Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some(TAXII));
    let json = reply.json();
    assert_eq!(json["http_status"], status.as_u16().to_string(), "{json}");
    assert!(
        json["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{json}"
    );
}

#[tokio::test]
async fn a_client_sending_one_header_byte_per_second_is_cut_off_at_the_header_read_timeout() {
    let store = GatedStore::new(Duration::ZERO);
    let timeout = Duration::from_secs(2);
    let api = serve(
        Limits {
            header_read_timeout: timeout,
            ..patient()
        },
        &store,
    )
    .await;
    // Before connecting, so that the server's clock cannot have started before this one.
    let started = Instant::now();
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        let head =
            b"GET /taxii2/ HTTP/1.1\r\nHost: taxiway\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("the whole trickled header was accepted");
    };
    let mut received = Vec::new();
    let read_until_closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let bound = timeout * 3;
    let closed = tokio::time::timeout(bound, async {
        tokio::select! {
            () = read_until_closed => {}
            () = trickle => {}
        }
    })
    .await;
    let kept = started.elapsed();
    assert!(closed.is_ok(), "still open after {kept:?}");
    assert!(kept >= timeout, "closed after {kept:?}, before the timeout");
    let answer = String::from_utf8_lossy(&received);
    assert!(!answer.contains(" 200 "), "served: {answer}");
    eprintln!("a trickling client was kept {kept:?} (header-read timeout {timeout:?})");
    // A new connection: the harness client's pooled one may have been closed by the limit.
    let metrics = raw_get(&api, "/metrics").await.unwrap();
    assert_counted(
        &metrics,
        "taxiway_api_connections_closed_total{reason=\"header_timeout\"}",
        1.0,
    );
    api.stop().await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_keep_alive_timeout() {
    let store = GatedStore::new(Duration::ZERO);
    let timeout = Duration::from_secs(1);
    // The header-read timeout, which also bounds idle waits, is far longer: only the
    // keep-alive limit can close these connections within the bound below.
    let api = serve(
        Limits {
            keep_alive_timeout: timeout,
            ..patient()
        },
        &store,
    )
    .await;
    let mut kept_alive = TcpStream::connect(api.addr).await.unwrap();
    ping(&mut kept_alive).await;
    // Before the last request, so that the server's last activity comes after this instant.
    let last_request = Instant::now();
    ping(&mut kept_alive).await;
    let connected = Instant::now();
    let mut silent = TcpStream::connect(api.addr).await.unwrap();
    let (closed, _) = wait_closed(&mut kept_alive, timeout * 3).await;
    assert!(
        closed.is_some(),
        "the kept-alive connection was never closed"
    );
    let after_response = last_request.elapsed();
    let (closed, received) = wait_closed(&mut silent, timeout * 3).await;
    assert!(closed.is_some(), "the silent connection was never closed");
    let never_spoke = connected.elapsed();
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    // Activity is recorded to the millisecond, so the limit may end up to 1 ms early.
    let at_least = timeout - Duration::from_millis(5);
    assert!(
        after_response >= at_least,
        "closed {after_response:?} after its last request"
    );
    assert!(
        never_spoke >= at_least,
        "closed {never_spoke:?} after connecting"
    );
    eprintln!(
        "idle connections closed {after_response:?} after their last request, {never_spoke:?} \
         after connecting (keep-alive timeout {timeout:?})"
    );
    let metrics = raw_get(&api, "/metrics").await.unwrap();
    assert_counted(
        &metrics,
        "taxiway_api_connections_closed_total{reason=\"idle\"}",
        2.0,
    );
    api.stop().await.unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_a_freed_slot_serves_again() {
    let store = GatedStore::new(Duration::ZERO);
    let cap = 3;
    // Not waiting for readiness: the harness client would keep a connection, and a slot.
    let api = start(
        Limits {
            max_connections: cap,
            ..patient()
        },
        &store,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..cap {
        let mut stream = TcpStream::connect(api.addr).await.unwrap();
        ping(&mut stream).await;
        held.push(stream);
    }
    let mut over = TcpStream::connect(api.addr).await.unwrap();
    let _ = over
        .write_all(b"GET /health/ping HTTP/1.1\r\nHost: taxiway\r\n\r\n")
        .await;
    let (closed, received) = wait_closed(&mut over, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "a connection over the cap stayed open");
    assert!(
        received.is_empty(),
        "answered over the cap: {}",
        String::from_utf8_lossy(&received)
    );
    for stream in &mut held {
        ping(stream).await;
    }
    drop(held.pop());
    let deadline = Deadline::after(Duration::from_secs(10));
    let metrics = loop {
        if let Some(answer) = raw_get(&api, "/metrics").await {
            break answer;
        }
        assert!(!deadline.passed(), "no slot came free after a client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert_counted(
        &metrics,
        "taxiway_api_connections_total{outcome=\"refused\"}",
        1.0,
    );
    api.stop().await.unwrap();
}

#[tokio::test]
async fn requests_over_the_in_flight_cap_get_503_with_retry_after_while_health_answers() {
    let store = GatedStore::new(Duration::ZERO);
    let cap = 2;
    let api = Arc::new(
        serve(
            Limits {
                max_in_flight: cap,
                ..patient()
            },
            &store,
        )
        .await,
    );
    store.shut();
    let held: Vec<_> = (0..cap)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.get(&one_object_page()).await.unwrap() })
        })
        .collect();
    store.wait_entered(cap as usize).await;
    let shed = api.get("/taxii2/").await.unwrap();
    assert_taxii_error(&shed, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = shed
        .header("retry-after")
        .expect("Retry-After on a shed request")
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let reply = api.get(probe).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{probe} under overload");
    }
    store.reopen();
    for request in held {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.json()["objects"].as_array().unwrap().len(), 1);
    }
    assert_eq!(api.get("/taxii2/").await.unwrap().status, StatusCode::OK);
    let metrics = api.get("/metrics").await.unwrap().text();
    assert_counted(
        &metrics,
        "taxiway_api_requests_limited_total{reason=\"overloaded\"}",
        1.0,
    );
    Arc::into_inner(api).unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn under_overload_the_excess_is_shed_and_the_rest_served() {
    // Each page waits 20 ms for the store; 32 clients against a cap of 4.
    let store = GatedStore::new(Duration::from_millis(20));
    let cap = 4;
    let api = Arc::new(
        serve(
            Limits {
                max_in_flight: cap,
                ..patient()
            },
            &store,
        )
        .await,
    );
    let (clients, each) = (32, 10);
    let replies = futures::future::join_all((0..clients).map(|_| {
        let api = api.clone();
        async move {
            let mut replies = Vec::new();
            for _ in 0..each {
                replies.push(api.get(&one_object_page()).await.unwrap());
            }
            replies
        }
    }))
    .await;
    let replies: Vec<_> = replies.into_iter().flatten().collect();
    assert_eq!(replies.len(), clients * each);
    let mut shed = 0;
    for reply in &replies {
        if reply.status == StatusCode::OK {
            continue;
        }
        assert_taxii_error(reply, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.header("retry-after").is_some());
        shed += 1;
    }
    let served = replies.len() - shed;
    assert!(
        shed > 0,
        "nothing shed with {clients} clients over a cap of {cap}"
    );
    assert!(served > 0, "nothing served");
    eprintln!(
        "overload: {} requests from {clients} clients, cap {cap}: {served} served, {shed} shed \
         (503 share {:.0}%)",
        replies.len(),
        100.0 * shed as f64 / replies.len() as f64
    );
    Arc::into_inner(api).unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn a_request_slower_than_the_response_timeout_gets_504_with_a_taxii_body() {
    let store = GatedStore::new(Duration::ZERO);
    let timeout = Duration::from_millis(300);
    let api = serve(
        Limits {
            response_timeout: timeout,
            ..patient()
        },
        &store,
    )
    .await;
    store.shut();
    let late = api.get(&one_object_page()).await.unwrap();
    assert!(store.entered() >= 1, "the request never reached the store");
    assert_taxii_error(&late, StatusCode::GATEWAY_TIMEOUT);
    let description = late.json()["description"].as_str().unwrap().to_owned();
    assert!(
        description.contains(&format!("{} ms", timeout.as_millis())),
        "{description}"
    );
    assert_eq!(api.get("/taxii2/").await.unwrap().status, StatusCode::OK);
    store.reopen();
    assert_eq!(
        api.get(&one_object_page()).await.unwrap().status,
        StatusCode::OK
    );
    let metrics = api.get("/metrics").await.unwrap().text();
    assert_counted(
        &metrics,
        "taxiway_api_requests_limited_total{reason=\"timeout\"}",
        1.0,
    );
    api.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_the_response_in_flight_finish_and_refuses_new_connections() {
    let store = GatedStore::new(Duration::ZERO);
    let api = Arc::new(serve(patient(), &store).await);
    let mut idle = TcpStream::connect(api.addr).await.unwrap();
    ping(&mut idle).await;
    store.shut();
    let page = format!("/api/v21/collections/{ICS}/objects/?limit=2");
    let in_flight = tokio::spawn({
        let api = api.clone();
        async move { api.get(&page).await.unwrap() }
    });
    store.wait_entered(1).await;
    api.shutdown.cancel();
    let (closed, _) = wait_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "an idle connection outlived the shutdown");
    let deadline = Deadline::after(Duration::from_secs(10));
    while TcpStream::connect(api.addr).await.is_ok() {
        assert!(!deadline.passed(), "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the response in flight did not wait for its data"
    );
    store.reopen();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["objects"].as_array().unwrap().len(), 2);
    Arc::into_inner(api)
        .unwrap()
        .stop_within(Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_drain_deadline_cuts_a_response_that_does_not_finish() {
    let store = GatedStore::new(Duration::ZERO);
    let drain = Duration::from_secs(1);
    let api = Arc::new(
        serve(
            Limits {
                drain_timeout: drain,
                ..patient()
            },
            &store,
        )
        .await,
    );
    store.shut();
    let stuck = tokio::spawn({
        let api = api.clone();
        async move { api.get(&one_object_page()).await }
    });
    store.wait_entered(1).await;
    let started = Instant::now();
    api.shutdown.cancel();
    let reply = tokio::time::timeout(drain * 3, stuck)
        .await
        .expect("the stuck response was cut within 3× the drain deadline")
        .unwrap();
    assert!(reply.is_err(), "a stuck response was answered: {reply:?}");
    assert!(
        started.elapsed() >= drain,
        "cut after {:?}",
        started.elapsed()
    );
    Arc::into_inner(api)
        .unwrap()
        .stop_within(drain * 3)
        .await
        .unwrap();
}
