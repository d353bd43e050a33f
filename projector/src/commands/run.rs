//! The `run` command: project the topic into the active generation, following generation switches.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::feed::Feed;
use crate::metrics::Metrics;
use crate::store::Store;

/// Runs until `shutdown` is cancelled. When another process (a `rebuild`) switches the active
/// generation, the current batch is finished and committed, and consumption continues in the
/// new generation's group, from where that group's commits left it.
pub(crate) async fn run(
    settings: &Settings,
    store: &Store,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut active = store.migrate().await?;
    loop {
        metrics.active_generation.set(i64::from(active.generation));
        let mut feed = Feed::start(
            settings,
            store,
            active.generation,
            &active.keyspace,
            metrics,
            shutdown,
            "run",
        )
        .await?;
        let mut last_check = Instant::now();
        let mut last_lag = Instant::now();
        // At most one lag measurement runs at a time, beside consumption.
        let mut lag_probe: Option<tokio::task::JoinHandle<()>> = None;
        let next = loop {
            match feed.step().await {
                Ok(_) => {}
                Err(Error::Shutdown) => return Ok(()),
                Err(e) => return Err(e),
            }
            if shutdown.is_cancelled() {
                feed.finish(&[])?;
                return Ok(());
            }
            if last_lag.elapsed() >= settings.progress_interval
                && lag_probe.as_ref().is_none_or(|p| p.is_finished())
            {
                last_lag = Instant::now();
                let probe = feed.lag_probe();
                lag_probe = Some(tokio::spawn(async move {
                    if let Err(e) = probe.await {
                        tracing::warn!(error = %e, "measuring consumer lag");
                    }
                }));
            }
            if last_check.elapsed() >= settings.generation_poll {
                last_check = Instant::now();
                match store.active().await {
                    Ok(Some(now)) if now != active => break now,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "checking the active generation"),
                }
            }
        };
        tracing::info!(
            from = active.generation,
            to = next.generation,
            keyspace = %next.keyspace,
            "active generation switched; following it"
        );
        let marks = feed.applied_marks();
        feed.finish(&marks)?;
        active = next;
    }
}
