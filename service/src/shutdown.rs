//! The shutdown signal: SIGINT or SIGTERM cancels a token every task of a service watches.

use tokio_util::sync::CancellationToken;

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
