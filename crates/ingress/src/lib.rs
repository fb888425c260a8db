//! `relay-ingress`: how deliveries from X enter the relay.
//!
//! Both ingresses hand the raw body of each delivery to a [`Pipeline`] (implemented by the
//! `activity-relay` crate: normalize → dedup → spool) and answer X only after it returns.
//!
//! * [`webhook`]: `GET`/`POST /webhooks/{app}`: CRC answers, constant-time signature checks
//!   (every configured secret, for rotation), 401/413/503 + `Retry-After`, optional TLS,
//!   graceful shutdown.
//! * [`stream`]: the activity stream client: NDJSON ([`ndjson`]), idle timeout, X's
//!   reconnect rules ([`backoff`]), `backfill_minutes` after short gaps, backpressure.
//!
//! Metrics (all registered into the caller's registry):
//!
//! | name | labels |
//! |---|---|
//! | `activity_relay_webhook_requests_total` | `app`, `outcome` (`accepted`, `crc`, `bad_request`, `bad_crc_token`, `unauthorized`, `too_large`, `read_error`, `read_timeout`, `busy` (`max_requests_per_app`), `preauth_budget`, `full`, `unavailable`, `unknown_app`; `app="_unknown"` for unconfigured apps) |
//! | `activity_relay_webhook_crc_checks_total` | `app` |
//! | `activity_relay_webhook_signature_failures_total` | `app`, `reason` (`missing`, `malformed`, `mismatch`, `crc_shaped`) |
//! | `activity_relay_webhook_connections_total` | `outcome` (`refused` at `max_connections`, `no_request`, `served`) |
//! | `activity_relay_webhook_connections_open` | |
//! | `activity_relay_webhook_received_bytes_total` | `app` |
//! | `activity_relay_webhook_handler_seconds` (histogram) | `app`, `method` |
//! | `activity_relay_stream_connected` | `stream` |
//! | `activity_relay_stream_reconnects_total` | `stream`, `reason` (`network`, `timeout`, `closed`, `idle_timeout`, `http`, `rate_limited`, `stream_error`, `line_too_long`) |
//! | `activity_relay_stream_heartbeats_total`, `activity_relay_stream_lines_total` | `stream` |
//! | `activity_relay_stream_last_event_timestamp_seconds` | `stream` |
//! | `activity_relay_stream_backoff_seconds` | `stream` |
//! | `activity_relay_stream_backpressure_waits_total` | `stream` |
//! | `activity_relay_stream_accept_seconds` (histogram) | `stream` |

use std::time::Duration;

use bytes::Bytes;
use relay_envelope::Context;

/// What the pipeline did with one delivery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptReport {
    /// Envelopes newly spooled.
    pub spooled: usize,
    /// Envelopes dropped as duplicates of ones already accepted.
    pub duplicates: usize,
    /// Dead-letter records spooled (authentic but unparseable bodies).
    pub dead_letters: usize,
    /// X Activity API error objects seen (counted and logged, nothing spooled).
    pub xaa_errors: usize,
    /// The event time (ms since the epoch) of the newest envelope of the delivery that is
    /// now durable: spooled by it, or a duplicate of one spooled before. Where a stream
    /// read stands in X's time.
    pub newest_event_ms: Option<i64>,
}

/// The cause of a refusal, whatever part of the relay it came from (its spool, its
/// fleet's store).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a delivery was not accepted; X should retry it.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The spool is full: answer 503 with `Retry-After`.
    #[error("spool is full")]
    Full { retry_after: Duration },
    /// The relay is shutting down or its disk failed: answer 503.
    #[error("unavailable: {0}")]
    Unavailable(BoxError),
    /// The delivery can never be taken (a record it makes would not fit the spool's
    /// segments; `run --check` refuses configs where that can happen): answer 413, X does
    /// not retry.
    #[error("cannot be taken: {0}")]
    TooLarge(BoxError),
}

/// Up to when an ingress took everything X sent: "now" while it is connected (a stream) and
/// the pipeline takes its deliveries, else the moment that stopped. The relay records it
/// (the liveness record) so that, after a restart, gap recovery replays from there: a
/// relay that was up but refusing (spool full, a limit, stream in 429 backoff) has a gap
/// too.
///
/// It also keeps each interval of refusals that ended (the first refusal to the next
/// accepted delivery), until the relay takes them ([`Acceptance::take_refused`]) to
/// recover in-run what X may have given up on; until then they hold
/// [`Acceptance::accepted_up_to`] back, so the liveness record never forgets one. Clones
/// share the state.
#[derive(Clone, Debug, Default)]
pub struct Acceptance(std::sync::Arc<parking_lot::Mutex<AcceptanceState>>);

/// At most this many intervals of refusals are kept apart (see [`Acceptance::accepting`]).
pub const MAX_REFUSED_INTERVALS: usize = 64;

#[derive(Debug, Default)]
pub struct AcceptanceState {
    /// The first refusal of the refusals going on now.
    refusing_since: Option<std::time::SystemTime>,
    /// Intervals of refusals that ended, not yet taken.
    refused: Vec<(std::time::SystemTime, std::time::SystemTime)>,
}

impl Acceptance {
    /// Taking everything again (closes an interval of refusals, if one was open).
    pub fn accepting(&self) {
        let mut s = self.0.lock();
        if let Some(from) = s.refusing_since.take() {
            s.refused.push((from, std::time::SystemTime::now()));
            // Bounded (nobody may take them, or refusals may flap): the two oldest merge
            // into one interval covering both, which only widens what is recovered.
            if s.refused.len() > MAX_REFUSED_INTERVALS {
                let (_, to) = s.refused.remove(1);
                s.refused[0].1 = to;
            }
        }
    }

    /// Stopped taking what X sends at `at` (kept if it had stopped earlier already).
    pub fn stopped(&self, at: std::time::SystemTime) {
        let mut s = self.0.lock();
        if s.refusing_since.is_none() {
            s.refusing_since = Some(at);
        }
    }

    /// Everything X sent before this was accepted, or is in an interval of refusals not
    /// yet taken by [`Acceptance::take_refused`].
    pub fn accepted_up_to(&self) -> std::time::SystemTime {
        let s = self.0.lock();
        s.refused
            .iter()
            .map(|(from, _)| *from)
            .chain(s.refusing_since)
            .min()
            .unwrap_or_else(std::time::SystemTime::now)
    }

    /// The intervals of refusals that ended since the last call, oldest first.
    pub fn take_refused(&self) -> Vec<(std::time::SystemTime, std::time::SystemTime)> {
        std::mem::take(&mut self.0.lock().refused)
    }
}

/// Where a stream stands in X's time: the newest event time it durably accepted (or, before
/// any event, the time it started taking X's live stream), moved forward only. A reconnect
/// asks X for the gap from there (less a margin); the relay keeps it in the liveness record
/// so that a restart resumes from it. Unlike [`Acceptance`], which is wall-clock time, this
/// stays behind while a catch-up is read: a catch-up cut short resumes where it was cut.
/// Clones share the state.
#[derive(Clone, Debug, Default)]
pub struct Position(std::sync::Arc<parking_lot::Mutex<Option<std::time::SystemTime>>>);

impl Position {
    /// Moves forward to `at` (never back).
    pub fn advance(&self, at: std::time::SystemTime) {
        let mut p = self.0.lock();
        if p.is_none_or(|cur| at > cur) {
            *p = Some(at);
        }
    }

    /// The position, if one is known.
    pub fn get(&self) -> Option<std::time::SystemTime> {
        *self.0.lock()
    }
}

/// normalize → dedup → durable append. Returns only once accepted events are durable.
#[async_trait::async_trait]
pub trait Pipeline: Send + Sync + 'static {
    async fn accept(&self, body: Bytes, ctx: Context) -> Result<AcceptReport, AcceptError>;
}

pub mod backoff;
mod conn;
mod metrics;
pub mod ndjson;
pub mod stream;
pub mod webhook;

/// Why an ingress could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The configuration is invalid (checked before anything binds or connects).
    #[error("invalid ingress configuration: {0}")]
    Config(#[from] relay_config::ConfigError),
    /// Binding or serving the webhook listener failed.
    #[error("webhook listener on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Loading the TLS certificate or key failed.
    #[error("TLS setup ({path}): {reason}")]
    Tls { path: String, reason: String },
    /// Serving failed after start.
    #[error("webhook server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A metric could not be registered (e.g. already registered in this registry).
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The HTTP client could not be built.
    #[error("stream client setup: {0}")]
    Client(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn refusals_are_kept_as_intervals_until_taken() {
        let a = Acceptance::default();
        let t0 = SystemTime::now() - Duration::from_secs(60);
        a.stopped(t0);
        a.stopped(t0 + Duration::from_secs(5)); // still the same interval
        assert_eq!(a.accepted_up_to(), t0);
        a.accepting();
        // Accepting again does not forget the interval: the record still starts at it.
        assert_eq!(a.accepted_up_to(), t0);
        let taken = a.take_refused();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, t0);
        assert!(taken[0].1 > t0);
        assert!(a.take_refused().is_empty());
        assert!(
            a.accepted_up_to() > t0,
            "taken: no longer holds the record back"
        );
    }

    #[test]
    fn intervals_are_bounded_by_merging_the_oldest() {
        let a = Acceptance::default();
        let t0 = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..(MAX_REFUSED_INTERVALS as u64 + 10) {
            a.stopped(t0 + Duration::from_secs(i));
            a.accepting();
        }
        let taken = a.take_refused();
        assert_eq!(taken.len(), MAX_REFUSED_INTERVALS);
        assert_eq!(taken[0].0, t0, "the oldest start is kept");
        assert!(taken.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
