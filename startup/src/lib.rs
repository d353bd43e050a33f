//! Start-up code the three services share: logging, shutdown on SIGINT/SIGTERM, and the small
//! HTTP endpoint serving Prometheus metrics and a liveness check; and the CPU time of a process,
//! which the benchmarks print.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

/// Log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, filtered by `TAXIWAY_LOG` (e.g. `debug`, `info,taxiway_api=debug`), else by
/// `default_filter`. Colours only on a terminal, so log files stay plain text.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAXIWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A token cancelled on Ctrl-C (SIGINT) or SIGTERM — what `docker stop` and process managers
/// send — after logging `what_next` (what the service does before it exits).
pub fn shutdown_on_signal(what_next: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        terminated().await;
        tracing::info!("{what_next}");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        // Without a SIGTERM handler, Ctrl-C still works.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn terminated() {
    let _ = tokio::signal::ctrl_c().await;
}

/// A configuration value that never shows in logs (the effective configuration is logged at
/// start): an apikey, a password, a signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Durations for flags and environment variables: `500ms`, `30s`, `10m`, `1h`, or bare seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 10m or 1h"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

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

/// User + system CPU seconds a process has used (`pid` a number, or `self`), from Linux's
/// `/proc/<pid>/stat` at 100 ticks a second; `None` where that cannot be read.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces): utime and stime are
    // the 12th and 13th of them.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

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

    #[test]
    fn cpu_seconds_of_this_process_grow_with_work() {
        let before = cpu_seconds("self").unwrap();
        // Spin until the counter moves (a loaded machine may give this thread little time),
        // within a deadline so a reader that never moves fails instead of hanging.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.05 && std::time::Instant::now() < deadline {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = cpu_seconds("self").unwrap();
        }
        assert!(after - before >= 0.05, "{before} → {after}");
        assert_eq!(cpu_seconds("not-a-pid"), None);
    }
}
