//! A projector in a child process of the test binary, so a test can SIGKILL it as a crash would.
//!
//! Dropping an in-process consumer closes it gracefully (it leaves its group), which is not what
//! a killed process does. [`spawn`] re-executes the test binary on one ignored test, the entry
//! (`child_process::projector_entry` in the e2e binary, which calls [`entry`]); the settings
//! travel as the `TAXIWAY_*` variables the `projector` binary reads, so the child parses them
//! exactly as the binary would.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{FromArgMatches, ValueEnum};
use projector::config::Settings;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Set (to anything) in the child's environment: makes [`entry`] run the projector.
pub const CHILD_ENV: &str = "TAXIWAY_TEST_PROJECTOR_CHILD";

/// The line the child prints on stdout once it applied its first event.
const FIRST_APPLIED: &str = "TAXIWAY-CHILD first-applied";

/// A projector child process.
pub struct Projector {
    child: tokio::process::Child,
    /// When the process was spawned.
    pub started: Instant,
    first_applied: Arc<Mutex<Option<Instant>>>,
}

impl Projector {
    /// How long after the start the child applied its first event, once it has.
    pub fn first_applied(&self) -> Option<Duration> {
        let first = *self.first_applied.lock().ok()?;
        first.map(|at| at.duration_since(self.started))
    }

    /// Waits until the child applied its first event; the time since its start.
    pub async fn wait_first_applied(&self, within: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(latency) = self.first_applied() {
                return Ok(latency);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the projector child applied nothing within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no batch finished, no commit, no leaving the group.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// The `TAXIWAY_*` variables that make `projector run` use `settings` (the parts tests vary).
pub fn env_of(settings: &Settings) -> Vec<(&'static str, String)> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let consistency = settings
        .store
        .consistency
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let mut env = vec![
        ("TAXIWAY_KAFKA_BROKERS", settings.kafka.brokers.clone()),
        (
            "TAXIWAY_OBJECTS_TOPIC",
            settings.kafka.objects_topic.clone(),
        ),
        (
            "TAXIWAY_DEAD_LETTER_TOPIC",
            settings.kafka.dead_letter_topic.clone(),
        ),
        ("TAXIWAY_PROJECTOR_GROUP", settings.group.clone()),
        ("TAXIWAY_CQL_NODES", settings.cql.nodes.join(",")),
        ("TAXIWAY_CQL_KEYSPACE", settings.cql.keyspace.clone()),
        ("TAXIWAY_CQL_CONSISTENCY", consistency),
        (
            "TAXIWAY_PROJECTOR_GENERATION_POLL",
            ms(settings.generation_poll),
        ),
        (
            "TAXIWAY_PROJECTOR_SESSION_TIMEOUT",
            ms(settings.membership.session_timeout),
        ),
        (
            "TAXIWAY_PROJECTOR_HEARTBEAT_INTERVAL",
            ms(settings.membership.heartbeat_interval),
        ),
        (
            "TAXIWAY_PROJECTOR_BATCH_SIZE",
            settings.batch.batch_size.to_string(),
        ),
        (
            "TAXIWAY_PROJECTOR_CONCURRENCY",
            settings.batch.concurrency.to_string(),
        ),
    ];
    if let Some(id) = &settings.membership.instance_id {
        env.push(("TAXIWAY_PROJECTOR_INSTANCE_ID", id.clone()));
    }
    env
}

/// Starts `projector run` with `settings` in a child process of the test binary, whose test
/// `entry_test` (its full name) calls [`entry`]. Its logs go to `log`.
pub fn spawn(settings: &Settings, entry_test: &str, log: &Path) -> anyhow::Result<Projector> {
    let mut command = reexec(entry_test, CHILD_ENV, log)?;
    let started = Instant::now();
    let mut child = command
        // Only `settings` decide static membership, never the test's own environment.
        .env_remove("TAXIWAY_PROJECTOR_INSTANCE_ID")
        .envs(env_of(settings))
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("the child's stdout is not piped"))?;
    let first_applied = Arc::new(Mutex::new(None));
    let seen = first_applied.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with(FIRST_APPLIED)
                && let Ok(mut slot) = seen.lock()
            {
                slot.get_or_insert_with(Instant::now);
            }
        }
    });
    Ok(Projector {
        child,
        started,
        first_applied,
    })
}

/// The command that re-executes the test binary on its ignored test `entry_test` (its full
/// name) with `child_env` set, appending its stderr to `log`. Its stdin stays open while the
/// parent holds the child (see [`cancel_when_orphaned`]); dropping the child kills it.
pub(crate) fn reexec(
    entry_test: &str,
    child_env: &str,
    log: &Path,
) -> anyhow::Result<tokio::process::Command> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .args([entry_test, "--exact", "--ignored", "--nocapture"])
        .env(child_env, "1")
        .stdin(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    Ok(command)
}

/// The child's shutdown: cancelled when its stdin reaches EOF, that is when the parent died
/// without killing it.
pub(crate) fn cancel_when_orphaned() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let orphaned = shutdown.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        orphaned.cancel();
    });
    shutdown
}

/// The child's side: runs `projector run` from the environment until killed, or until its
/// stdin closes (the test process is gone); does nothing unless [`CHILD_ENV`] is set.
pub fn entry() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    // Parsed from the environment, as the binary does.
    let command = <Settings as clap::CommandFactory>::command();
    let settings =
        Settings::from_arg_matches(&command.try_get_matches_from(["projector", "run"])?)?;
    settings.log.init("info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let shutdown = cancel_when_orphaned();
        let metrics = projector::metrics::Metrics::new()?;
        let watched = metrics.clone();
        let watch_stop = shutdown.clone();
        tokio::spawn(async move {
            let applied = || -> u64 {
                ["collection", "object_version", "release"]
                    .iter()
                    .map(|t| watched.events.with_label_values(&[t]).get())
                    .sum()
            };
            while applied() == 0 && !watch_stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            println!("{FIRST_APPLIED}");
        });
        projector::run_with_metrics(settings, metrics, shutdown).await?;
        Ok(())
    })
}
