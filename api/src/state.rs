//! What every request handler can reach: configuration, the current catalog, caches, metrics.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;

use crate::auth::Auth;
use crate::compressed::CompressedCache;
use crate::config::ServerConfig;
use crate::cursor::CursorKey;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::selection::ResultCache;
use crate::snapshot::Catalog;

/// Everything a request handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

pub struct Shared {
    pub(crate) server: ServerConfig,
    /// `server.prefix` normalised (`/api/v21`).
    pub(crate) prefix: String,
    catalog: RwLock<Arc<Catalog>>,
    pub(crate) cache: ResultCache,
    pub(crate) compressed: CompressedCache,
    pub metrics: Metrics,
    pub(crate) cursor_key: CursorKey,
    pub(crate) auth: Option<Arc<Auth>>,
    /// The CORS layer of the TAXII routes, when origins are configured.
    pub(crate) cors: Option<CorsLayer>,
    health: Mutex<Health>,
    /// Bumped at every catalog swap: live streams wait on it instead of polling.
    catalog_swaps: watch::Sender<u64>,
    /// One permit per live stream ([`ServerConfig`]'s `max_stream_subscribers`).
    pub(crate) stream_slots: Arc<Semaphore>,
    /// Cancelled when the server starts shutting down: live streams end so the drain need not
    /// wait for them (their clients resume with `Last-Event-ID`).
    pub(crate) stopping: CancellationToken,
}

/// What `/readyz` reports on.
#[derive(Debug, Default, Clone)]
pub(crate) struct Health {
    pub(crate) last_ok: Option<Instant>,
    pub(crate) last_error: Option<String>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

impl AppState {
    pub fn new(server: ServerConfig, auth: Option<Auth>) -> Result<Self, Error> {
        let cursor_key = match &server.cursor_key {
            // An empty key would sign with a key anyone knows: as good as none.
            Some(key) if !key.0.is_empty() => CursorKey::new(key.0.as_bytes()),
            _ => {
                tracing::warn!(
                    "no cursor key configured: `next` cursors are signed with a random key of this \
                     process; replicas behind one load balancer need a shared key \
                     (--cursor-key or TAXIWAY_API_CURSOR_KEY), or a client's next page fails on \
                     another replica"
                );
                CursorKey::random().map_err(|e| Error::Randomness(e.to_string()))?
            }
        };
        let cors = crate::cors::layer(&server.cors_origins)?;
        Ok(AppState {
            inner: Arc::new(Shared {
                cors,
                prefix: server.normalized_prefix(),
                cache: ResultCache::new(server.result_cache_entries),
                compressed: CompressedCache::new(server.compressed_cache_bytes),
                cursor_key,
                metrics: Metrics::new()?,
                auth: auth.map(Arc::new),
                catalog: RwLock::new(Arc::new(Catalog::default())),
                health: Mutex::new(Health::default()),
                catalog_swaps: watch::Sender::new(0),
                stream_slots: Arc::new(Semaphore::new(
                    server.limits.max_stream_subscribers as usize,
                )),
                stopping: CancellationToken::new(),
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

    pub(crate) fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
        self.catalog_swaps.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever the catalog is swapped ([`AppState::catalog`] then has the new one).
    pub(crate) fn catalog_swaps(&self) -> watch::Receiver<u64> {
        self.catalog_swaps.subscribe()
    }

    pub(crate) fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn record_poll(&self, result: Result<(), String>) {
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
