//! The `rebuild` command: replay the topic into a new generation, switch readers to it when caught up.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::feed::Feed;
use crate::metrics::Metrics;
use crate::store::Store;

/// Creates generation N+1, replays the whole topic into it with group `<group>-g<N+1>`
/// (committing as it goes, so a `run` that later follows it continues exactly there), reports
/// progress, and when the lag is zero makes it the active generation. Returns its number.
pub(crate) async fn rebuild(
    settings: &Settings,
    store: &Store,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<i32> {
    let previous = store.migrate().await?;
    let n = store
        .generations()
        .await?
        .iter()
        .map(|g| g.generation)
        .max()
        .unwrap_or(previous.generation)
        .max(previous.generation)
        + 1;
    let generation = store.create_generation(n, "building").await?;
    metrics.rebuild_generation.set(i64::from(n));
    tracing::info!(generation = n, keyspace = %generation.keyspace, active = previous.generation, "rebuilding");
    let mut feed = Feed::start(
        settings,
        store,
        n,
        &generation.keyspace,
        metrics,
        shutdown,
        "rebuild",
    )
    .await?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut since_report = 0usize;
    let mut total = 0usize;
    // Lag is measured beside consumption (see `Feed::lag_probe`): a measurement starts
    // when a report is due and is read when it has finished, or at once when idle.
    let mut probe: Option<tokio::task::JoinHandle<Result<BTreeMap<i32, i64>>>> = None;
    loop {
        let step = feed.step().await?;
        if shutdown.is_cancelled() {
            return Err(Error::Shutdown);
        }
        since_report += step.messages;
        total += step.messages;
        let idle = step.messages == 0;
        if probe.is_none() && (idle || last_report.elapsed() >= settings.progress_interval) {
            probe = Some(tokio::spawn(feed.lag_probe()));
        }
        let Some(running) = probe.take_if(|p| idle || p.is_finished()) else {
            continue;
        };
        let lag: i64 = running
            .await
            .map_err(|e| Error::State(format!("lag measurement task failed: {e}")))??
            .values()
            .sum();
        let interval = last_report.elapsed().as_secs_f64().max(1e-3);
        let rate = since_report as f64 / interval;
        metrics.rebuild_lag.set(lag);
        metrics.rebuild_events_per_second.set(rate);
        let eta_s = if rate > 0.0 {
            lag as f64 / rate
        } else {
            f64::INFINITY
        };
        tracing::info!(
            generation = n,
            applied = total,
            lag,
            events_per_s = rate.round(),
            eta_s = eta_s.round(),
            "rebuild progress"
        );
        last_report = Instant::now();
        since_report = 0;
        if lag == 0 {
            break;
        }
    }
    let marks = feed.applied_marks();
    feed.finish(&marks)?;
    store.set_caught_up(n).await?;
    store.set_generation_state(n, "active").await?;
    store.switch_active(&generation).await?;
    store
        .set_generation_state(previous.generation, "superseded")
        .await?;
    metrics.rebuild_lag.set(0);
    tracing::info!(
        generation = n,
        events = total,
        seconds = started.elapsed().as_secs_f64(),
        "rebuild caught up; generation is now active"
    );
    Ok(n)
}
