//! Prometheus metrics of ingest.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::plan::Counts;
use crate::workbench::Fetched;

/// Every counter ingest keeps, labelled by the kind of source (`bundle`, `workbench`, or
/// `workbench_unreleased` for edits between releases).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// Objects by outcome: `published`, `correction`, `skipped`, `rejected`; for
    /// `workbench_unreleased` also `no_collection` (a draft no collection holds) and
    /// `unpublished_collection` (waiting for its collection's first release).
    pub objects: IntCounterVec,
    /// Releases by outcome: `published`, `known`.
    pub releases: IntCounterVec,
    /// Bundles by outcome: `ok`, `failed`.
    pub bundles: IntCounterVec,
    /// Workbench request latency by request (`list_latest`, `list_all`, `bundle`,
    /// `attack_objects`, `recent_activity`).
    pub workbench_seconds: HistogramVec,
    /// Workbench response bytes by request.
    pub workbench_bytes: IntCounterVec,
    /// Failed Workbench polls (the previous state is kept; nothing is deleted).
    pub workbench_errors: IntCounterVec,
    /// Object versions in the checkpoint.
    pub checkpoint_versions: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new_custom(Some("taxiway_ingest".to_owned()), None)?;
        let objects = IntCounterVec::new(
            Opts::new(
                "objects_total",
                "STIX objects processed, by source kind and outcome",
            ),
            &["source", "outcome"],
        )?;
        let releases = IntCounterVec::new(
            Opts::new(
                "releases_total",
                "Releases seen, by source kind and outcome",
            ),
            &["source", "outcome"],
        )?;
        let bundles = IntCounterVec::new(
            Opts::new(
                "bundles_total",
                "Bundles processed, by source kind and outcome",
            ),
            &["source", "outcome"],
        )?;
        let workbench_seconds = HistogramVec::new(
            HistogramOpts::new("workbench_request_seconds", "Workbench request latency").buckets(
                vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0],
            ),
            &["request"],
        )?;
        let workbench_bytes = IntCounterVec::new(
            Opts::new(
                "workbench_response_bytes_total",
                "Bytes read from the Workbench",
            ),
            &["request"],
        )?;
        let workbench_errors = IntCounterVec::new(
            Opts::new("workbench_errors_total", "Failed Workbench requests"),
            &["request"],
        )?;
        let checkpoint_versions = IntGauge::new(
            "checkpoint_versions",
            "Object versions known to be on the objects topic",
        )?;
        registry.register(Box::new(objects.clone()))?;
        registry.register(Box::new(releases.clone()))?;
        registry.register(Box::new(bundles.clone()))?;
        registry.register(Box::new(workbench_seconds.clone()))?;
        registry.register(Box::new(workbench_bytes.clone()))?;
        registry.register(Box::new(workbench_errors.clone()))?;
        registry.register(Box::new(checkpoint_versions.clone()))?;
        Ok(Metrics {
            registry,
            objects,
            releases,
            bundles,
            workbench_seconds,
            workbench_bytes,
            workbench_errors,
            checkpoint_versions,
        })
    }

    /// Records one Workbench request as `request`: its failure, or its time and size; hands
    /// the result on.
    pub fn workbench_request<T>(
        &self,
        request: &str,
        result: Result<Fetched<T>, Error>,
    ) -> Result<Fetched<T>, Error> {
        match &result {
            Ok(fetched) => {
                self.workbench_seconds
                    .with_label_values(&[request])
                    .observe(fetched.elapsed.as_secs_f64());
                self.workbench_bytes
                    .with_label_values(&[request])
                    .inc_by(fetched.bytes as u64);
            }
            Err(_) => self.workbench_errors.with_label_values(&[request]).inc(),
        }
        result
    }

    /// Adds one bundle's outcome.
    pub fn record_batch(&self, source: &str, counts: &Counts, rejected: u64) {
        for (outcome, n) in [
            ("published", counts.published),
            ("correction", counts.corrections),
            ("archival", counts.archival),
            ("skipped", counts.skipped),
            ("rejected", rejected),
        ] {
            self.objects.with_label_values(&[source, outcome]).inc_by(n);
        }
        self.releases
            .with_label_values(&[source, "published"])
            .inc_by(counts.releases);
        self.releases
            .with_label_values(&[source, "known"])
            .inc_by(counts.releases_known);
    }

    /// How many object versions the checkpoint holds now.
    pub fn record_checkpoint(&self, checkpoint: &Checkpoint) {
        self.checkpoint_versions
            .set(i64::try_from(checkpoint.size().versions).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_outcomes_show_up_in_the_text_format() {
        let metrics = Metrics::new().unwrap();
        let counts = Counts {
            published: 3,
            corrections: 1,
            archival: 0,
            skipped: 2,
            releases: 1,
            releases_known: 0,
        };
        metrics.record_batch("bundle", &counts, 4);
        let text = String::from_utf8(service::render(&metrics.registry)).unwrap();
        assert!(
            text.contains(r#"taxiway_ingest_objects_total{outcome="published",source="bundle"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"taxiway_ingest_objects_total{outcome="rejected",source="bundle"} 4"#)
        );
        assert!(
            text.contains(
                r#"taxiway_ingest_releases_total{outcome="published",source="bundle"} 1"#
            )
        );
    }
}
