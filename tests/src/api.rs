//! Running the TAXII API in-process over a test's control keyspace, talking to it over HTTP
//! (reqwest on 127.0.0.1), and the expectations the full-pipeline suites compute from the bundle
//! files themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::api::config::{Config, ServerConfig};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use service::{CqlArgs, LogArgs};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fixtures::{Release, id_of, version_of};
use crate::pipeline::Topics;
use crate::projection;
use crate::{Deadline, cql_nodes};

/// Projects `topics` into a fresh control keyspace named after `prefix` (the projector keeps
/// running, so later imports are projected too) and starts an API replica once every collection
/// of `expected` has reached its revision, in the store and in the replica.
pub async fn serve_projected(
    topics: &Topics,
    prefix: &str,
    expected: &BTreeMap<String, i64>,
) -> anyhow::Result<(String, projection::Running, Api)> {
    serve_projected_signed(topics, prefix, expected, None).await
}

/// [`serve_projected`], the api signing `next` cursors with `cursor_key` (a random key without).
pub async fn serve_projected_signed(
    topics: &Topics,
    prefix: &str,
    expected: &BTreeMap<String, i64>,
    cursor_key: Option<&str>,
) -> anyhow::Result<(String, projection::Running, Api)> {
    let control = projection::control_keyspace(prefix);
    let projector = projection::start(topics, &control, projector::config::Command::Run)?;
    let session = projection::session().await?;
    projection::wait_for_revisions(
        &session,
        &control,
        expected,
        Deadline::after(Duration::from_secs(300)),
    )
    .await?;
    let mut config = Api::config(&control);
    config.server.cursor_key = cursor_key.map(|k| service::Secret(k.to_owned()));
    let api = Api::start_with(config).await?;
    api.wait_for_revisions(expected, Deadline::after(Duration::from_secs(120)))
        .await?;
    Ok((control, projector, api))
}

/// The media type every TAXII response carries.
pub const TAXII: &str = "application/taxii+json;version=2.1";

/// One API replica serving on an ephemeral loopback port.
pub struct Api {
    pub base: String,
    /// The address `base` names, for raw-socket clients.
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    task: JoinHandle<Result<(), ::api::Error>>,
}

/// An HTTP answer, body read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One page of a listing: its items (objects, manifest entries or versions) and its headers.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Value>,
    pub first: Option<String>,
    pub last: Option<String>,
    pub more: Option<bool>,
    pub next: Option<String>,
    pub content_type: Option<String>,
}

impl Api {
    /// The configuration [`Api::start`] uses: 127.0.0.1:0, the control keyspace `control`,
    /// collections polled every 200 ms.
    pub fn config(control: &str) -> Config {
        Config {
            command: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cql: CqlArgs {
                nodes: cql_nodes(),
                keyspace: control.to_owned(),
                ..CqlArgs::default()
            },
            server: ServerConfig {
                poll_interval: Duration::from_millis(200),
                ..ServerConfig::default()
            },
            auth_file: None,
            log: LogArgs::default(),
        }
    }

    /// Starts `api` with [`Api::config`] over the control keyspace `control`.
    pub async fn start(control: &str) -> anyhow::Result<Api> {
        Self::start_with(Self::config(control)).await
    }

    /// Starts `api` with `config` (e.g. [`Api::config`], changed).
    pub async fn start_with(config: Config) -> anyhow::Result<Api> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(::api::run(config, listener, shutdown.clone()));
        Self::running(addr, shutdown, task)
    }

    /// Serves `store` with `server` on 127.0.0.1 through `api::serve`, the function `api::run`
    /// ends in, without a database: for the suites of the limits and of hostile requests.
    pub async fn serve_store(
        server: ServerConfig,
        store: Arc<dyn ::api::store::Store>,
    ) -> anyhow::Result<Api> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let state = ::api::AppState::new(server, None)?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(::api::serve(state, store, listener, shutdown.clone()));
        Self::running(addr, shutdown, task)
    }

    /// An API served by another process at `addr` (a child `taxiway`): the helpers that read
    /// over HTTP work on it; stopping it is the process's business.
    pub fn remote(addr: SocketAddr) -> anyhow::Result<Api> {
        let shutdown = CancellationToken::new();
        let stopped = shutdown.clone();
        let task = tokio::spawn(async move {
            stopped.cancelled().await;
            Ok(())
        });
        Self::running(addr, shutdown, task)
    }

    fn running(
        addr: SocketAddr,
        shutdown: CancellationToken,
        task: JoinHandle<Result<(), ::api::Error>>,
    ) -> anyhow::Result<Api> {
        // Idle connections are dropped well before the api's keep-alive cut (5 s by default):
        // a request sent on a connection the server is closing at that moment fails with
        // "connection closed before message completed".
        let client = reqwest::Client::builder()
            .no_gzip()
            .timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Api {
            base: format!("http://{addr}"),
            addr,
            client,
            shutdown,
            task,
        })
    }

    /// Cancels the shutdown token and waits for the server to stop, at most `within`.
    pub async fn stop_within(self, within: Duration) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(within, self.task).await???;
        Ok(())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await???;
        Ok(())
    }

    /// `GET path` with the TAXII Accept header and `headers`.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        let mut request = self
            .client
            .get(format!("{}{path}", self.base))
            .header("accept", TAXII);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.get_with(path, &[]).await
    }

    /// Fetches one page and checks the things every listing page must have.
    pub async fn page(&self, path: &str, key: &str) -> anyhow::Result<Page> {
        let (page, has_items) = self.fetch_page(path, key).await?;
        anyhow::ensure!(has_items, "{path}: no {key} array");
        Ok(page)
    }

    /// Walks every page of `base` (which must carry a `limit`) by following `next`.
    pub async fn walk(&self, base: &str, key: &str) -> anyhow::Result<Vec<Page>> {
        let mut pages = Vec::new();
        let mut path = base.to_owned();
        let sep = if base.contains('?') { '&' } else { '?' };
        loop {
            // An empty result is an envelope without the items' key.
            let (page, _) = self.fetch_page(&path, key).await?;
            let more = page.more == Some(true);
            let next = page.next.clone();
            pages.push(page);
            if !more {
                return Ok(pages);
            }
            let next = next.ok_or_else(|| anyhow::anyhow!("{path}: more without next"))?;
            anyhow::ensure!(pages.len() < 100_000, "{base}: endless paging");
            path = format!("{base}{sep}next={next}");
        }
    }

    /// One listing page, and whether its envelope had the `key` array (an empty page has none).
    async fn fetch_page(&self, path: &str, key: &str) -> anyhow::Result<(Page, bool)> {
        let reply = self.get(path).await?;
        anyhow::ensure!(
            reply.status == StatusCode::OK,
            "{path}: {} {}",
            reply.status,
            reply.text()
        );
        let json = reply.json();
        let items = json[key].as_array().cloned();
        let has_items = items.is_some();
        let page = Page {
            items: items.unwrap_or_default(),
            first: reply.header("x-taxii-date-added-first").map(str::to_owned),
            last: reply.header("x-taxii-date-added-last").map(str::to_owned),
            more: json.get("more").and_then(Value::as_bool),
            next: json.get("next").and_then(Value::as_str).map(str::to_owned),
            content_type: reply.header("content-type").map(str::to_owned),
        };
        Ok((page, has_items))
    }

    /// Waits for `/readyz` → 200.
    pub async fn wait_ready(&self, deadline: Deadline) -> anyhow::Result<()> {
        loop {
            if let Ok(r) = self.get("/readyz").await
                && r.status == StatusCode::OK
            {
                return Ok(());
            }
            anyhow::ensure!(!deadline.passed(), "{}: not ready in time", self.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `collection_revision` gauges of `/metrics`: what this replica has loaded.
    pub async fn loaded_revisions(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let text = self.get("/metrics").await?.text();
        Ok(
            metric_values(&text, "taxiway_api_collection_revision{collection=\"")
                .into_iter()
                .collect(),
        )
    }

    /// The generation this replica serves (`taxiway_api_generation`).
    pub async fn generation(&self) -> anyhow::Result<Option<i64>> {
        let text = self.get("/metrics").await?.text();
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("taxiway_api_generation "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as i64))
    }

    /// Waits until this replica is ready and has loaded at least `expected` revisions.
    pub async fn wait_for_revisions(
        &self,
        expected: &BTreeMap<String, i64>,
        deadline: Deadline,
    ) -> anyhow::Result<()> {
        self.wait_ready(deadline).await?;
        loop {
            let now = self.loaded_revisions().await.unwrap_or_default();
            if expected
                .iter()
                .all(|(c, r)| now.get(c).is_some_and(|n| n >= r))
            {
                return Ok(());
            }
            anyhow::ensure!(
                !deadline.passed(),
                "{}: timed out waiting for revisions {expected:?}; loaded {now:?}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `label → value` of the lines `PREFIX<label>"} <value>`.
fn metric_values(text: &str, prefix: &str) -> Vec<(String, i64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let (label, value) = rest.split_once("\"} ")?;
            Some((label.to_owned(), value.trim().parse::<f64>().ok()? as i64))
        })
        .collect()
}

/// `(id, modified-or-created)` of an object as served or as in a file.
pub fn key_of(object: &Value) -> (String, String) {
    (id_of(object), version_of(object))
}

/// `(id, version)` of a manifest entry or an object.
pub fn manifest_key(entry: &Value) -> (String, String) {
    (
        entry["id"].as_str().unwrap_or_default().to_owned(),
        entry["version"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Parses an RFC 3339 header value into microseconds since the epoch.
pub fn micros(text: &str) -> anyhow::Result<i128> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
    Ok(t.unix_timestamp_nanos() / 1000)
}

/// Files of one collection in import order, and what a TAXII server over them must serve.
pub struct Expected<'a> {
    pub files: Vec<&'a Release>,
}

impl<'a> Expected<'a> {
    pub fn new(files: Vec<&'a Release>) -> Self {
        Expected { files }
    }

    /// Every (id, version) of the files, with the content of the newest file that has it.
    pub fn history(&self) -> BTreeMap<(String, String), &'a Value> {
        let mut out = BTreeMap::new();
        for f in &self.files {
            for o in &f.objects {
                out.insert(key_of(o), o);
            }
        }
        out
    }

    /// The (id, version) pairs a later file re-issues with other content.
    pub fn reissued(&self) -> BTreeSet<(String, String)> {
        let mut seen: BTreeMap<(String, String), &Value> = BTreeMap::new();
        let mut out = BTreeSet::new();
        for f in &self.files {
            for o in &f.objects {
                let k = key_of(o);
                if let Some(before) = seen.insert(k.clone(), o)
                    && before != o
                {
                    out.insert(k);
                }
            }
        }
        out
    }
}

/// Checks a list of served objects is exactly `expected` (each (id, version) once) and every
/// object JSON-equal to `content[(id, version)]`.
pub fn check_objects(
    what: &str,
    served: &[Value],
    expected: &BTreeSet<(String, String)>,
    content: &BTreeMap<(String, String), &Value>,
) -> anyhow::Result<()> {
    let keys: Vec<(String, String)> = served.iter().map(key_of).collect();
    let set: BTreeSet<(String, String)> = keys.iter().cloned().collect();
    anyhow::ensure!(
        set.len() == keys.len(),
        "{what}: {} duplicates",
        keys.len() - set.len()
    );
    let missing: Vec<_> = expected.difference(&set).take(5).collect();
    let extra: Vec<_> = set.difference(expected).take(5).collect();
    anyhow::ensure!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} served, {} expected; missing {missing:?}; extra {extra:?}",
        set.len(),
        expected.len()
    );
    for o in served {
        let k = key_of(o);
        let want = content
            .get(&k)
            .ok_or_else(|| anyhow::anyhow!("{what}: no content for {k:?}"))?;
        anyhow::ensure!(*want == o, "{what}: {k:?} differs from its source object");
    }
    Ok(())
}

/// Checks the date_added headers of a walk: present on every non-empty page, first ≤ last, and
/// strictly increasing from page to page (date_added is unique per version).
pub fn check_page_headers(what: &str, pages: &[Page]) -> anyhow::Result<()> {
    let mut previous_last: Option<i128> = None;
    for (i, p) in pages.iter().enumerate() {
        anyhow::ensure!(
            p.content_type.as_deref() == Some(TAXII),
            "{what} page {i}: content-type {:?}",
            p.content_type
        );
        if p.items.is_empty() {
            anyhow::ensure!(
                p.first.is_none() && p.last.is_none(),
                "{what} page {i}: empty page with date headers"
            );
            continue;
        }
        let (Some(first), Some(last)) = (&p.first, &p.last) else {
            anyhow::bail!("{what} page {i}: missing X-TAXII-Date-Added-First/Last");
        };
        let (first, last) = (micros(first)?, micros(last)?);
        anyhow::ensure!(first <= last, "{what} page {i}: first > last");
        if p.items.len() == 1 {
            anyhow::ensure!(first == last, "{what} page {i}: one item, first != last");
        }
        if let Some(prev) = previous_last {
            anyhow::ensure!(
                prev < first,
                "{what} page {i}: first {first} not after the previous page's last {prev}"
            );
        }
        previous_last = Some(last);
    }
    Ok(())
}

/// The items of every page, in order.
pub fn items(pages: &[Page]) -> Vec<Value> {
    pages.iter().flat_map(|p| p.items.iter().cloned()).collect()
}
