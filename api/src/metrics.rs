//! Prometheus metrics of the API: requests by route template and status, latency, cache,
//! revisions, the memory bound (lean collections and what their responses fetch), the limits
//! (connections refused and closed, requests shed or timed out).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric the API keeps. Labels are route templates, never raw URIs or object ids, so
/// cardinality stays bounded.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Other stages' registries served at the same `/metrics` (a node runs them in this process).
    others: Arc<RwLock<Vec<Registry>>>,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    /// Result cache lookups by outcome (`hit`, `miss`).
    pub cache: IntCounterVec,
    /// Responses answered 304 from If-None-Match.
    pub not_modified: IntCounter,
    /// Whole-collection compressed bodies, by encoding and outcome (`hit`, `miss`).
    pub compressed_cache: IntCounterVec,
    /// Bytes held by the compressed-body cache.
    pub compressed_cache_bytes: IntGauge,
    /// Revision of each loaded collection.
    pub revision: IntGaugeVec,
    /// Approximate bytes of each loaded collection snapshot.
    pub snapshot_bytes: IntGaugeVec,
    /// 1 for a collection served lean (object JSON fetched per response), else 0.
    pub lean: IntGaugeVec,
    /// Objects fetched from the store per response of a lean collection.
    pub fetched_objects: HistogramVec,
    /// Bytes of object JSON fetched from the store per response of a lean collection.
    pub fetched_bytes: HistogramVec,
    /// Responses that failed because fetching object JSON failed.
    pub fetch_errors: IntCounter,
    /// Failed store polls.
    pub store_errors: IntCounter,
    /// Active generation number.
    pub generation: IntGauge,
    /// Requests answered by a limit instead of a handler, by reason (`overloaded`, `timeout`).
    pub limited: IntCounterVec,
    /// Connections accepted and served, or refused at the cap (`accepted`, `refused`).
    pub connections: IntCounterVec,
    /// Connections open now.
    pub connections_open: IntGauge,
    /// Connections ended, by reason (`closed`, `idle`, `header_timeout`, `error`, `drain_cut`).
    pub connections_closed: IntCounterVec,
    /// Live streams open now.
    pub stream_subscribers: IntGauge,
    /// Object versions sent on live streams.
    pub stream_events: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("taxiway_api".to_owned()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "request_seconds",
                "Time to the response head, by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "result_cache_total",
                "Filter result cache lookups by outcome",
            ),
            &["outcome"],
        )?;
        let not_modified =
            IntCounter::new("not_modified_total", "Responses answered 304 Not Modified")?;
        let compressed_cache = IntCounterVec::new(
            Opts::new(
                "compressed_cache_total",
                "Whole-collection compressed bodies served, by encoding and outcome",
            ),
            &["encoding", "outcome"],
        )?;
        let compressed_cache_bytes = IntGauge::new(
            "compressed_cache_bytes",
            "Bytes held by the compressed-body cache",
        )?;
        let revision = IntGaugeVec::new(
            Opts::new("collection_revision", "Revision of each loaded collection"),
            &["collection"],
        )?;
        let snapshot_bytes = IntGaugeVec::new(
            Opts::new(
                "collection_snapshot_bytes",
                "Approximate memory of each loaded collection",
            ),
            &["collection"],
        )?;
        let lean = IntGaugeVec::new(
            Opts::new(
                "collection_lean",
                "1 if a collection's object JSON is fetched per response (over the memory bound)",
            ),
            &["collection"],
        )?;
        let fetched_objects = HistogramVec::new(
            HistogramOpts::new(
                "store_fetched_objects",
                "Objects fetched from the store per response of a lean collection",
            )
            .buckets(prometheus::exponential_buckets(1.0, 4.0, 9)?),
            &["collection"],
        )?;
        let fetched_bytes = HistogramVec::new(
            HistogramOpts::new(
                "store_fetched_bytes",
                "Object JSON bytes fetched from the store per response of a lean collection",
            )
            .buckets(prometheus::exponential_buckets(1024.0, 4.0, 10)?),
            &["collection"],
        )?;
        let fetch_errors = IntCounter::new(
            "store_fetch_errors_total",
            "Responses of lean collections that failed fetching object JSON",
        )?;
        let store_errors =
            IntCounter::new("store_errors_total", "Failed polls or loads of the store")?;
        let generation = IntGauge::new("generation", "Active projection generation")?;
        let limited = IntCounterVec::new(
            Opts::new(
                "requests_limited_total",
                "Requests answered by a limit (503 overloaded, 504 timeout), by reason",
            ),
            &["reason"],
        )?;
        let connections = IntCounterVec::new(
            Opts::new(
                "connections_total",
                "Connections accepted, or refused at the connection cap",
            ),
            &["outcome"],
        )?;
        let connections_open = IntGauge::new("connections_open", "Connections open now")?;
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "connections_closed_total",
                "Connections ended, by reason (closed by the client or after Connection: close, \
                 idle, header_timeout, error, drain_cut at shutdown)",
            ),
            &["reason"],
        )?;
        let stream_subscribers = IntGauge::new(
            "stream_subscribers",
            "Live streams (Server-Sent Events) open now",
        )?;
        let stream_events = IntCounter::new(
            "stream_events_total",
            "Object versions sent on live streams",
        )?;
        registry.register(Box::new(stream_subscribers.clone()))?;
        registry.register(Box::new(stream_events.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(compressed_cache.clone()))?;
        registry.register(Box::new(compressed_cache_bytes.clone()))?;
        registry.register(Box::new(not_modified.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(snapshot_bytes.clone()))?;
        registry.register(Box::new(lean.clone()))?;
        registry.register(Box::new(fetched_objects.clone()))?;
        registry.register(Box::new(fetched_bytes.clone()))?;
        registry.register(Box::new(fetch_errors.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(limited.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_closed.clone()))?;
        Ok(Metrics {
            registry,
            others: Arc::default(),
            requests,
            latency,
            cache,
            compressed_cache,
            compressed_cache_bytes,
            not_modified,
            revision,
            snapshot_bytes,
            lean,
            fetched_objects,
            fetched_bytes,
            fetch_errors,
            store_errors,
            generation,
            limited,
            connections,
            connections_open,
            connections_closed,
            stream_subscribers,
            stream_events,
        })
    }

    /// Serves `registry` too, after the API's own metrics.
    pub fn serve_also(&self, registry: Registry) {
        self.others
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(registry);
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> Vec<u8> {
        let others = self.others.read().unwrap_or_else(|e| e.into_inner());
        service::render_all(std::iter::once(&self.registry).chain(others.iter()))
    }
}

/// What one response of a lean collection fetched from the store; observed when the response
/// ends, however it ends (sent, failed, or abandoned by the client).
pub struct FetchTally {
    objects: prometheus::Histogram,
    bytes: prometheus::Histogram,
    fetched_objects: usize,
    fetched_bytes: usize,
}

impl FetchTally {
    pub fn new(metrics: &Metrics, collection: &str) -> Self {
        FetchTally {
            objects: metrics.fetched_objects.with_label_values(&[collection]),
            bytes: metrics.fetched_bytes.with_label_values(&[collection]),
            fetched_objects: 0,
            fetched_bytes: 0,
        }
    }

    pub fn add(&mut self, objects: usize, bytes: usize) {
        self.fetched_objects += objects;
        self.fetched_bytes += bytes;
    }
}

impl Drop for FetchTally {
    fn drop(&mut self) {
        self.objects.observe(self.fetched_objects as f64);
        self.bytes.observe(self.fetched_bytes as f64);
    }
}

/// Middleware: counts and times every request by its route template.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    response
}
