//! `ingest import`: bundle files and directories, one bundle in memory at a time.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;

use schemas::{SourceKind, Timestamp};

use crate::Connection;
use crate::bundle::{BundleFile, expand_paths};
use crate::config::ImportConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::plan::{CollectionInfo, Counts};
use crate::publish::{BundleReport, Origin, publish_bundle};

/// What an import did, over all files.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub reports: Vec<BundleReport>,
    /// Files that could not be imported, with the reason; nothing of them was published.
    pub failed: Vec<(PathBuf, String)>,
    pub counts: Counts,
    pub rejected: u64,
    /// True when a shutdown request stopped the import before the last file.
    pub interrupted: bool,
}

/// Imports every bundle named by the configuration, file by file, printing a progress line per
/// file on stderr. A file that cannot be read or is not a bundle is reported and skipped;
/// a Kafka failure stops the import.
///
/// `setup` connects to Kafka; it is awaited once the first bundle is being read, so that the
/// two overlap. The connection is handed back for the caller to flush.
pub async fn import(
    config: &ImportConfig,
    setup: Pin<Box<dyn Future<Output = Result<Connection, Error>> + Send + '_>>,
    metrics: &Metrics,
    run_id: &str,
    shutdown: &CancellationToken,
) -> Result<(ImportSummary, Option<Connection>), Error> {
    let mut setup = Some(setup);
    let mut connection: Option<Connection> = None;
    let release_timestamp = config
        .release_timestamp
        .as_deref()
        .map(Timestamp::parse)
        .transpose()
        .map_err(|e| Error::Config(format!("--release-timestamp: {e}")))?;
    let collection = config.collection.as_ref().map(|id| CollectionInfo {
        id: id.clone(),
        title: config.title.clone().unwrap_or_else(|| id.clone()),
        description: config.description.clone(),
    });
    let files = expand_paths(&config.paths)?;
    let mut summary = ImportSummary::default();
    for path in files {
        if shutdown.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let max = config.max_bundle_bytes;
        let read_path = path.clone();
        let reading = std::time::Instant::now();
        let stages = crate::check::spawn(
            move || BundleFile::read(&read_path, max),
            collection.is_none(),
        );
        if let Some(pending) = setup.take() {
            connection = Some(pending.await?);
        }
        let Some(Connection {
            publisher,
            checkpoint,
        }) = connection.as_mut()
        else {
            return Err(Error::KafkaState("no Kafka connection".to_owned()));
        };
        let origin = Origin {
            kind: SourceKind::Bundle,
            uri: path.display().to_string(),
            collection: collection.clone(),
            release_label: config.release.clone(),
            release_timestamp,
            expect_version: None,
        };
        // Reading and checking started before the connection was ready: count that time.
        let waited = reading.elapsed();
        let result = publish_bundle(stages, &origin, checkpoint, publisher, metrics, run_id)
            .await
            .map(|report| BundleReport {
                prepare_elapsed: report.prepare_elapsed + waited,
                ..report
            });
        match result {
            Ok(report) => {
                eprintln!("{}", report.progress_line());
                summary.counts += report.counts;
                summary.rejected += report.rejected as u64;
                summary.reports.push(report);
            }
            Err(e) if e.is_input_problem() => {
                eprintln!("error: {e}");
                metrics
                    .bundles
                    .with_label_values(&["bundle", "failed"])
                    .inc();
                summary.failed.push((path, e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((summary, connection))
}
