//! The HTTP server: accepts connections up to a cap, serves each under the header-read and
//! keep-alive limits, and on shutdown stops accepting and lets open responses finish within the
//! drain deadline. `axum::serve` can set neither a header-read timeout nor a connection cap.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::connection::{self, Ended};
use crate::metrics::Metrics;

/// The connection-level limits, ready to serve with.
pub(crate) struct Server {
    http: http1::Builder,
    connections: Arc<Semaphore>,
    keep_alive: Duration,
    drain: Duration,
    metrics: Metrics,
}

impl Server {
    pub(crate) fn new(limits: &Limits, metrics: Metrics) -> Self {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        Server {
            http,
            connections: Arc::new(Semaphore::new(limits.max_connections as usize)),
            keep_alive: limits.keep_alive_timeout,
            drain: limits.drain_timeout,
            metrics,
        }
    }

    /// Serves `router` on `listener` until `shutdown`, then drains: the listener closes (new
    /// connections are refused), idle connections close, and responses in flight get the drain
    /// deadline to finish before their connections are cut.
    pub(crate) async fn run(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: CancellationToken,
    ) {
        let mut open = JoinSet::new();
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                // Reaps finished connections, whose results the set would otherwise keep.
                Some(_) = open.join_next(), if !open.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        self.accept_failed(e, &shutdown).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                // Closed at once, unread: anything more would spend what the cap protects.
                self.metrics
                    .connections
                    .with_label_values(&["refused"])
                    .inc();
                drop(stream);
                continue;
            };
            self.metrics
                .connections
                .with_label_values(&["accepted"])
                .inc();
            let open_gauge = OpenConnection::new(&self.metrics);
            let served = connection::serve(
                stream,
                router.clone(),
                self.http.clone(),
                self.keep_alive,
                shutdown.clone(),
            );
            open.spawn(async move {
                let closed = served.await;
                open_gauge.closed(closed);
                drop(permit);
            });
        }
        drop(listener);
        let waiting = open.len();
        tracing::info!(connections = waiting, drain = ?self.drain, "draining connections");
        let drained = tokio::time::timeout(self.drain, async {
            while open.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = open.len(),
                "drain deadline passed: cutting the connections still open"
            );
            // Aborted tasks drop their OpenConnection, which counts them as cut.
            open.shutdown().await;
        }
    }

    /// Connection errors (a client gone before it was accepted) are the client's; anything else
    /// (out of file descriptors, most likely) would spin if retried at once.
    async fn accept_failed(&self, error: io::Error, shutdown: &CancellationToken) {
        use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionRefused | ConnectionReset
        ) {
            return;
        }
        tracing::error!(error = %error, "accepting a connection failed; retrying in 1 s");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Counts a connection in `connections_open` while it lives, and its end in
/// `connections_closed_total`; dropped without [`OpenConnection::closed`] (the task was aborted
/// at the drain deadline), it counts as `drain_cut`.
struct OpenConnection {
    metrics: Metrics,
    closed: Option<Ended>,
}

impl OpenConnection {
    fn new(metrics: &Metrics) -> Self {
        metrics.connections_open.inc();
        OpenConnection {
            metrics: metrics.clone(),
            closed: None,
        }
    }

    fn closed(mut self, why: Ended) {
        self.closed = Some(why);
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
        let reason = self.closed.map_or("drain_cut", Ended::label);
        self.metrics
            .connections_closed
            .with_label_values(&[reason])
            .inc();
    }
}
