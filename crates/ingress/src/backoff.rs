//! X's reconnect schedule for streaming connections (`docs/spec/x-activity.md` §3), as a pure type.
//!
//! * The first reconnect after a healthy period (or at start) is immediate, except after a
//!   429, which always waits.
//! * Network (TCP/TLS, stall, connection closed) errors: linear, +250 ms per attempt, at
//!   most 16 s.
//! * HTTP errors (and in-stream error objects): exponential from 5 s, doubling, at most
//!   320 s.
//! * HTTP 429: exponential from 60 s, doubling (at most 15 min), and never before the
//!   `x-rate-limit-reset` time (a reset more than an hour away is treated as bogus and
//!   capped there).
//!
//! Each kind counts its own attempts; [`Backoff::reset`] (after a healthy period) starts
//! over.

use std::time::Duration;

use serde::Deserialize;

/// Why a connection ended or could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// TCP/TLS error, stall past the idle timeout, connection closed by the peer.
    Network,
    /// A non-2xx, non-429 response, an in-stream error object or a protocol violation.
    Http,
    /// HTTP 429; `reset_at` is `x-rate-limit-reset` (Unix seconds) if sent.
    RateLimited { reset_at: Option<u64> },
}

/// The schedule's parameters; the defaults are X's rules.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    #[serde(with = "humantime_serde")]
    pub network_step: Duration,
    #[serde(with = "humantime_serde")]
    pub network_max: Duration,
    #[serde(with = "humantime_serde")]
    pub http_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub http_max: Duration,
    #[serde(with = "humantime_serde")]
    pub rate_limit_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub rate_limit_max: Duration,
    /// Longest wait a `x-rate-limit-reset` value may impose.
    #[serde(with = "humantime_serde")]
    pub rate_limit_reset_max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            network_step: Duration::from_millis(250),
            network_max: Duration::from_secs(16),
            http_initial: Duration::from_secs(5),
            http_max: Duration::from_secs(320),
            rate_limit_initial: Duration::from_secs(60),
            rate_limit_max: Duration::from_secs(900),
            rate_limit_reset_max: Duration::from_secs(3600),
        }
    }
}

/// Reconnect delays; see the module docs.
#[derive(Clone, Debug)]
pub struct Backoff {
    cfg: BackoffConfig,
    immediate_used: bool,
    network: u32,
    http: u32,
    rate_limited: u32,
}

impl Backoff {
    pub fn new(cfg: BackoffConfig) -> Self {
        Backoff {
            cfg,
            immediate_used: false,
            network: 0,
            http: 0,
            rate_limited: 0,
        }
    }

    /// Starts over: the connection has been healthy.
    pub fn reset(&mut self) {
        self.immediate_used = false;
        self.network = 0;
        self.http = 0;
        self.rate_limited = 0;
    }

    /// How long to wait before the next attempt after `failure`; `now_unix` is the current
    /// Unix time in seconds (only used with `x-rate-limit-reset`).
    pub fn next_delay(&mut self, failure: Failure, now_unix: u64) -> Duration {
        match failure {
            Failure::RateLimited { reset_at } => {
                self.immediate_used = true;
                self.rate_limited = self.rate_limited.saturating_add(1);
                let exp = exponential(
                    self.cfg.rate_limit_initial,
                    self.rate_limited,
                    self.cfg.rate_limit_max,
                );
                let until_reset = reset_at
                    .map(|r| Duration::from_secs(r.saturating_sub(now_unix)))
                    .unwrap_or_default()
                    .min(self.cfg.rate_limit_reset_max);
                exp.max(until_reset)
            }
            _ if !self.immediate_used => {
                self.immediate_used = true;
                Duration::ZERO
            }
            Failure::Network => {
                self.network = self.network.saturating_add(1);
                self.cfg
                    .network_step
                    .saturating_mul(self.network)
                    .min(self.cfg.network_max)
            }
            Failure::Http => {
                self.http = self.http.saturating_add(1);
                exponential(self.cfg.http_initial, self.http, self.cfg.http_max)
            }
        }
    }
}

/// `initial * 2^(attempt-1)`, capped.
fn exponential(initial: Duration, attempt: u32, max: Duration) -> Duration {
    let shift = attempt.saturating_sub(1).min(31);
    initial.saturating_mul(1u32 << shift).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn network_is_immediate_then_linear_capped() {
        let mut b = Backoff::new(BackoffConfig::default());
        let got: Vec<f64> = (0..70)
            .map(|_| secs(b.next_delay(Failure::Network, 0)))
            .collect();
        assert_eq!(&got[..5], &[0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(got[64], 16.0);
        assert_eq!(got[65], 16.0);
        assert_eq!(got[69], 16.0);
        assert!(got.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn http_is_immediate_then_exponential_capped() {
        let mut b = Backoff::new(BackoffConfig::default());
        let got: Vec<f64> = (0..10)
            .map(|_| secs(b.next_delay(Failure::Http, 0)))
            .collect();
        assert_eq!(
            got,
            vec![0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 320.0, 320.0]
        );
    }

    #[test]
    fn rate_limited_never_immediate_and_doubles() {
        let mut b = Backoff::new(BackoffConfig::default());
        let got: Vec<f64> = (0..6)
            .map(|_| secs(b.next_delay(Failure::RateLimited { reset_at: None }, 0)))
            .collect();
        assert_eq!(got, vec![60.0, 120.0, 240.0, 480.0, 900.0, 900.0]);
        // A 429 used up the immediate reconnect.
        assert_eq!(b.next_delay(Failure::Http, 0), Duration::from_secs(5));
    }

    #[test]
    fn rate_limit_reset_is_honoured() {
        let mut b = Backoff::new(BackoffConfig::default());
        let now = 1_700_000_000;
        let d = b.next_delay(
            Failure::RateLimited {
                reset_at: Some(now + 600),
            },
            now,
        );
        assert_eq!(d, Duration::from_secs(600));
        // A reset already past: the exponential schedule rules.
        let d = b.next_delay(
            Failure::RateLimited {
                reset_at: Some(now - 5),
            },
            now,
        );
        assert_eq!(d, Duration::from_secs(120));
        // A bogus reset (milliseconds, not seconds) is capped.
        let d = b.next_delay(
            Failure::RateLimited {
                reset_at: Some(now * 1000),
            },
            now,
        );
        assert_eq!(d, Duration::from_secs(3600));
    }

    #[test]
    fn kinds_count_separately_and_reset_starts_over() {
        let mut b = Backoff::new(BackoffConfig::default());
        assert_eq!(b.next_delay(Failure::Network, 0), Duration::ZERO);
        assert_eq!(b.next_delay(Failure::Http, 0), Duration::from_secs(5));
        assert_eq!(
            b.next_delay(Failure::Network, 0),
            Duration::from_millis(250)
        );
        assert_eq!(b.next_delay(Failure::Http, 0), Duration::from_secs(10));
        b.reset();
        assert_eq!(b.next_delay(Failure::Http, 0), Duration::ZERO);
        assert_eq!(b.next_delay(Failure::Http, 0), Duration::from_secs(5));
        assert_eq!(
            b.next_delay(Failure::Network, 0),
            Duration::from_millis(250)
        );
    }
}
