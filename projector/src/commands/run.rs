//! The `run` command: project the topic into the active generation, following generation switches.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::feed::Feed;
use crate::metrics::Metrics;
use crate::store::{Active, Store};

/// Runs until `shutdown` is cancelled. When another process (a `rebuild`) switches the active
/// generation, the current batch is finished and committed, and consumption continues in the
/// new generation's group, from where that group's commits left it. When the generation lost
/// data under it (its keyspace dropped, recreated or restored), the feed stops, the migrations
/// recreate what is missing, and a new feed replays what the projections lack.
pub(crate) async fn run(
    settings: &Settings,
    store: &Store,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut active = store.migrate().await?;
    loop {
        metrics.active_generation.set(i64::from(active.generation));
        let feed = Feed::start(
            settings,
            store,
            active.generation,
            &active.keyspace,
            metrics,
            shutdown,
            "run",
        )
        .await;
        let outcome = match feed {
            Ok(feed) => follow(settings, store, shutdown, feed, &active).await?,
            Err(Error::ProjectionsLost { keyspace, detail }) => Outcome::Lost { keyspace, detail },
            Err(Error::Shutdown) => return Ok(()),
            Err(e) => return Err(e),
        };
        match outcome {
            Outcome::Stopped => return Ok(()),
            Outcome::Switched(next) => {
                tracing::info!(
                    from = active.generation,
                    to = next.generation,
                    keyspace = %next.keyspace,
                    "active generation switched; following it"
                );
                active = next;
            }
            Outcome::Lost { keyspace, detail } => {
                metrics.projections_lost.inc();
                tracing::error!(
                    generation = active.generation,
                    keyspace,
                    detail,
                    "the projections lost data under the projector; re-migrating, then \
                     replaying what they lack"
                );
                // A pause, so a keyspace that keeps vanishing costs a loop a second, not a spin.
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(RECOVERY_PAUSE) => {}
                }
                active = store.migrate().await?;
            }
        }
    }
}

/// Pause between noticing lost projections and re-migrating.
const RECOVERY_PAUSE: Duration = Duration::from_secs(1);

/// Why [`follow`] returned.
enum Outcome {
    Stopped,
    Switched(Active),
    Lost { keyspace: String, detail: String },
}

/// Consumes with `feed` into `active` until shutdown, a generation switch or lost projections.
async fn follow(
    settings: &Settings,
    store: &Store,
    shutdown: &CancellationToken,
    mut feed: Feed,
    active: &Active,
) -> Result<Outcome> {
    let mut last_check = Instant::now();
    let mut last_lag = Instant::now();
    // At most one lag measurement runs at a time, beside consumption.
    let mut lag_probe: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let step = match feed.step().await {
            Ok(step) => step,
            Err(Error::Shutdown) => return Ok(Outcome::Stopped),
            Err(Error::ProjectionsLost { keyspace, detail }) => {
                // Nothing past the last recorded batch is committed: the next feed re-reads it.
                feed.finish(&[])?;
                return Ok(Outcome::Lost { keyspace, detail });
            }
            Err(e) => return Err(e),
        };
        if shutdown.is_cancelled() {
            feed.finish(&[])?;
            return Ok(Outcome::Stopped);
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
                Ok(Some(now)) if now != *active => {
                    let marks = feed.applied_marks();
                    feed.finish(&marks)?;
                    return Ok(Outcome::Switched(now));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "checking the active generation"),
            }
            // An idle feed writes nothing that could fail: without this, a keyspace lost
            // while no events arrive would stay lost until the next one.
            if step.messages == 0 {
                match feed.verify().await {
                    Ok(()) => {}
                    Err(Error::ProjectionsLost { keyspace, detail }) => {
                        feed.finish(&[])?;
                        return Ok(Outcome::Lost { keyspace, detail });
                    }
                    Err(Error::Shutdown) => return Ok(Outcome::Stopped),
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
