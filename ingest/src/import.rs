//! `ingest import`, and the path of one bundle from file to topic: read and check it, decide
//! its collection and release, plan against the checkpoint, publish, report.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use schemas::{DeadLetter, Source, SourceKind, Timestamp};

use crate::attack_domain::{self, DomainChoice};
use crate::bundle::Input;
use crate::check::{CheckedBundle, MitreCollection, check_bundle};
use crate::checkpoint::Checkpoint;
use crate::connection::Connection;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::plan::{
    Candidate, CollectionInfo, Context, Counts, ReleaseInfo, dead_letter, plan_batch,
};
use service::now_micros;

/// Names of files `ingest import DIR` picks up inside a directory.
const BUNDLE_SUFFIXES: [&str; 3] = [".json", ".json.gz", ".json.zst"];

/// `ingest import`, ready to run: the files and what to declare them.
#[derive(Debug, Clone)]
pub struct Import {
    pub paths: Vec<PathBuf>,
    /// Overrides the `x-mitre-collection` object (`--collection`).
    pub collection: Option<CollectionInfo>,
    /// With `collection`: declare each bundle a release with this label.
    pub release_label: Option<String>,
    /// With `release_label`: its timestamp; default the newest version in the bundle.
    pub release_timestamp: Option<Timestamp>,
    pub max_bundle_bytes: u64,
    /// Names bundles without an `x-mitre-collection` object after their ATT&CK domain
    /// (`--attack-domain`).
    pub attack_domain: Option<DomainChoice>,
}

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

impl Import {
    /// Imports every bundle, file by file, on the connection `connecting` makes. A file that
    /// cannot be read or is not a bundle is reported and skipped; a Kafka failure stops the
    /// import.
    pub async fn run(
        &self,
        connecting: impl Future<Output = Result<Connection, Error>>,
        metrics: &Metrics,
        run_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<ImportSummary, Error> {
        let mut summary = ImportSummary::default();
        let mut connecting = Some(connecting);
        let mut connected: Option<Connection> = None;
        for path in expand_paths(&self.paths)? {
            if shutdown.is_cancelled() {
                summary.interrupted = true;
                break;
            }
            let origin = Origin {
                kind: SourceKind::Bundle,
                uri: path.display().to_string(),
                collection: self.collection.clone(),
                release_label: self.release_label.clone(),
                release_timestamp: self.release_timestamp,
                expect_version: None,
            };
            let input = Input::File {
                path: path.clone(),
                max_bytes: self.max_bundle_bytes,
            };
            let started = Instant::now();
            let checking = check_bundle(input);
            // The first bundle is read and checked while Kafka is being connected to (producer,
            // topics, checkpoint: about as long as reading and checking Enterprise): the import
            // bench's Enterprise import, median of 8 rounds, 0.71 s one after the other, 0.60 s
            // overlapped.
            let checked = match connecting.take() {
                Some(connecting) => {
                    let (connection, checked) = tokio::join!(connecting, checking);
                    connected = Some(connection?);
                    checked
                }
                None => checking.await,
            };
            let Some(connection) = connected.as_mut() else {
                return Err(Error::KafkaState("no Kafka connection".to_owned()));
            };
            let published = match checked {
                Ok(checked) => {
                    let elapsed = started.elapsed();
                    let origin = match self.attack_domain {
                        Some(choice) => attack_domain::name_origin(choice, &checked, origin),
                        None => Ok(origin),
                    };
                    match origin {
                        Ok(origin) => {
                            publish_bundle(checked, elapsed, &origin, connection, metrics, run_id)
                                .await
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match published {
                Ok(report) => {
                    tracing::info!("{}", report.progress_line());
                    summary.counts += report.counts;
                    summary.rejected += report.rejected as u64;
                    summary.reports.push(report);
                }
                Err(e) if e.is_input_problem() => {
                    tracing::warn!(error = %e, "bundle not imported");
                    metrics
                        .bundles
                        .with_label_values(&["bundle", "failed"])
                        .inc();
                    summary.failed.push((path, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(summary)
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for report in &self.reports {
            writeln!(f, "{}", report.progress_line())?;
        }
        for (_, reason) in &self.failed {
            writeln!(f, "error: {reason}")?;
        }
        write!(
            f,
            "imported {} bundle(s): published {}, corrections {}, older releases' content {}, \
             skipped {}, rejected {}, releases {} (already known {}); {} file(s) failed{}",
            self.reports.len(),
            self.counts.published,
            self.counts.corrections,
            self.counts.archival,
            self.counts.skipped,
            self.rejected,
            self.counts.releases,
            self.counts.releases_known,
            self.failed.len(),
            if self.interrupted {
                "; interrupted"
            } else {
                ""
            },
        )
    }
}

/// What publishing one bundle did.
#[derive(Debug, Clone)]
pub struct BundleReport {
    pub uri: String,
    pub objects: usize,
    pub rejected: usize,
    pub counts: Counts,
    pub release: Option<String>,
    pub json_bytes: usize,
    /// Reading, decompressing and checking the bundle.
    pub checked: Duration,
    /// Planning and publishing.
    pub published: Duration,
}

impl BundleReport {
    /// The one-line summary of a bundle.
    pub fn progress_line(&self) -> String {
        let secs = (self.checked + self.published).as_secs_f64().max(1e-6);
        let release = match &self.release {
            Some(label) if self.counts.releases > 0 => format!("; release {label} published"),
            Some(label) => format!("; release {label} already known"),
            None => String::new(),
        };
        format!(
            "{}: {} objects in {:.2}s (read and checked {:.2}s, published {:.2}s; {:.0} objects/s, \
             {:.1} MB/s): published {}, corrections {}, older release's content {}, skipped as already known {}, \
             rejected {}{release}",
            self.uri,
            self.objects + self.rejected,
            secs,
            self.checked.as_secs_f64(),
            self.published.as_secs_f64(),
            (self.objects + self.rejected) as f64 / secs,
            self.json_bytes as f64 / 1e6 / secs,
            self.counts.published,
            self.counts.corrections,
            self.counts.archival,
            self.counts.skipped,
            self.rejected,
        )
    }
}

/// Expands the command line's paths: files as given, directories walked recursively for
/// bundle files, each directory's files in name order so imports are reproducible.
fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| Error::BundleIo {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    let io_err = |source| Error::BundleIo {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, files)?;
        } else if is_bundle_name(&entry) {
            files.push(entry);
        }
    }
    Ok(())
}

fn is_bundle_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    BUNDLE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Publishes one checked bundle (`checked`: how long reading and checking it took): decides its
/// collection and release, plans its events against the checkpoint, and publishes them with
/// the dead letters of what was rejected. Returns once Kafka acknowledged everything. A bundle
/// without a collection publishes nothing.
pub async fn publish_bundle(
    bundle: CheckedBundle,
    checked: Duration,
    origin: &Origin,
    connection: &mut Connection,
    metrics: &Metrics,
    run_id: &str,
) -> Result<BundleReport, Error> {
    let started = Instant::now();
    let CheckedBundle {
        bundle,
        objects,
        rejected,
        collection: found,
        contents,
    } = bundle;
    let content_error = |reason: String| Error::BundleContent {
        path: bundle.path.clone(),
        reason,
    };
    if let Some((id, modified)) = &origin.expect_version
        && found
            .as_ref()
            .is_none_or(|c| &c.id != id || c.modified.as_ref() != Some(modified))
    {
        return Err(content_error(format!(
            "the export does not start with collection {id} version {modified}"
        )));
    }
    let (collection, release) = decide(origin, found.as_ref(), &content_error)?;
    let release = release.map(|(label, timestamp)| ReleaseInfo {
        label,
        timestamp: timestamp.unwrap_or_else(|| {
            objects
                .iter()
                .map(|o| o.meta.version)
                .max()
                .unwrap_or(Timestamp::EPOCH)
        }),
    });

    let source = Source {
        kind: origin.kind,
        uri: origin.uri.clone(),
        sha256: Some(bundle.sha256.clone()),
        position: None,
    };
    let candidates: Vec<Candidate<'_>> = objects
        .iter()
        .map(|o| Candidate {
            meta: &o.meta,
            json: &bundle.text[o.range.clone()],
            position: o.position,
        })
        .collect();
    let Connection {
        publisher,
        checkpoint,
    } = connection;
    let context = Context {
        run_id,
        now_micros: now_micros(),
        source: &source,
    };
    let plan = plan_batch(
        checkpoint,
        &collection,
        &candidates,
        release.as_ref(),
        &context,
    );
    let letters: Vec<DeadLetter> = rejected
        .iter()
        .map(|r| {
            let json = &bundle.text[r.range.clone()];
            dead_letter(
                json,
                r.object_id.as_deref(),
                r.position,
                &r.reason,
                &context,
            )
        })
        .collect();
    for letter in &letters {
        tracing::warn!(file = %origin.uri, reason = %letter.reason, "rejected object sent to the dead-letter topic");
    }
    publisher.publish(&plan.events, &letters).await?;

    if let Some(check) = contents
        .filter(|c| !c.is_clean())
        .filter(|_| found.as_ref().is_some_and(|c| c.id == collection.id))
    {
        tracing::warn!(
            file = %origin.uri,
            missing = check.missing.len(),
            unlisted = check.unlisted.len(),
            version_mismatch = check.version_mismatch.len(),
            first_missing = ?check.missing.first(),
            first_unlisted = ?check.unlisted.first(),
            first_mismatch = ?check.version_mismatch.first(),
            "x_mitre_contents does not match the bundle's objects"
        );
    }
    record(
        metrics,
        origin.kind,
        &plan.counts,
        rejected.len(),
        checkpoint,
    );

    Ok(BundleReport {
        uri: origin.uri.clone(),
        objects: objects.len(),
        rejected: rejected.len(),
        counts: plan.counts,
        release: release.map(|r| r.label),
        json_bytes: bundle.text.len(),
        checked,
        published: started.elapsed(),
    })
}

/// The collection, and the release label with its timestamp (`None`: the newest version in
/// the bundle), from the command line or else from the bundle's collection object.
#[allow(clippy::type_complexity)] // a private helper's tuple, named at its one call site
fn decide(
    origin: &Origin,
    found: Option<&MitreCollection>,
    content_error: &dyn Fn(String) -> Error,
) -> Result<(CollectionInfo, Option<(String, Option<Timestamp>)>), Error> {
    match (&origin.collection, found) {
        (Some(collection), _) => {
            let release = origin
                .release_label
                .as_ref()
                .map(|label| (label.clone(), origin.release_timestamp));
            Ok((collection.clone(), release))
        }
        (None, Some(mitre)) => {
            let modified = mitre.modified.as_deref().ok_or_else(|| {
                content_error(format!("x-mitre-collection {} has no modified", mitre.id))
            })?;
            let timestamp = Timestamp::parse(modified)
                .map_err(|e| content_error(format!("x-mitre-collection {}: {e}", mitre.id)))?;
            let collection = CollectionInfo {
                id: mitre.id.clone(),
                title: mitre.name.clone().unwrap_or_else(|| mitre.id.clone()),
                description: mitre.description.clone(),
            };
            // A collection version without x_mitre_version is still a release: its label is
            // its timestamp, which is what identifies it in the Workbench.
            let label = mitre
                .x_mitre_version
                .clone()
                .unwrap_or_else(|| timestamp.to_string());
            Ok((collection, Some((label, Some(timestamp)))))
        }
        (None, None) => Err(content_error(
            "has no x-mitre-collection object: pass --collection ID --title TITLE \
             (and --release LABEL to make it a release)"
                .to_owned(),
        )),
    }
}

fn record(
    metrics: &Metrics,
    kind: SourceKind,
    counts: &Counts,
    rejected: usize,
    checkpoint: &Checkpoint,
) {
    let kind = match kind {
        SourceKind::Bundle => "bundle",
        SourceKind::Workbench => "workbench",
    };
    metrics.record_batch(kind, counts, rejected as u64);
    metrics.bundles.with_label_values(&[kind, "ok"]).inc();
    metrics.record_checkpoint(checkpoint);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_expand_to_bundle_files_in_name_order() {
        let tmp = tempfile::Builder::new()
            .prefix("taxiway-import-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        let touch = |path: PathBuf| std::fs::File::create(path).unwrap();
        touch(dir.join("b.json.zst"));
        touch(dir.join("a.json"));
        touch(dir.join("notes.txt"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        touch(dir.join("sub").join("c.json.gz"));
        let files = expand_paths(&[dir.to_path_buf()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json", "b.json.zst", "sub/c.json.gz"]);
    }
}
