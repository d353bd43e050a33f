//! `ingest workbench`: mirror a Workbench REST API. Every collection version becomes a release;
//! a cheap poll of each collection's latest version runs often, a full list of every version
//! now and then; a failing or empty answer never deletes anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use schemas::{SourceKind, Timestamp};

use crate::bundle::BundleFile;
use crate::checkpoint::Checkpoint;
use crate::config::WorkbenchConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::plan::Counts;
use crate::producer::Publisher;
use crate::publish::{Origin, publish_bundle};
use crate::unreleased::Scanner;
use crate::workbench::{CollectionVersion, Versions, WorkbenchClient};

/// A Workbench bundle larger than this is refused (Enterprise is about 45 MB).
const MAX_WORKBENCH_BUNDLE_BYTES: u64 = 1 << 30;

/// What one poll did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub listed: usize,
    pub list_bytes: usize,
    pub list_elapsed: Duration,
    /// Collection versions fetched and published as releases in this pass.
    pub releases: usize,
    /// Collection versions that failed (fetch or content); retried on the next pass.
    pub failed: usize,
    pub counts: Counts,
}

/// The mirror's state between passes.
pub struct Mirror {
    client: Arc<WorkbenchClient>,
    publisher: Arc<Publisher>,
    metrics: Metrics,
    run_id: String,
}

impl Mirror {
    pub fn new(
        client: Arc<WorkbenchClient>,
        publisher: Arc<Publisher>,
        metrics: Metrics,
        run_id: String,
    ) -> Self {
        Mirror {
            client,
            publisher,
            metrics,
            run_id,
        }
    }

    /// Lists collection versions and publishes every one the topic does not hold as a
    /// complete release yet. A list that fails is an error for this pass only.
    pub async fn pass(
        &self,
        versions: Versions,
        checkpoint: &mut Checkpoint,
    ) -> Result<PassReport, Error> {
        let request = match versions {
            Versions::Latest => "list_latest",
            Versions::All => "list_all",
        };
        let listed = self
            .metrics
            .workbench_request(request, self.client.collections(versions).await)?;
        let mut report = PassReport {
            listed: listed.value.len(),
            list_bytes: listed.bytes,
            list_elapsed: listed.elapsed,
            ..PassReport::default()
        };
        if listed.value.is_empty() {
            // MITRE's server deletes everything on an empty list; a mirror of a log must not.
            tracing::warn!(
                url = self.client.base_url(),
                "the Workbench listed no collections; nothing is deleted"
            );
        }
        let mut pending: Vec<(CollectionVersion, Timestamp)> = Vec::new();
        for version in listed.value {
            match Timestamp::parse(&version.modified) {
                Ok(ts) if !checkpoint.release_at(&version.id, ts.as_micros()) => {
                    pending.push((version, ts));
                }
                Ok(_) => {}
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(collection = %version.id, modified = %version.modified, error = %e,
                        "skipping a collection version with an unreadable modified");
                }
            }
        }
        // Oldest first, so releases reach the topic in the order they were made.
        pending.sort_by(|a, b| (a.1, &a.0.id).cmp(&(b.1, &b.0.id)));
        for (version, _) in pending {
            match self.mirror_version(&version, checkpoint).await {
                Ok(counts) => {
                    report.releases += 1;
                    report.counts += counts;
                }
                Err(e) if e.is_input_problem() => {
                    report.failed += 1;
                    // A failed request was counted in workbench_errors where it was made.
                    self.metrics
                        .bundles
                        .with_label_values(&["workbench", "failed"])
                        .inc();
                    tracing::warn!(collection = %version.id, modified = %version.modified, error = %e,
                        "collection version not mirrored; will retry on the next poll");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn mirror_version(
        &self,
        version: &CollectionVersion,
        checkpoint: &mut Checkpoint,
    ) -> Result<Counts, Error> {
        let fetched = self.metrics.workbench_request(
            "bundle",
            self.client
                .collection_bundle(&version.id, &version.modified)
                .await,
        )?;
        let uri = format!(
            "{}/api/collection-bundles?collectionId={}&collectionModified={}",
            self.client.base_url(),
            version.id,
            version.modified
        );
        let name = uri.clone();
        let stages = crate::check::spawn(
            move || BundleFile::from_bytes(&name, fetched.value, MAX_WORKBENCH_BUNDLE_BYTES),
            true,
        );
        let origin = Origin {
            kind: SourceKind::Workbench,
            uri,
            collection: None,
            release_label: None,
            release_timestamp: None,
            expect_version: Some((version.id.clone(), version.modified.clone())),
        };
        let report = publish_bundle(
            stages,
            &origin,
            checkpoint,
            &self.publisher,
            &self.metrics,
            &self.run_id,
        )
        .await?;
        tracing::info!("{}", report.progress_line());
        Ok(report.counts)
    }
}

/// Polls until `shutdown`: a full pass first, then the latest versions every
/// `poll_interval` and a full pass every `full_sync_interval`; with a `scanner`
/// (`--include-unreleased`), its own scans after each pass, when due.
pub async fn run_mirror(
    config: &WorkbenchConfig,
    mirror: &Mirror,
    mut scanner: Option<&mut Scanner>,
    checkpoint: &mut Checkpoint,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let mut last_full: Option<Instant> = None;
    loop {
        let full = last_full.is_none_or(|t| t.elapsed() >= config.full_sync_interval);
        let versions = if full {
            Versions::All
        } else {
            Versions::Latest
        };
        match mirror.pass(versions, checkpoint).await {
            Ok(report) => {
                if full {
                    last_full = Some(Instant::now());
                }
                if report.releases > 0 || report.failed > 0 || full {
                    tracing::info!(
                        versions = ?versions,
                        listed = report.listed,
                        list_bytes = report.list_bytes,
                        list_ms = report.list_elapsed.as_millis() as u64,
                        releases = report.releases,
                        failed = report.failed,
                        published = report.counts.published,
                        corrections = report.counts.corrections,
                        "workbench poll"
                    );
                }
            }
            Err(e) if e.is_input_problem() => {
                tracing::warn!(error = %e, "workbench poll failed; keeping everything published so far");
            }
            Err(e) => return Err(e),
        }
        // After the releases, so that a collection released in this pass is published before
        // the edits of its objects are looked at.
        if let Some(scanner) = scanner.as_deref_mut() {
            match scanner.poll(checkpoint).await {
                Ok(_) => {}
                Err(e) if e.is_input_problem() => {
                    tracing::warn!(
                        error = %e,
                        retry_in_s = scanner.retry_wait().as_secs(),
                        "workbench unreleased scan failed; keeping everything published so far"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        if config.once {
            return Ok(());
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}
