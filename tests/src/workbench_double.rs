//! An in-process test double of the ATT&CK Workbench REST API, limited to what ingest calls (as specified in
//! `shared/design/workbench-api.md`): the collections list, collection bundles, attack objects, recent activity
//! and the apikey challenge, over real ATT&CK bundles, with Workbench's authentication, query validation and
//! error bodies, a mutable store, faults on demand and a request log.
//!
//! ```no_run
//! # async fn demo() -> Result<(), taxiway_tests::workbench_double::DoubleError> {
//! use taxiway_tests::fixtures;
//! use taxiway_tests::workbench_double::{WorkbenchConfig, WorkbenchDouble};
//! let workbench = WorkbenchDouble::start(WorkbenchConfig::default()).await?;
//! workbench.add_collection_version_from_bundle(fixtures::path("ics-attack-18.1.json.zst"))?;
//! // point the client at workbench.base_url() with Basic taxii-server:secret-squirrel
//! # Ok(()) }
//! ```

mod auth;
mod query;
mod reply;
mod routes;
mod store;
mod timestamp;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Layer;

pub use auth::challenge_hash;
pub use store::{BundleSource, CollectionVersionKey, ExportRecord, LoadReport, ObjectVersionKey};

/// One entry of `serviceAuthn.*.serviceAccounts`.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub name: String,
    pub apikey: String,
}

impl ServiceAccount {
    pub fn new(name: impl Into<String>, apikey: impl Into<String>) -> Self {
        ServiceAccount {
            name: name.into(),
            apikey: apikey.into(),
        }
    }

    /// `taxii-server` / `secret-squirrel`, read-only: the account MITRE's TAXII server ships with.
    pub fn taxii_server() -> Self {
        ServiceAccount::new("taxii-server", "secret-squirrel")
    }
}

/// How the double is set up. The same accounts serve both mechanisms.
///
/// As in Workbench, when `challenge_apikey` is enabled *every* `Authorization` header goes to the Bearer
/// strategy, so a Basic header is rejected (401) even if `basic_apikey` is enabled too.
#[derive(Debug, Clone)]
pub struct WorkbenchConfig {
    pub service_accounts: Vec<ServiceAccount>,
    /// `serviceAuthn.basicApikey.enable`.
    pub basic_apikey: bool,
    /// `serviceAuthn.challengeApikey.enable`.
    pub challenge_apikey: bool,
    /// `tokenTimeout`; JWT `exp` has whole seconds, so sub-second parts are dropped. Default 300 s.
    pub token_timeout: Duration,
    /// How long a challenge can be used. Default 60 s.
    pub challenge_validity: Duration,
}

impl Default for WorkbenchConfig {
    /// Basic apikey only, with the `taxii-server` account.
    fn default() -> Self {
        WorkbenchConfig::basic(vec![ServiceAccount::taxii_server()])
    }
}

impl WorkbenchConfig {
    /// Basic apikey authentication only.
    pub fn basic(service_accounts: Vec<ServiceAccount>) -> Self {
        WorkbenchConfig {
            service_accounts,
            basic_apikey: true,
            challenge_apikey: false,
            token_timeout: Duration::from_secs(300),
            challenge_validity: Duration::from_secs(60),
        }
    }

    /// Challenge apikey authentication (Bearer tokens) only.
    pub fn challenge(service_accounts: Vec<ServiceAccount>) -> Self {
        WorkbenchConfig {
            basic_apikey: false,
            challenge_apikey: true,
            ..WorkbenchConfig::basic(service_accounts)
        }
    }

    pub fn with_token_timeout(mut self, timeout: Duration) -> Self {
        self.token_timeout = timeout;
        self
    }

    pub fn with_challenge_validity(mut self, validity: Duration) -> Self {
        self.challenge_validity = validity;
        self
    }
}

/// Failures on demand. A fault stays until cleared, except where said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `GET /api/collection-bundles` for this collection answers 500 `Unable to export collection.`.
    BundleServerError { collection_id: String },
    /// `GET /api/collections` answers `[]`.
    EmptyCollectionList,
    /// Every response is delayed this long. Setting it again replaces the delay.
    SlowResponses(Duration),
    /// Bundle responses declare their full length, send half the body, then abort the connection.
    TruncatedBundle,
    /// Acts at once and is not kept: every token issued so far is treated as expired.
    ExpireTokensNow,
    /// One-shot: right after the next `GET /api/collections` answer is built, this version is removed,
    /// so a following export of it gets 404 (a version deleted between list and export).
    RemoveAfterNextList {
        collection_id: String,
        modified: String,
    },
    /// Every response is 503 `Service Unavailable` (an upstream proxy fault).
    ServiceUnavailable,
}

/// One request the double received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The path as sent (a trailing slash kept).
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub status: u16,
    /// The first word of the `Authorization` header (`Basic`, `Bearer`, `Apikey`).
    pub authorization_scheme: Option<String>,
}

impl RequestRecord {
    /// The path without a trailing slash, for matching `/api/collections/` and `/api/collections` alike.
    pub fn route(&self) -> &str {
        match self.path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        }
    }

    /// Every (name, value) pair of the query string, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query.as_deref().map(query::pairs).unwrap_or_default()
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DoubleError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot decompress the bundle: {0}")]
    Decompress(io::Error),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid bundle: {0}")]
    InvalidBundle(String),
    #[error("invalid STIX object: {0}")]
    InvalidObject(String),
    #[error("collection version {id} {modified} is stored already")]
    DuplicateCollectionVersion { id: String, modified: String },
    #[error("object version {id} {modified} is stored already")]
    DuplicateObjectVersion { id: String, modified: String },
    #[error("no stored object has id {0}")]
    UnknownObject(String),
    #[error("no stored collection version {id} {modified}")]
    UnknownCollectionVersion { id: String, modified: String },
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(io::Error),
}

/// The mutable part of the double, shared by the handlers and the test.
pub(crate) struct State {
    pub store: store::Store,
    pub faults: Vec<Fault>,
    pub challenges: HashMap<String, auth::PendingChallenge>,
    /// When each token was last issued (a token re-issued within the same second is the same string).
    pub issued_tokens: HashMap<String, Instant>,
    /// Tokens issued at or before this instant count as expired ([`Fault::ExpireTokensNow`]).
    pub tokens_expired_at: Option<Instant>,
    pub requests: Vec<RequestRecord>,
}

pub(crate) struct Shared {
    pub config: WorkbenchConfig,
    pub jwt_secret: Vec<u8>,
    state: Mutex<State>,
}

impl Shared {
    /// The lock is never held across an await; a panic while holding it leaves data a test can still read.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running double on `127.0.0.1:<random port>`. Dropping it stops the server.
pub struct WorkbenchDouble {
    base_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl WorkbenchDouble {
    /// Binds `127.0.0.1:0` and serves until dropped or [`shutdown`](Self::shutdown).
    pub async fn start(config: WorkbenchConfig) -> Result<Self, DoubleError> {
        let shared = Arc::new(Shared {
            config,
            jwt_secret: auth::new_secret(),
            state: Mutex::new(State {
                store: store::Store::default(),
                faults: Vec::new(),
                challenges: HashMap::new(),
                issued_tokens: HashMap::new(),
                tokens_expired_at: None,
                requests: Vec::new(),
            }),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(DoubleError::Listen)?;
        let address = listener.local_addr().map_err(DoubleError::Listen)?;
        let app = axum::middleware::from_fn_with_state(shared.clone(), routes::outer)
            .layer(routes::router(shared.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, axum::ServiceExt::into_make_service(app))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(WorkbenchDouble {
            base_url: format!("http://{address}"),
            shared,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash; routes are under `/api`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Loads a real collection bundle (plain or zstd JSON): its `x-mitre-collection` becomes a collection
    /// version; every other object an attack-object version, unless that (id, modified) is stored already,
    /// in which case the stored content stays (as Workbench's import does, see [`LoadReport::duplicates`]).
    pub fn add_collection_version_from_bundle(
        &self,
        source: impl Into<BundleSource>,
    ) -> Result<LoadReport, DoubleError> {
        let text = source.into().read_text()?;
        self.lock().store.load_bundle(&text)
    }

    /// Stores a new version of object `id`: its latest version changed by `mutate`, with a `modified` at least
    /// 1 ms later (and not before now). Collections are not touched. Returns the new version's key.
    pub fn edit_object(
        &self,
        id: &str,
        mutate: impl FnOnce(&mut Value),
    ) -> Result<ObjectVersionKey, DoubleError> {
        self.lock().store.edit_object(id, mutate)
    }

    /// One stored object version, as served.
    pub fn object_version(&self, id: &str, modified: &str) -> Option<Value> {
        let modified = timestamp::normalize(modified)?;
        let state = self.lock();
        serde_json::from_str(state.store.object(id, &modified)?.raw.get()).ok()
    }

    /// `workspace.exported` of a collection version: grows on each export without `previewOnly=true`.
    pub fn exports_of(&self, id: &str, modified: &str) -> Vec<ExportRecord> {
        let Some(modified) = timestamp::normalize(modified) else {
            return Vec::new();
        };
        self.lock()
            .store
            .collection(id, &modified)
            .map(|c| c.workspace.exported.clone())
            .unwrap_or_default()
    }

    /// Turns a fault on (replacing one of the same kind). [`Fault::ExpireTokensNow`] acts at once.
    pub fn set_fault(&self, fault: Fault) {
        let mut state = self.lock();
        if fault == Fault::ExpireTokensNow {
            state.tokens_expired_at = Some(Instant::now());
            return;
        }
        let kind = std::mem::discriminant(&fault);
        state.faults.retain(|f| std::mem::discriminant(f) != kind);
        state.faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// How many requests went to `route` (trailing slashes ignored on both sides), any method and status.
    pub fn count_requests(&self, route: &str) -> usize {
        let route = route.trim_end_matches('/');
        self.lock()
            .requests
            .iter()
            .filter(|r| r.route() == route)
            .count()
    }
}

impl Drop for WorkbenchDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
