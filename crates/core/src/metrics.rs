//! The relay core's Prometheus metrics (every name starts with `activity_relay_`).

use prometheus::{
    exponential_buckets, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Metrics of the pipeline (ingress side).
#[derive(Clone)]
pub struct PipelineMetrics {
    /// `activity_relay_events_in_total{type,ingress,format}`: envelopes normalized.
    pub events_in: IntCounterVec,
    /// `activity_relay_duplicates_total{type,format}`: envelopes dropped as duplicates.
    pub duplicates: IntCounterVec,
    /// `activity_relay_cross_format_duplicates_total{format}`: duplicates dropped whose
    /// first copy came in the other format (X's cutover: one event once per format).
    pub cross_format_duplicates: IntCounterVec,
    /// `activity_relay_spooled_total{kind}`: records appended (envelope / deadletter).
    pub spooled: IntCounterVec,
    /// `activity_relay_dead_letters_total{reason}`: dead letters created by the pipeline.
    pub dead_letters: IntCounterVec,
    /// `activity_relay_xaa_errors_total{ingress}`: X Activity API error objects received.
    pub xaa_errors: IntCounterVec,
    /// `activity_relay_accept_failures_total{reason}`: deliveries refused (full, unavailable).
    pub accept_failures: IntCounterVec,
    /// `activity_relay_last_event_timestamp_seconds{ingress,source}`: newest event time
    /// accepted per ingress (for gap recovery).
    pub last_event: GaugeVec,
}

/// Metrics of the dispatchers, labelled by sink.
#[derive(Clone)]
pub struct SinkMetrics {
    pub published: IntCounterVec,
    pub failed: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    /// `activity_relay_filtered_total{sink}`: records a sink's type filter kept from it.
    pub filtered: IntCounterVec,
    pub in_flight: IntGaugeVec,
    pub latency: HistogramVec,
    pub retries: IntCounterVec,
    pub backoff: GaugeVec,
}

/// Spool gauges, refreshed at scrape time from `Spool::stats()`.
#[derive(Clone)]
pub struct SpoolMetrics {
    pub bytes: IntGauge,
    pub max_bytes: IntGauge,
    pub records: IntGauge,
    pub segments: IntGauge,
    pub pending: IntGaugeVec,
    pub oldest_age: GaugeVec,
    pub dedup_entries: IntGauge,
    pub dedup_evicted: IntGauge,
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn int_gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl PipelineMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(PipelineMetrics {
            events_in: counter(
                r,
                "activity_relay_events_in_total",
                "Envelopes normalized from deliveries, by type, ingress and input format",
                &["type", "ingress", "format"],
            )?,
            duplicates: counter(
                r,
                "activity_relay_duplicates_total",
                "Envelopes dropped as duplicates of ones already accepted, by type and input format",
                &["type", "format"],
            )?,
            cross_format_duplicates: counter(
                r,
                "activity_relay_cross_format_duplicates_total",
                "Duplicates dropped whose first copy came in the other input format, by the format of the dropped copy",
                &["format"],
            )?,
            spooled: counter(
                r,
                "activity_relay_spooled_total",
                "Records durably appended to the spool, by kind",
                &["kind"],
            )?,
            dead_letters: counter(
                r,
                "activity_relay_dead_letters_total",
                "Dead-letter records created from deliveries that could not be normalized, by reason",
                &["reason"],
            )?,
            xaa_errors: counter(
                r,
                "activity_relay_xaa_errors_total",
                "X Activity API error objects received (nothing spooled)",
                &["ingress"],
            )?,
            accept_failures: counter(
                r,
                "activity_relay_accept_failures_total",
                "Deliveries refused (X retries them), by reason",
                &["reason"],
            )?,
            last_event: gauge(
                r,
                "activity_relay_last_event_timestamp_seconds",
                "Event time of the newest event accepted, per ingress and source",
                &["ingress", "source"],
            )?,
        })
    }
}

impl SinkMetrics {
    /// Creates the series of one sink at zero, so that they exist from the start: a rate
    /// or an alert over them (and a scrape right after a restart that had nothing left to
    /// publish) reads 0, not an absent series. Per-reason series are created on first use.
    pub fn init_sink(&self, sink: &str) {
        self.published.with_label_values(&[sink]);
        self.filtered.with_label_values(&[sink]);
        self.retries.with_label_values(&[sink]);
        self.in_flight.with_label_values(&[sink]);
        self.backoff.with_label_values(&[sink]);
    }

    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "activity_relay_publish_latency_seconds",
                "Time from accepting a record to the broker confirming it, per sink",
            )
            .buckets(exponential_buckets(0.001, 2.0, 18)?),
            &["sink"],
        )?;
        r.register(Box::new(latency.clone()))?;
        Ok(SinkMetrics {
            published: counter(
                r,
                "activity_relay_published_total",
                "Records confirmed by the broker, per sink",
                &["sink"],
            )?,
            failed: counter(
                r,
                "activity_relay_publish_failures_total",
                "Records the broker did not confirm, per sink and reason",
                &["sink", "reason"],
            )?,
            dead_lettered: counter(
                r,
                "activity_relay_sink_dead_letters_total",
                "Records dead-lettered by a dispatcher (permanent failure), per sink and reason",
                &["sink", "reason"],
            )?,
            filtered: counter(
                r,
                "activity_relay_filtered_total",
                "Records a sink's types/exclude_types filter kept from it (its cursor still moves past them)",
                &["sink"],
            )?,
            in_flight: int_gauge_vec(
                r,
                "activity_relay_in_flight",
                "Records handed to the sink and not yet confirmed",
                &["sink"],
            )?,
            latency,
            retries: counter(
                r,
                "activity_relay_publish_retries_total",
                "Publish retries after a failure, per sink",
                &["sink"],
            )?,
            backoff: gauge(
                r,
                "activity_relay_backoff_seconds",
                "Current retry delay of the sink's dispatcher (0 when healthy)",
                &["sink"],
            )?,
        })
    }
}

impl SpoolMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(SpoolMetrics {
            bytes: int_gauge(
                r,
                "activity_relay_spool_bytes",
                "Bytes of the spool on disk",
            )?,
            max_bytes: int_gauge(
                r,
                "activity_relay_spool_max_bytes",
                "Configured upper bound of the spool",
            )?,
            records: int_gauge(
                r,
                "activity_relay_spool_records",
                "Records retained in the spool",
            )?,
            segments: int_gauge(
                r,
                "activity_relay_spool_segments",
                "Segment files of the spool",
            )?,
            pending: int_gauge_vec(
                r,
                "activity_relay_pending_records",
                "Records spooled and not yet confirmed by the sink",
                &["sink"],
            )?,
            oldest_age: gauge(
                r,
                "activity_relay_oldest_pending_age_seconds",
                "Age of the oldest record the sink has not confirmed (0 when none)",
                &["sink"],
            )?,
            dedup_entries: int_gauge(
                r,
                "activity_relay_dedup_entries",
                "Event ids remembered by the deduplication window",
            )?,
            dedup_evicted: int_gauge(
                r,
                "activity_relay_dedup_evicted_early",
                "Ids forgotten before the window ended since start because [dedup] max_entries was reached (raise it if this grows)",
            )?,
        })
    }

    /// Refreshes the dedup gauges.
    pub fn refresh_dedup(&self, dedup: &crate::dedup::Dedup) {
        self.dedup_entries
            .set(i64::try_from(dedup.len()).unwrap_or(i64::MAX));
        self.dedup_evicted
            .set(i64::try_from(dedup.evicted_early()).unwrap_or(i64::MAX));
    }

    /// Refreshes the gauges from the spool's current state.
    pub fn refresh(&self, stats: &relay_spool::SpoolStats, now_ms: u64) {
        self.bytes
            .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
        self.max_bytes
            .set(i64::try_from(stats.max_bytes).unwrap_or(i64::MAX));
        self.records
            .set(i64::try_from(stats.records).unwrap_or(i64::MAX));
        self.segments
            .set(i64::try_from(stats.segments).unwrap_or(i64::MAX));
        for lag in &stats.sinks {
            self.pending
                .with_label_values(&[lag.sink.as_str()])
                .set(i64::try_from(lag.pending_records).unwrap_or(i64::MAX));
            let age = match (lag.pending_records, lag.oldest_accepted_at_ms) {
                (0, _) | (_, None) => 0.0,
                (_, Some(at)) => now_ms.saturating_sub(at) as f64 / 1000.0,
            };
            self.oldest_age
                .with_label_values(&[lag.sink.as_str()])
                .set(age);
        }
    }
}

/// Registers `activity_relay_build_info{version}` = 1.
pub fn register_build_info(r: &Registry) -> prometheus::Result<()> {
    let g = IntGaugeVec::new(
        Opts::new("activity_relay_build_info", "Build information"),
        &["version"],
    )?;
    r.register(Box::new(g.clone()))?;
    g.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    ms_since_epoch(std::time::SystemTime::now())
}

/// `t` in milliseconds since the Unix epoch (0 before it).
pub fn ms_since_epoch(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
