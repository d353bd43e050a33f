//! Taxiway's read-only TAXII 2.1 server: a drop-in for attack-taxii.mitre.org over the projections.
//!
//! Layers: [`store`] loads collections (CQL in production, memory in tests) → [`refresh`] keeps one
//! in-memory [`snapshot::Snapshot`] per collection revision → [`routes::app`] serves the three
//! kinds of root (default, pinned release, history) through one filter and paging engine
//! ([`filters`], [`cursor`]).

pub mod auth;
pub mod cache;
pub mod compressed;
pub mod config;
pub mod cursor;
pub mod error;
pub mod filters;
pub mod handlers;
pub mod health;
pub mod media;
pub mod metrics;
pub mod openapi;
pub mod refresh;
pub mod routes;
pub mod snapshot;
pub mod store;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, Error};
pub use routes::app;

use crate::auth::Auth;
use crate::cache::ResultCache;
use crate::compressed::CompressedCache;
use crate::config::{Config, ServerConfig};
use crate::cursor::CursorKey;
use crate::metrics::Metrics;
use crate::snapshot::Catalog;
use crate::store::Store;

/// Everything a request handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

pub struct Shared {
    pub server: ServerConfig,
    /// `server.prefix` normalised (`/api/v21`).
    pub prefix: String,
    catalog: RwLock<Arc<Catalog>>,
    pub cache: ResultCache,
    pub compressed: CompressedCache,
    pub metrics: Metrics,
    pub cursor_key: CursorKey,
    pub auth: Option<Arc<Auth>>,
    health: Mutex<Health>,
}

/// What `/readyz` reports on.
#[derive(Debug, Default, Clone)]
pub struct Health {
    pub last_ok: Option<Instant>,
    pub last_error: Option<String>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

impl AppState {
    pub fn new(server: ServerConfig, auth: Option<Auth>) -> Result<Self, Error> {
        Ok(AppState {
            inner: Arc::new(Shared {
                prefix: server.normalized_prefix(),
                cache: ResultCache::new(server.result_cache_entries),
                compressed: CompressedCache::new(server.compressed_cache_bytes),
                cursor_key: CursorKey::new(server.cursor_key.0.as_bytes()),
                metrics: Metrics::new()?,
                auth: auth.map(Arc::new),
                catalog: RwLock::new(Arc::new(Catalog::default())),
                health: Mutex::new(Health::default()),
                server,
            }),
        })
    }

    /// The catalog as of the last refresh. Requests hold the `Arc` they got for their whole
    /// life, so a reload never changes data under a streaming response.
    pub fn catalog(&self) -> Arc<Catalog> {
        // A poisoned lock only means a panic while swapping an Arc: the value is still whole.
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn record_poll(&self, result: Result<(), String>) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                h.last_ok = Some(Instant::now());
                h.last_error = None;
            }
            Err(e) => h.last_error = Some(e),
        }
    }
}

/// Serves `state` on `listener` until `shutdown` is cancelled, refreshing from `store`.
/// Returns once the refresher and the server have both stopped.
pub async fn serve(
    state: AppState,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let refresher = tokio::spawn(refresh::run(state.clone(), store, shutdown.clone()));
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the listener address".to_owned(),
        source,
    })?;
    tracing::info!(%addr, "serving TAXII 2.1");
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .map_err(|source| Error::Io {
            context: "serving HTTP".to_owned(),
            source,
        });
    shutdown.cancel();
    if let Err(e) = refresher.await {
        tracing::error!(error = %e, "refresher task failed");
    }
    result
}

/// The whole service: connect to CQL, then [`serve`].
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let auth = config
        .auth_file
        .as_deref()
        .map(Auth::from_file)
        .transpose()?;
    let state = AppState::new(config.server.clone(), auth)?;
    let store = store::cql::CqlStore::connect(&config.cql).await?;
    serve(state, Arc::new(store), listener, shutdown).await
}
