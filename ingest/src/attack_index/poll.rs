//! `ingest attack-index`: mirror MITRE's published ATT&CK data from its collection index.
//! Every release of every collection is imported in release order through the same path as
//! `ingest import`; releases the topic already holds are skipped without a download; a failing
//! or empty index answer never deletes anything.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio_util::sync::CancellationToken;

use schemas::SourceKind;

use super::client::IndexClient;
use super::index::{IndexDocument, IndexedRelease};
use crate::bundle::Input;
use crate::check::check_bundle;
use crate::connection::Connection;
use crate::error::Error;
use crate::import::publish_bundle;
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::plan::Counts;

/// `ingest attack-index`, ready to run.
pub struct AttackIndex {
    pub client: IndexClient,
    pub url: Url,
    /// How often to read the index again.
    pub poll_interval: Duration,
    pub max_bundle_bytes: u64,
    /// Import what the index lists once and return.
    pub once: bool,
}

/// What an index run did: with `--once`, its pass; nothing for a mirror that ran until it was
/// asked to stop.
#[derive(Debug, Default)]
pub struct IndexSummary {
    pub pass: Option<IndexPass>,
}

/// What one pass over the index did.
#[derive(Debug, Clone, Default)]
pub struct IndexPass {
    /// Releases the index lists.
    pub listed: usize,
    /// Releases imported in this pass (their events, or none when the topic held them all).
    pub imported: usize,
    /// Releases skipped without a download: the topic holds them complete.
    pub known: usize,
    /// What could not be used (the index itself, an entry, a file), with the reason naming
    /// its URL; retried on the next pass.
    pub failed: Vec<String>,
    pub counts: Counts,
}

impl IndexSummary {
    pub fn failed(&self) -> usize {
        self.pass.as_ref().map_or(0, |p| p.failed.len())
    }
}

impl fmt::Display for IndexSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(pass) = &self.pass else {
            return write!(f, "attack index mirror stopped");
        };
        for reason in &pass.failed {
            writeln!(f, "error: {reason}")?;
        }
        write!(
            f,
            "attack index: listed {} release(s), imported {}, already known {}, {} failed; \
             published {}, corrections {}, skipped {}, releases {} (already known {})",
            pass.listed,
            pass.imported,
            pass.known,
            pass.failed.len(),
            pass.counts.published,
            pass.counts.corrections,
            pass.counts.skipped,
            pass.counts.releases,
            pass.counts.releases_known,
        )
    }
}

impl AttackIndex {
    /// With `once`: one pass. Otherwise a pass now and then every `poll_interval` until
    /// `shutdown`; a pass that fails is logged and everything published stays.
    pub async fn run(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
        run_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<IndexSummary, Error> {
        loop {
            let pass = self.pass(connection, metrics, run_id, shutdown).await?;
            if self.once {
                return Ok(IndexSummary { pass: Some(pass) });
            }
            if pass.imported > 0 || !pass.failed.is_empty() {
                tracing::info!(
                    url = %self.url,
                    listed = pass.listed,
                    imported = pass.imported,
                    known = pass.known,
                    failed = pass.failed.len(),
                    published = pass.counts.published,
                    corrections = pass.counts.corrections,
                    "attack index poll"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(IndexSummary::default()),
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// Reads the index and imports every release the topic does not hold complete yet,
    /// oldest first. Only a Kafka failure is an error; what the index or a file gets wrong
    /// is reported in the pass.
    async fn pass(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
        run_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<IndexPass, Error> {
        let mut pass = IndexPass::default();
        let (releases, bad) = match self.read_index().await {
            Ok(document) => document.releases(&self.url),
            Err(e) => {
                tracing::warn!(error = %e, "attack index unreadable; keeping everything published so far");
                pass.failed.push(e.to_string());
                return Ok(pass);
            }
        };
        pass.listed = releases.len() + bad.len();
        for entry in bad {
            tracing::warn!(url = %entry.url, reason = %entry.reason, "index entry skipped");
            pass.failed.push(entry.reason);
        }
        if pass.listed == 0 {
            // An index that suddenly lists nothing is a broken answer, not a withdrawal: a
            // mirror of a log deletes nothing.
            let reason = format!(
                "attack index {}: lists no releases; nothing is deleted",
                self.url
            );
            tracing::warn!("{reason}");
            pass.failed.push(reason);
            return Ok(pass);
        }
        for release in releases {
            if shutdown.is_cancelled() {
                break;
            }
            // Known releases are not downloaded again: besides the cost, re-importing an older
            // release would re-publish the content MITRE re-issued in newer ones.
            let checkpoint = &connection.checkpoint;
            let known = match (&release.modified, &release.version) {
                (Some((_, ts)), _) => checkpoint.release_at(&release.collection.id, ts.as_micros()),
                (None, Some(label)) => checkpoint.release_labelled(&release.collection.id, label),
                (None, None) => false,
            };
            if known {
                pass.known += 1;
                continue;
            }
            match self.import(&release, connection, metrics, run_id).await {
                Ok(counts) => {
                    pass.imported += 1;
                    pass.counts += counts;
                }
                Err(e) if e.is_input_problem() => {
                    metrics
                        .bundles
                        .with_label_values(&["bundle", "failed"])
                        .inc();
                    tracing::warn!(url = %release.url, error = %e,
                        "release not imported; will retry on the next poll");
                    pass.failed.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(pass)
    }

    async fn read_index(&self) -> Result<IndexDocument, Error> {
        let fetched = self.client.get(self.url.as_str()).await?;
        serde_json::from_slice(&fetched.value).map_err(|e| Error::AttackIndex {
            url: self.url.to_string(),
            reason: format!("not an ATT&CK collection index: {e}"),
        })
    }

    /// Downloads one release file, checks it against its index entry and publishes it as
    /// `ingest import` would; a file that disagrees with the index publishes nothing.
    async fn import(
        &self,
        release: &IndexedRelease,
        connection: &mut Connection,
        metrics: &Metrics,
        run_id: &str,
    ) -> Result<Counts, Error> {
        let started = Instant::now();
        let fetched = self.client.get(&release.url).await?;
        let input = Input::Received {
            name: release.url.clone(),
            bytes: fetched.value,
            max_bytes: self.max_bundle_bytes,
        };
        let checked = check_bundle(input).await?;
        let index_error = |reason: String| Error::AttackIndex {
            url: self.url.to_string(),
            reason,
        };
        release
            .verify(checked.collection.as_ref())
            .map_err(index_error)?;
        let mut origin = Origin {
            kind: SourceKind::Bundle,
            uri: release.url.clone(),
            collection: None,
            release_label: None,
            release_timestamp: None,
            expect_version: None,
        };
        if checked.collection.is_none() {
            // Only the index can say which collection and release a file without a
            // collection object is (STIX 2.0 data).
            let label = release.label().ok_or_else(|| {
                index_error(format!(
                    "{}: neither the index nor the file gives a release",
                    release.url
                ))
            })?;
            origin.collection = Some(release.collection.clone());
            origin.release_label = Some(label);
            origin.release_timestamp = release.modified.as_ref().map(|(_, ts)| *ts);
        }
        let report = publish_bundle(
            checked,
            started.elapsed(),
            &origin,
            connection,
            metrics,
            run_id,
        )
        .await?;
        tracing::info!("{}", report.progress_line());
        Ok(report.counts)
    }
}
