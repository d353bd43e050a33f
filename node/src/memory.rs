//! Gives the memory a burst of work freed back to the system once the node goes quiet.
//!
//! glibc keeps what a thread frees in that thread's arena, and returns it to the system only
//! from the top of a heap; an import frees bundle texts, events and index rows in between the
//! projection's long-lived rows, so those pages stay resident for the life of the process.
//! `malloc_trim(0)` hands every free page back. On the eight releases of `docs/benchmarks.md`
//! it took the node's median resident memory from 579 to 356 MB after a first start and from 423
//! to 341 MB after a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long the node must see no projection write and no collection load before it trims: a
/// burst (an import, a rebuild, the API reloading what they changed) is over by then.
const QUIET: Duration = Duration::from_millis(500);

/// A count of the writes and loads that allocate, bumped by the projection and read here.
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity(Arc<AtomicU64>);

impl Activity {
    pub(crate) fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Trims once after each burst of `activity`, until `shutdown`.
pub(crate) async fn trim_when_quiet(activity: Activity, shutdown: CancellationToken) {
    after_each_burst(activity, shutdown, || async {
        let before = resident_bytes();
        // It walks and locks every arena: off the runtime's worker threads.
        let released = tokio::task::spawn_blocking(release).await.unwrap_or(false);
        tracing::info!(
            released,
            resident_mb_before = before / 1_000_000,
            resident_mb = resident_bytes() / 1_000_000,
            "gave freed memory back to the system"
        );
    })
    .await;
}

/// Runs `then` once each time `activity` has moved and then stood still for `QUIET`.
async fn after_each_burst<F, Fut>(activity: Activity, shutdown: CancellationToken, mut then: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = 0;
    let mut trimmed = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(QUIET) => {}
        }
        let now = activity.count();
        if now != seen {
            (seen, trimmed) = (now, false);
        } else if !trimmed {
            trimmed = true;
            then().await;
        }
    }
}

/// Returns the allocator's free pages to the system; whether any went back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release() -> bool {
    // SAFETY: malloc_trim takes no pointer and locks each arena while it walks it.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl's, macOS's) return freed memory themselves, or have no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() -> bool {
    false
}

/// The process's resident memory, for the log line; 0 where `/proc` is not there.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Runs the trim loop with a counting action; returns the count and the loop's stopper.
    fn counting(activity: &Activity) -> (Arc<AtomicUsize>, CancellationToken) {
        let runs = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counted = runs.clone();
        tokio::spawn(after_each_burst(
            activity.clone(),
            shutdown.clone(),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                std::future::ready(())
            },
        ));
        (runs, shutdown)
    }

    #[tokio::test(start_paused = true)]
    async fn trims_once_per_burst_and_only_when_it_is_over() {
        let activity = Activity::default();
        let (runs, shutdown) = counting(&activity);
        tokio::time::sleep(QUIET * 4).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "nothing happened, nothing to trim"
        );

        // A burst longer than the quiet time: no trim while it lasts.
        for _ in 0..20 {
            activity.bump();
            tokio::time::sleep(QUIET / 4).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 0, "trimmed during the burst");
        tokio::time::sleep(QUIET * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::sleep(QUIET * 10).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "an idle node trims once");

        activity.bump();
        tokio::time::sleep(QUIET * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "the next burst trims again");
        shutdown.cancel();
    }
}
