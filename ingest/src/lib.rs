//! Ingest: turns STIX bundle files and ATT&CK Workbench collections into events on Kafka.
//!
//! `import` publishes bundle files once; `workbench` mirrors a Workbench REST API, polling for
//! new collection versions. Both rebuild what was already published from the objects topic at
//! start ([`checkpoint`]), so ingest keeps no state of its own.

pub mod bundle;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod consumer;
pub mod error;
pub mod metrics;
pub mod plan;
pub mod producer;
pub mod publish;
pub mod workbench;

pub use error::Error;
pub mod import;
pub mod sync;
pub mod teardown;
pub mod unreleased;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{AuthMode, Cli, Command};
use crate::metrics::Metrics;
use crate::producer::Publisher;
use crate::workbench::{Auth, Versions, WorkbenchClient};

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was published (invalid objects are dead-lettered, not failures).
    Complete,
    /// Some inputs could not be used (files that are not bundles, Workbench versions that
    /// failed in a `--once` sync): the operator must look.
    InputsFailed,
}

/// A producer on the topics and the checkpoint rebuilt from them: what every command needs.
pub struct Connection {
    pub publisher: Arc<Publisher>,
    pub checkpoint: checkpoint::Checkpoint,
}

/// Connects the producer (creating the topics if needed) and rebuilds the checkpoint, both at
/// once: they are independent, and a missing topic simply reads as an empty checkpoint.
pub async fn connect(config: &config::KafkaConfig, metrics: &Metrics) -> Result<Connection, Error> {
    let (publisher, (checkpoint, replayed)) = tokio::try_join!(
        Publisher::connect(config),
        consumer::load_checkpoint(config)
    )?;
    let size = checkpoint.size();
    metrics
        .checkpoint_versions
        .set(i64::try_from(size.versions).unwrap_or(i64::MAX));
    tracing::info!(
        topic = %config.objects_topic,
        messages = replayed.messages,
        mb = replayed.bytes as f64 / 1e6,
        undecodable = replayed.undecodable,
        ms = replayed.elapsed.as_millis() as u64,
        collections = size.collections,
        versions = size.versions,
        releases = size.releases,
        "checkpoint rebuilt from the topic"
    );
    Ok(Connection {
        publisher: Arc::new(publisher),
        checkpoint,
    })
}

/// Runs the command until it is done or `shutdown` is cancelled.
pub async fn run(
    cli: Cli,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<Outcome, Error> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let outcome = match &cli.command {
        Command::Import(config) => {
            // The first bundle is read and checked while Kafka is being connected to.
            let setup = Box::pin(connect(&cli.kafka, &metrics));
            let (summary, connection) =
                import::import(config, setup, &metrics, &run_id, &shutdown).await?;
            if let Some(connection) = connection {
                connection.publisher.flush()?;
                teardown::drop_in_background(connection, "producer");
            }
            eprintln!(
                "imported {} bundle(s): published {}, corrections {}, skipped {}, rejected {}, \
                 releases {} (already known {}); {} file(s) failed{}",
                summary.reports.len(),
                summary.counts.published,
                summary.counts.corrections,
                summary.counts.skipped,
                summary.rejected,
                summary.counts.releases,
                summary.counts.releases_known,
                summary.failed.len(),
                if summary.interrupted {
                    "; interrupted"
                } else {
                    ""
                },
            );
            if summary.failed.is_empty() {
                Outcome::Complete
            } else {
                Outcome::InputsFailed
            }
        }
        Command::Workbench(config) => {
            let Connection {
                publisher,
                mut checkpoint,
            } = connect(&cli.kafka, &metrics).await?;
            let auth = match (config.auth, config.apikey.clone().map(|s| s.0)) {
                (AuthMode::None, _) => Auth::None,
                (AuthMode::Basic, Some(apikey)) => Auth::Basic {
                    service_name: config.service_name.clone(),
                    apikey,
                },
                (AuthMode::Challenge, Some(apikey)) => Auth::Challenge {
                    service_name: config.service_name.clone(),
                    apikey,
                },
                (_, None) => {
                    return Err(Error::Config(
                        "--apikey (TAXIWAY_WORKBENCH_APIKEY) is required unless --auth none"
                            .to_owned(),
                    ));
                }
            };
            let client = Arc::new(WorkbenchClient::new(
                &config.url,
                auth,
                config.request_timeout,
            )?);
            let mut scanner = config.include_unreleased.then(|| {
                unreleased::Scanner::new(
                    client.clone(),
                    publisher.clone(),
                    metrics.clone(),
                    run_id.clone(),
                    unreleased::Schedule {
                        poll_interval: config.unreleased_poll_interval,
                        full_scan_interval: config.unreleased_full_scan_interval,
                    },
                )
            });
            let mirror = sync::Mirror::new(client, publisher.clone(), metrics.clone(), run_id);
            let outcome = if config.once {
                let report = mirror.pass(Versions::All, &mut checkpoint).await?;
                let mut failed = report.failed;
                if let Some(scanner) = scanner.as_mut() {
                    match scanner
                        .scan(workbench::ObjectList::Latest, &mut checkpoint)
                        .await
                    {
                        Ok(scan) => eprintln!(
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
                        ),
                        Err(e) if e.is_input_problem() => {
                            failed += 1;
                            eprintln!("workbench unreleased scan failed: {e}");
                        }
                        Err(e) => return Err(e),
                    }
                }
                eprintln!(
                    "workbench sync: listed {} collection version(s) ({} bytes in {} ms), \
                     mirrored {} release(s), {} failed; published {}, corrections {}, skipped {}",
                    report.listed,
                    report.list_bytes,
                    report.list_elapsed.as_millis(),
                    report.releases,
                    report.failed,
                    report.counts.published,
                    report.counts.corrections,
                    report.counts.skipped,
                );
                if failed == 0 {
                    Outcome::Complete
                } else {
                    Outcome::InputsFailed
                }
            } else {
                sync::run_mirror(
                    config,
                    &mirror,
                    scanner.as_mut(),
                    &mut checkpoint,
                    &shutdown,
                )
                .await?;
                Outcome::Complete
            };
            publisher.flush()?;
            outcome
        }
    };
    Ok(outcome)
}
