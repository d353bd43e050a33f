//! Taxiway's read-only TAXII 2.1 server: a drop-in for attack-taxii.mitre.org over the projections.
//!
//! Layers: [`store`] loads collections (CQL in production, memory in tests) → [`refresh`] keeps one
//! in-memory snapshot per collection revision → [`app`] serves the three kinds of root (default,
//! pinned release, history), listing every one through one handler: a query extractor, a pure
//! selection engine and a page module.

pub mod config;
pub mod refresh;
pub mod store;

mod auth;
mod changes;
mod compressed;
mod connection;
mod cors;
mod cursor;
mod error;
mod etag;
mod filters;
mod handlers;
pub mod hash_password;
mod health;
mod limits;
mod login_cache;
mod media;
mod metrics;
mod openapi;
pub mod password;
mod rights;
mod route_table;
mod routes;
mod selection;
mod server;
mod snapshot;
mod state;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::Auth;
pub use error::Error;
pub use route_table::route_table;
pub use routes::app;
pub use state::AppState;

use crate::config::Config;
use crate::store::Store;

/// Serves `state` on `listener` under its limits until `shutdown` is cancelled, refreshing from
/// `store`; then drains open responses (docs/reliability.md). Returns once the refresher and
/// every connection have stopped.
pub async fn serve(
    state: AppState,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the listener address".to_owned(),
        source,
    })?;
    let refresher = tokio::spawn(refresh::run(state.clone(), store, shutdown.clone()));
    let stopping = state.stopping.clone();
    let stop_streams = shutdown.clone();
    tokio::spawn(async move {
        stop_streams.cancelled().await;
        stopping.cancel();
    });
    let limits = &state.server.limits;
    tracing::info!(%addr, ?limits, "serving TAXII 2.1");
    let server = server::Server::new(limits, state.metrics.clone());
    server.run(listener, app(state), shutdown.clone()).await;
    shutdown.cancel();
    if let Err(e) = refresher.await {
        tracing::error!(error = %e, "refresher task failed");
    }
    Ok(())
}

/// The whole service: [`serve`] over the CQL store. A cluster that is down or refuses the
/// connection (credentials, certificate) leaves the api up but not ready, `/readyz` saying why,
/// until it answers; settings that cannot work (an unreadable CA file) stop it at start.
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
    let store = store::cql::Connecting::new(config.cql)?;
    serve(state, Arc::new(store), listener, shutdown).await
}
