//! `ingest workbench`: mirror a Workbench REST API. Every collection version becomes a release;
//! a cheap poll of each collection's latest version runs often, a full list of every version
//! now and then; a failing or empty answer never deletes anything.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use schemas::{SourceKind, Timestamp};

use super::client::{CollectionVersion, ObjectList, Versions, WorkbenchClient};
use super::edits::{ScanReport, Scanner, Schedule};
use crate::bundle::Input;
use crate::check::check_bundle;
use crate::connection::Connection;
use crate::error::Error;
use crate::import::publish_bundle;
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::plan::Counts;

/// A Workbench bundle larger than this is refused (Enterprise is about 45 MB).
const MAX_WORKBENCH_BUNDLE_BYTES: u64 = 1 << 30;

/// `ingest workbench`, ready to run.
pub struct Workbench {
    pub client: Arc<WorkbenchClient>,
    /// How often to ask for the latest version of each collection.
    pub poll_interval: Duration,
    /// How often to list every version of every collection.
    pub full_sync_interval: Duration,
    /// With `--include-unreleased`: how often to scan for edits between releases.
    pub unreleased: Option<Schedule>,
    /// Sync once and return.
    pub once: bool,
}

/// What a Workbench run did: with `--once`, its full pass and the unreleased scan when asked
/// for (its error, if it failed); nothing for a mirror that ran until it was asked to stop.
#[derive(Debug, Default)]
pub struct SyncSummary {
    pub pass: Option<PassReport>,
    pub scan: Option<Result<ScanReport, String>>,
}

impl SyncSummary {
    /// Collection versions or scans that failed.
    pub fn failed(&self) -> usize {
        self.pass.as_ref().map_or(0, |p| p.failed) + usize::from(matches!(self.scan, Some(Err(_))))
    }
}

impl fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(pass) = &self.pass else {
            return write!(f, "workbench mirror stopped");
        };
        match &self.scan {
            Some(Ok(scan)) => writeln!(
                f,
                "workbench unreleased scan: listed {} object version(s) ({} bytes in {} ms); \
                 published {}, corrections {}, skipped {}, rejected {}, in no collection {}, \
                 collection not published yet {}",
                scan.listed,
                scan.bytes,
                scan.elapsed.as_millis(),
                scan.counts.published,
                scan.counts.corrections,
                scan.counts.skipped,
                scan.rejected,
                scan.no_collection,
                scan.unpublished_collection,
            )?,
            Some(Err(e)) => writeln!(f, "workbench unreleased scan failed: {e}")?,
            None => {}
        }
        write!(
            f,
            "workbench sync: listed {} collection version(s) ({} bytes in {} ms), \
             mirrored {} release(s), {} failed; published {}, corrections {}, skipped {}",
            pass.listed,
            pass.list_bytes,
            pass.list_elapsed.as_millis(),
            pass.releases,
            pass.failed,
            pass.counts.published,
            pass.counts.corrections,
            pass.counts.skipped,
        )
    }
}

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

impl Workbench {
    /// With `once`: a full pass, then a full unreleased scan when configured. Otherwise polls
    /// until `shutdown`: a full pass first, then the latest versions every `poll_interval` and
    /// a full pass every `full_sync_interval`; the unreleased scans after each pass, when due.
    pub async fn run(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
        run_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<SyncSummary, Error> {
        let mirror = Mirror {
            client: &self.client,
            metrics,
            run_id,
        };
        let mut scanner = self.unreleased.map(|schedule| {
            Scanner::new(
                self.client.clone(),
                metrics.clone(),
                run_id.to_owned(),
                schedule,
            )
        });
        if self.once {
            let pass = mirror.pass(Versions::All, connection).await?;
            let scan = match scanner.as_mut() {
                None => None,
                Some(scanner) => match scanner.scan(ObjectList::Latest, connection).await {
                    Ok(scan) => Some(Ok(scan)),
                    Err(e) if e.is_input_problem() => Some(Err(e.to_string())),
                    Err(e) => return Err(e),
                },
            };
            return Ok(SyncSummary {
                pass: Some(pass),
                scan,
            });
        }
        let mut last_full: Option<Instant> = None;
        loop {
            let full = last_full.is_none_or(|t| t.elapsed() >= self.full_sync_interval);
            let versions = if full {
                Versions::All
            } else {
                Versions::Latest
            };
            match mirror.pass(versions, connection).await {
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
            // After the releases, so that a collection released in this pass is published
            // before the edits of its objects are looked at.
            if let Some(scanner) = scanner.as_mut() {
                match scanner.poll(connection).await {
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
            tokio::select! {
                () = shutdown.cancelled() => return Ok(SyncSummary::default()),
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }
}

/// Mirrors collection versions as releases.
struct Mirror<'a> {
    client: &'a WorkbenchClient,
    metrics: &'a Metrics,
    run_id: &'a str,
}

impl Mirror<'_> {
    /// Lists collection versions and publishes every one the topic does not hold as a
    /// complete release yet. A list that fails is an error for this pass only.
    async fn pass(
        &self,
        versions: Versions,
        connection: &mut Connection,
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
                Ok(ts)
                    if !connection
                        .checkpoint
                        .release_at(&version.id, ts.as_micros()) =>
                {
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
            match self.mirror_version(&version, connection).await {
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
        connection: &mut Connection,
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
        let origin = Origin {
            kind: SourceKind::Workbench,
            uri: uri.clone(),
            collection: None,
            release_label: None,
            release_timestamp: None,
            expect_version: Some((version.id.clone(), version.modified.clone())),
        };
        let input = Input::Received {
            name: uri,
            bytes: fetched.value,
            max_bytes: MAX_WORKBENCH_BUNDLE_BYTES,
        };
        let started = Instant::now();
        let checked = check_bundle(input).await?;
        let report = publish_bundle(
            checked,
            started.elapsed(),
            &origin,
            connection,
            self.metrics,
            self.run_id,
        )
        .await?;
        tracing::info!("{}", report.progress_line());
        Ok(report.counts)
    }
}
