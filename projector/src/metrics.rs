//! Prometheus metrics of the projector, and the small HTTP endpoint that serves them.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::error::Error;

/// Everything the projector counts.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Events applied, by type (`collection`, `object_version`, `release`).
    pub events: IntCounterVec,
    /// Messages sent to the dead-letter topic, by reason (`undecodable`, `invalid`).
    pub dead_letters: IntCounterVec,
    /// Latency of one CQL request, by operation (mutation kind or read).
    pub cql_seconds: HistogramVec,
    /// Failed CQL requests that were retried.
    pub cql_retries: IntCounter,
    /// Batches written a second time because a request failed during them.
    pub batch_rewrites: IntCounter,
    /// Time per step of a batch (`fetch`, `decode`, `rows`, `releases`, `revisions`,
    /// `record`, `commit`): where a replay spends its time.
    pub phase_seconds: HistogramVec,
    /// Messages per batch.
    pub batch_size: HistogramVec,
    /// High watermark minus the next offset to process, per partition.
    pub consumer_lag: IntGaugeVec,
    /// The generation `run` writes to.
    pub active_generation: IntGauge,
    /// Partitions found, at a feed's start, with a committed offset ahead of what the
    /// generation records as applied: data lost from the projections, then replayed.
    pub gaps: IntCounter,
    /// Times a running feed found its generation's tables gone, or holding less than it
    /// recorded, and restarted.
    pub projections_lost: IntCounter,
    /// Rebuild progress: total lag, events/s over the last interval, generation being built.
    pub rebuild_lag: IntGauge,
    pub rebuild_events_per_second: Gauge,
    pub rebuild_generation: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new_custom(Some("taxiway_projector".to_owned()), None)?;
        let events = IntCounterVec::new(
            Opts::new("events_total", "Events applied to the projections, by type"),
            &["type"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "dead_letters_total",
                "Messages sent to the dead-letter topic, by reason",
            ),
            &["reason"],
        )?;
        let cql_seconds = HistogramVec::new(
            HistogramOpts::new("cql_request_seconds", "Latency of one CQL request").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["op"],
        )?;
        let cql_retries =
            IntCounter::new("cql_retries_total", "CQL requests retried after a failure")?;
        let phase_seconds = HistogramVec::new(
            HistogramOpts::new("batch_phase_seconds", "Time per step of a batch").buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["phase"],
        )?;
        let batch_size = HistogramVec::new(
            HistogramOpts::new("batch_messages", "Messages per consumed batch")
                .buckets(vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0]),
            &["mode"],
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "consumer_lag",
                "High watermark minus the next offset to process",
            ),
            &["partition"],
        )?;
        let active_generation = IntGauge::new("active_generation", "The generation run writes to")?;
        let gaps = IntCounter::new(
            "gaps_total",
            "Partitions whose committed offset was ahead of the generation's applied offsets at start (replayed)",
        )?;
        let projections_lost = IntCounter::new(
            "projections_lost_total",
            "Times a running feed found its generation's tables gone or behind its records",
        )?;
        let rebuild_lag = IntGauge::new("rebuild_lag", "Messages the rebuild has still to apply")?;
        let rebuild_events_per_second = Gauge::new(
            "rebuild_events_per_second",
            "Rebuild throughput over the last progress interval",
        )?;
        let rebuild_generation =
            IntGauge::new("rebuild_generation", "The generation being rebuilt")?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(cql_seconds.clone()))?;
        let batch_rewrites = IntCounter::new(
            "batch_rewrites_total",
            "Batches written again, whole, because a CQL request failed during them",
        )?;
        registry.register(Box::new(batch_rewrites.clone()))?;
        registry.register(Box::new(cql_retries.clone()))?;
        registry.register(Box::new(phase_seconds.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(consumer_lag.clone()))?;
        registry.register(Box::new(active_generation.clone()))?;
        registry.register(Box::new(gaps.clone()))?;
        registry.register(Box::new(projections_lost.clone()))?;
        registry.register(Box::new(rebuild_lag.clone()))?;
        registry.register(Box::new(rebuild_events_per_second.clone()))?;
        registry.register(Box::new(rebuild_generation.clone()))?;
        Ok(Metrics {
            registry,
            events,
            dead_letters,
            cql_seconds,
            cql_retries,
            batch_rewrites,
            phase_seconds,
            batch_size,
            consumer_lag,
            active_generation,
            gaps,
            projections_lost,
            rebuild_lag,
            rebuild_events_per_second,
            rebuild_generation,
        })
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> Vec<u8> {
        service::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_up_in_the_text_format() {
        let metrics = Metrics::new().unwrap();
        metrics
            .events
            .with_label_values(&["object_version"])
            .inc_by(3);
        metrics.consumer_lag.with_label_values(&["0"]).set(7);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(r#"taxiway_projector_events_total{type="object_version"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"taxiway_projector_consumer_lag{partition="0"} 7"#));
    }
}
