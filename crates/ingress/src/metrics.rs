//! Prometheus metrics of both ingresses, registered into the caller's registry.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

fn reg<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    c: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Webhook metrics. Label `app` is a configured app name, or `_unknown` for paths naming
/// no configured app (never the attacker-chosen path segment itself).
#[derive(Clone)]
pub(crate) struct WebhookMetrics {
    pub requests: IntCounterVec,
    pub crc_checks: IntCounterVec,
    pub signature_failures: IntCounterVec,
    pub bytes: IntCounterVec,
    pub latency: prometheus::HistogramVec,
}

impl WebhookMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(WebhookMetrics {
            requests: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "activity_relay_webhook_requests_total",
                        "Webhook requests by app and outcome",
                    ),
                    &["app", "outcome"],
                )?,
            )?,
            crc_checks: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "activity_relay_webhook_crc_checks_total",
                        "CRC challenges answered, by app",
                    ),
                    &["app"],
                )?,
            )?,
            signature_failures: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "activity_relay_webhook_signature_failures_total",
                        "POSTs rejected for their signature, by app and reason (missing, malformed, mismatch)",
                    ),
                    &["app", "reason"],
                )?,
            )?,
            bytes: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "activity_relay_webhook_received_bytes_total",
                        "Body bytes of authentic webhook POSTs, by app",
                    ),
                    &["app"],
                )?,
            )?,
            latency: reg(
                registry,
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "activity_relay_webhook_handler_seconds",
                        "Webhook handler latency by app and method",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                        2.5, 5.0,
                    ]),
                    &["app", "method"],
                )?,
            )?,
        })
    }
}

/// Stream metrics; the const label `stream` carries the stream's name so several streams
/// can share one registry.
#[derive(Clone)]
pub(crate) struct StreamMetrics {
    pub connected: IntGauge,
    pub reconnects: IntCounterVec,
    pub heartbeats: IntCounter,
    pub lines: IntCounter,
    pub last_event: Gauge,
    pub backoff: Gauge,
    pub backpressure: IntCounter,
    pub accept_latency: Histogram,
}

impl StreamMetrics {
    pub fn register(registry: &Registry, stream: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("stream", stream);
        Ok(StreamMetrics {
            connected: reg(
                registry,
                IntGauge::with_opts(opts(
                    "activity_relay_stream_connected",
                    "1 while the activity stream is connected",
                ))?,
            )?,
            reconnects: reg(
                registry,
                IntCounterVec::new(
                    opts(
                        "activity_relay_stream_reconnects_total",
                        "Stream disconnects followed by a reconnect, by reason",
                    ),
                    &["reason"],
                )?,
            )?,
            heartbeats: reg(
                registry,
                IntCounter::with_opts(opts(
                    "activity_relay_stream_heartbeats_total",
                    "Keep-alive (blank) lines received",
                ))?,
            )?,
            lines: reg(
                registry,
                IntCounter::with_opts(opts(
                    "activity_relay_stream_lines_total",
                    "Non-blank lines received",
                ))?,
            )?,
            last_event: reg(
                registry,
                Gauge::with_opts(opts(
                    "activity_relay_stream_last_event_timestamp_seconds",
                    "Unix time of the last line accepted from the stream",
                ))?,
            )?,
            backoff: reg(
                registry,
                Gauge::with_opts(opts(
                    "activity_relay_stream_backoff_seconds",
                    "Current reconnect delay",
                ))?,
            )?,
            backpressure: reg(
                registry,
                IntCounter::with_opts(opts(
                    "activity_relay_stream_backpressure_waits_total",
                    "Times a line was held back because the pipeline was full or unavailable",
                ))?,
            )?,
            accept_latency: reg(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "activity_relay_stream_accept_seconds",
                        "Time for the pipeline to accept one stream line",
                    )
                    .const_label("stream", stream)
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ]),
                )?,
            )?,
        })
    }
}

/// The webhook's connection metrics (see [`crate::conn`]).
pub(crate) fn register_conn_metrics(
    registry: &Registry,
) -> Result<crate::conn::ConnMetrics, prometheus::Error> {
    let closed = reg(
        registry,
        IntCounterVec::new(
            Opts::new(
                "activity_relay_webhook_connections_total",
                "Webhook connections by how they ended: refused (max_connections open), \
                 no_request (closed before any response: header read timeout, idle, malformed \
                 request, failed TLS handshake), served",
            ),
            &["outcome"],
        )?,
    )?;
    Ok(crate::conn::ConnMetrics {
        open: reg(
            registry,
            IntGauge::with_opts(Opts::new(
                "activity_relay_webhook_connections_open",
                "Webhook connections open now",
            ))?,
        )?,
        refused: closed.with_label_values(&["refused"]),
        no_request: closed.with_label_values(&["no_request"]),
        served: closed.with_label_values(&["served"]),
    })
}
