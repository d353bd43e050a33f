//! The small HTTP endpoint serving Prometheus metrics and a liveness check.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

/// The registry in Prometheus' text format.
pub fn render(registry: &Registry) -> Vec<u8> {
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot run out of space; a family that fails to encode is logged and
    // the rest is still served.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    buffer
}

/// Serves `GET /metrics` and `GET /healthz` on `addr` until `shutdown` is cancelled.
pub async fn serve_metrics(
    addr: SocketAddr,
    registry: Registry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        render(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { StatusCode::OK.into_response() }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Starts [`serve_metrics`] in the background when an address is configured.
pub fn spawn_metrics(addr: Option<SocketAddr>, registry: Registry, shutdown: CancellationToken) {
    if let Some(addr) = addr {
        tokio::spawn(async move {
            if let Err(e) = serve_metrics(addr, registry, shutdown).await {
                tracing::error!(%addr, error = %e, "metrics endpoint stopped");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_and_liveness_are_served_until_shutdown() {
        let registry = Registry::new();
        let counter = prometheus::IntCounter::new("probe_total", "a probe").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc_by(3);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_metrics(addr, registry, shutdown.clone()));
        let mut body = String::new();
        for _ in 0..50 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                stream.read_to_string(&mut body).await.unwrap();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("probe_total 3"), "{body}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
