//! The small HTTP endpoint serving Prometheus metrics and a liveness check, and the metrics
//! every service shares (build info, process).

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, IntGauge, Opts, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

/// The version the binaries were built from; the workspace shares one version.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the image was built from, when the build passed it (`TAXIWAY_GIT_SHA`, a build
/// argument of the Dockerfile); a plain `cargo build` has none.
const GIT_SHA: &str = match option_env!("TAXIWAY_GIT_SHA") {
    Some(sha) => sha,
    None => "unknown",
};

/// What every service exports besides its own metrics, unprefixed so that one dashboard query
/// covers the three: `taxiway_build_info` and, on Linux, the `process_*` family.
fn shared_registry() -> &'static Registry {
    static SHARED: OnceLock<Registry> = OnceLock::new();
    SHARED.get_or_init(|| {
        let registry = Registry::new();
        let build_info = IntGauge::with_opts(
            Opts::new(
                "taxiway_build_info",
                "Always 1; the labels say what is running",
            )
            .const_label("version", VERSION)
            .const_label("git_sha", GIT_SHA),
        );
        // Registering fresh, validly named collectors in an empty registry cannot fail; were it
        // to, the service would still serve its own metrics, so log rather than stop.
        match build_info {
            Ok(gauge) => {
                gauge.set(1);
                if let Err(e) = registry.register(Box::new(gauge)) {
                    tracing::warn!(error = %e, "registering taxiway_build_info");
                }
            }
            Err(e) => tracing::warn!(error = %e, "creating taxiway_build_info"),
        }
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "registering the process metrics");
        }
        registry
    })
}

/// The registry, with the shared metrics, in Prometheus' text format.
pub fn render(registry: &Registry) -> Vec<u8> {
    render_all([registry])
}

/// Several registries (a node's stages, each with its own prefix) and the shared metrics once,
/// in Prometheus' text format.
pub fn render_all<'a>(registries: impl IntoIterator<Item = &'a Registry>) -> Vec<u8> {
    let mut families: Vec<_> = registries.into_iter().flat_map(|r| r.gather()).collect();
    families.extend(shared_registry().gather());
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot run out of space; a family that fails to encode is logged and
    // the rest is still served.
    if let Err(e) = TextEncoder::new().encode(&families, &mut buffer) {
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
        let version =
            format!("taxiway_build_info{{git_sha=\"{GIT_SHA}\",version=\"{VERSION}\"}} 1");
        assert!(body.contains(&version), "{body}");
        let rss = body
            .lines()
            .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
            .and_then(|value| value.trim().parse::<f64>().ok());
        if cfg!(target_os = "linux") {
            assert!(rss.is_some_and(|bytes| bytes > 0.0), "{body}");
        }
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
