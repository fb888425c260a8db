//! The activity stream: `GET /2/activity/stream` (Bearer), chunked NDJSON with `\r\n`
//! heartbeats, backfill, a connection limit and fault injection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use crate::config::StreamFaults;
use crate::error::ApiError;
use crate::state::{LiveConn, Shared, StreamCmd, StreamConnection};

/// A stream fault, applied by `POST /admin/faults` or [`crate::EmulatorHandle::stream_fault`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StreamFault {
    /// Drop live connections abruptly (all, or the one given).
    Drop {
        /// Connection id (`None`: all).
        #[serde(default)]
        connection: Option<u64>,
    },
    /// Stop sending anything (heartbeats included) on live connections.
    Stall {
        /// Connection id (`None`: all).
        #[serde(default)]
        connection: Option<u64>,
    },
    /// Send `{"errors":[{"title":"operational-disconnect",…}]}` and close.
    OperationalDisconnect {
        /// Connection id (`None`: all).
        #[serde(default)]
        connection: Option<u64>,
    },
    /// Answer 429 with `x-rate-limit-reset` to the next `count` connection attempts.
    RateLimit {
        /// Attempts.
        count: u32,
        /// Seconds from now in `x-rate-limit-reset` (default 60).
        #[serde(default)]
        reset_secs: Option<u64>,
    },
    /// Answer 503 to the next `count` connection attempts.
    Unavailable {
        /// Attempts.
        count: u32,
    },
    /// Replace the standing faults (per-connection `*_after_lines` rules and counters).
    Configure(StreamFaults),
    /// Clear every standing fault.
    Clear,
}

pub(crate) fn router(st: Arc<Shared>) -> Router {
    Router::new()
        .route("/2/activity/stream", get(stream))
        .with_state(st)
}

/// Applies a fault; returns how many connections (or attempts) it concerns.
pub(crate) fn apply_fault(st: &Shared, fault: StreamFault) -> usize {
    tracing::info!(?fault, "stream fault");
    st.with_streams(|s| {
        let send = |s: &mut crate::state::StreamState, conn: Option<u64>, cmd: StreamCmd| {
            let mut n = 0;
            for c in s.live.iter().filter(|c| conn.is_none_or(|id| id == c.id)) {
                // Faults must get through even when the line buffer is full.
                let tx = c.tx.clone();
                let cmd = cmd.clone();
                if tx.try_send(cmd.clone()).is_err() {
                    tokio::spawn(async move {
                        let _ = tx.send(cmd).await;
                    });
                }
                n += 1;
            }
            n
        };
        match fault {
            StreamFault::Drop { connection } => send(s, connection, StreamCmd::Drop),
            StreamFault::Stall { connection } => send(s, connection, StreamCmd::Stall),
            StreamFault::OperationalDisconnect { connection } => {
                send(s, connection, StreamCmd::Disconnect)
            }
            StreamFault::RateLimit { count, reset_secs } => {
                s.faults.fail_429 = count;
                if reset_secs.is_some() {
                    s.faults.rate_limit_reset_secs = reset_secs;
                }
                count as usize
            }
            StreamFault::Unavailable { count } => {
                s.faults.fail_503 = count;
                count as usize
            }
            StreamFault::Configure(f) => {
                s.faults = f;
                s.live.len()
            }
            StreamFault::Clear => {
                s.faults = StreamFaults::default();
                0
            }
        }
    })
}

fn record_attempt(
    st: &Shared,
    params: BTreeMap<String, String>,
    ua: Option<String>,
    status: u16,
    outcome: &str,
) -> u64 {
    st.with_streams(|s| {
        let id = s.next_id;
        s.next_id += 1;
        let now = Utc::now();
        s.records.push(StreamConnection {
            id,
            at: now,
            params,
            user_agent: ua,
            status,
            outcome: outcome.to_owned(),
            ended_at: if outcome == "connected" {
                None
            } else {
                Some(now)
            },
            end_reason: None,
            lines_sent: 0,
            backfilled: 0,
            heartbeats_sent: 0,
            stalled: false,
        });
        if s.records.len() > 10_000 {
            s.records.remove(0);
        }
        id
    })
}

fn update(st: &Shared, id: u64, f: impl FnOnce(&mut StreamConnection)) {
    st.with_streams(|s| {
        if let Some(r) = s.records.iter_mut().rev().find(|r| r.id == id) {
            f(r);
        }
    })
}

async fn stream(
    State(st): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params: BTreeMap<String, String> = q
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let ua = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Err(e) = crate::auth::bearer(&st, &headers) {
        record_attempt(&st, params, ua, 401, "unauthorized");
        return e.into_response();
    }
    let query = match StreamParams::parse(&params) {
        Ok(p) => p,
        Err(e) => {
            record_attempt(&st, params, ua, 400, "invalid_params");
            return e.into_response();
        }
    };
    // Faults and the connection limit: decided under the lock, answered outside it.
    match admit(&st) {
        Ok(rules) => connect(&st, params, ua, rules, query),
        Err(refusal) => {
            let (status, outcome) = refusal.recorded();
            record_attempt(&st, params, ua, status, outcome);
            refusal.response()
        }
    }
}

/// A connection's query: minutes of backfill and the time window.
struct StreamParams {
    backfill: u32,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

impl StreamParams {
    /// Checks and reads `backfill_minutes`, `start_time` and `end_time`.
    fn parse(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let backfill = match params.get("backfill_minutes") {
            None => 0,
            Some(b) => b.parse::<u32>().ok().filter(|b| *b <= 5).ok_or_else(|| {
                ApiError::query("backfill_minutes must be an integer from 0 to 5")
            })?,
        };
        let time = |k: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
            params
                .get(k)
                .map(|t| {
                    DateTime::parse_from_rfc3339(t)
                        .map(|d| d.with_timezone(&Utc))
                        .map_err(|_| ApiError::query(format!("{k} must be an RFC 3339 time")))
                })
                .transpose()
        };
        let start = time("start_time")?;
        let end = time("end_time")?;
        if let Some(s) = start {
            if s < Utc::now() - chrono::Duration::hours(24) {
                return Err(ApiError::query(
                    "start_time must be within the last 24 hours",
                ));
            }
        }
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                return Err(ApiError::query("end_time must be after start_time"));
            }
        }
        Ok(Self {
            backfill,
            start,
            end,
        })
    }

    /// Where the backlog starts (`start_time`, or `backfill_minutes` ago), if any.
    fn from(&self) -> Option<DateTime<Utc>> {
        match (self.start, self.backfill) {
            (Some(s), _) => Some(s),
            (None, 0) => None,
            (None, m) => Some(Utc::now() - chrono::Duration::minutes(i64::from(m))),
        }
    }
}

/// Why a connection attempt is refused.
enum Refusal {
    Unavailable,
    RateLimited { reset: i64 },
    TooMany,
}

impl Refusal {
    /// The status and outcome recorded for the attempt.
    fn recorded(&self) -> (u16, &'static str) {
        match self {
            Refusal::Unavailable => (503, "unavailable"),
            Refusal::RateLimited { .. } => (429, "rate_limited"),
            Refusal::TooMany => (429, "too_many_connections"),
        }
    }

    /// X's answer.
    fn response(self) -> Response {
        match self {
            Refusal::Unavailable => {
                ApiError::new(503, "ServiceUnavailable", "Service Unavailable").into_response()
            }
            Refusal::RateLimited { reset } => {
                ApiError::new(429, "TooManyRequests", "Too Many Requests")
                    .with_header("x-rate-limit-limit", "50")
                    .with_header("x-rate-limit-remaining", "0")
                    .with_header("x-rate-limit-reset", reset.to_string())
                    .into_response()
            }
            Refusal::TooMany => {
                let body = json!({
                    "title": "ConnectionException",
                    "detail": "This stream is currently at the maximum allowed connection limit.",
                    "connection_issue": "TooManyConnections",
                    "type": "https://api.twitter.com/2/problems/streaming-connection",
                    "errors": [{"code": "TooManyConnections", "message": "This stream is currently at the maximum allowed connection limit."}],
                });
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
            }
        }
    }
}

/// Admits a connection attempt under the standing faults and the connection limit
/// (a stalled connection does not count): the `*_after_lines` rules it gets, or why
/// not. Uses up one of the counted faults it meets.
fn admit(st: &Shared) -> Result<StreamFaults, Refusal> {
    st.with_streams(|s| {
        if s.faults.fail_503 > 0 {
            s.faults.fail_503 -= 1;
            return Err(Refusal::Unavailable);
        }
        if s.faults.fail_429 > 0 {
            s.faults.fail_429 -= 1;
            let reset =
                Utc::now().timestamp() + s.faults.rate_limit_reset_secs.unwrap_or(60) as i64;
            return Err(Refusal::RateLimited { reset });
        }
        let stalled: Vec<u64> = s
            .records
            .iter()
            .filter(|r| r.stalled && r.ended_at.is_none())
            .map(|r| r.id)
            .collect();
        let live = s
            .live
            .iter()
            .filter(|c| !c.tx.is_closed() && !stalled.contains(&c.id))
            .count();
        if live >= st.cfg.stream.max_connections {
            return Err(Refusal::TooMany);
        }
        let mut rules = s.faults.clone();
        match &mut s.faults.rules_for_connections {
            Some(0) => {
                rules.drop_after_lines = None;
                rules.stall_after_lines = None;
                rules.disconnect_after_lines = None;
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Ok(rules)
    })
}

/// Accepts a connection: records it, makes it live and answers with the chunked body its
/// writer (spawned) fills with the backlog, then live lines and heartbeats.
fn connect(
    st: &Arc<Shared>,
    params: BTreeMap<String, String>,
    ua: Option<String>,
    rules: StreamFaults,
    query: StreamParams,
) -> Response {
    let id = record_attempt(st, params, ua, 200, "connected");
    let (tx, ctrl_rx) = mpsc::channel(st.cfg.stream.buffer_lines.max(1));
    st.with_streams(|s| s.live.push(LiveConn { id, tx }));
    let backlog = query
        .from()
        .map(|f| st.stream_backlog(f, query.end))
        .unwrap_or_default();
    let (out_tx, out_rx): (Out, _) = mpsc::channel(64);
    tracing::info!(connection = id, backlog = backlog.len(), "stream connected");
    tokio::spawn(run_connection(
        Arc::clone(st),
        id,
        ctrl_rx,
        out_tx,
        backlog,
        rules,
        query.end,
    ));
    let body = Body::from_stream(futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    Response::builder()
        .status(200)
        .header("content-type", "application/json; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn disconnect_line() -> Bytes {
    let v = json!({"errors": [{
        "title": "operational-disconnect",
        "disconnect_type": "OperationalDisconnect",
        "detail": "This stream has been disconnected for operational reasons.",
        "type": "https://api.twitter.com/2/problems/operational-disconnect",
    }]});
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.extend_from_slice(b"\r\n");
    Bytes::from(b)
}

enum Next {
    Continue,
    End(&'static str),
}

/// What woke a connection's writer.
enum Wake {
    /// A line or a fault to apply.
    Cmd(StreamCmd),
    /// Time for a heartbeat.
    Tick,
    /// The commands stopped: the emulator gave up on the connection as too slow.
    TooSlow,
    /// The connection ends, for this reason.
    End(&'static str),
}

/// Where a connection's body chunks go.
type Out = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// A live connection's writer: what it has sent and the faults it obeys.
struct Writer {
    st: Arc<Shared>,
    id: u64,
    out: Out,
    rules: StreamFaults,
    lines: u64,
    stalled: bool,
    stalled_beats: u32,
    /// A fault a `*_after_lines` rule triggered, applied next.
    pending: Option<StreamCmd>,
}

async fn run_connection(
    st: Arc<Shared>,
    id: u64,
    ctrl: mpsc::Receiver<StreamCmd>,
    out: Out,
    backlog: Vec<Bytes>,
    rules: StreamFaults,
    end_time: Option<DateTime<Utc>>,
) {
    let hb = Duration::from_millis(st.cfg.heartbeat_ms().max(1));
    let mut w = Writer {
        st,
        id,
        out,
        rules,
        lines: 0,
        stalled: false,
        stalled_beats: 0,
        pending: None,
    };
    let reason = if w.send_backlog(backlog).await {
        w.run(ctrl, end_time, hb).await
    } else {
        "client_closed"
    };
    finish(&w.st, id, reason);
}

impl Writer {
    /// Applies the per-connection `*_after_lines` rules after a line was written.
    fn after_line(&self) -> Option<StreamCmd> {
        let rules = &self.rules;
        if rules.drop_after_lines.is_some_and(|n| self.lines >= n) {
            return Some(StreamCmd::Drop);
        }
        if rules
            .disconnect_after_lines
            .is_some_and(|n| self.lines >= n)
        {
            return Some(StreamCmd::Disconnect);
        }
        if !self.stalled && rules.stall_after_lines.is_some_and(|n| self.lines >= n) {
            return Some(StreamCmd::Stall);
        }
        None
    }

    /// Sends the backlog (until a rule triggers) and records it. False when the client
    /// went away.
    async fn send_backlog(&mut self, backlog: Vec<Bytes>) -> bool {
        let mut n_backlog = 0u64;
        for line in backlog {
            if self.out.send(Ok(line)).await.is_err() {
                return false;
            }
            self.lines += 1;
            n_backlog += 1;
            if let Some(c) = self.after_line() {
                self.pending = Some(c);
                break;
            }
        }
        let lines = self.lines;
        update(&self.st, self.id, |r| {
            r.lines_sent = lines;
            r.backfilled = n_backlog;
        });
        true
    }

    /// Writes live lines, heartbeats and faults until the connection ends; returns why.
    async fn run(
        &mut self,
        mut ctrl: mpsc::Receiver<StreamCmd>,
        end_time: Option<DateTime<Utc>>,
        hb: Duration,
    ) -> &'static str {
        let st = Arc::clone(&self.st);
        let end_sleep = async {
            match end_time {
                Some(t) => {
                    let d = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    tokio::time::sleep(d).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(end_sleep);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + hb, hb);
        loop {
            let wake = match self.pending.take() {
                Some(c) => Wake::Cmd(c),
                None => tokio::select! {
                    _ = st.cancel.cancelled() => Wake::End("shutdown"),
                    _ = self.out.closed() => Wake::End("client_closed"),
                    _ = &mut end_sleep => Wake::End("end_time"),
                    _ = ticker.tick() => Wake::Tick,
                    c = ctrl.recv() => c.map_or(Wake::TooSlow, Wake::Cmd),
                },
            };
            let next = match wake {
                Wake::Cmd(cmd) => self.apply(cmd).await,
                Wake::Tick => self.heartbeat().await,
                Wake::TooSlow => {
                    abort(&self.out, "too slow").await;
                    Next::End("too_slow")
                }
                Wake::End(reason) => Next::End(reason),
            };
            if let Next::End(reason) = next {
                return reason;
            }
        }
    }

    /// Sends a heartbeat, unless stalled: a stalled connection is dead to its client and
    /// ends after six missed beats.
    async fn heartbeat(&mut self) -> Next {
        if self.stalled {
            self.stalled_beats += 1;
            if self.stalled_beats >= 6 {
                abort(&self.out, "stalled").await;
                return Next::End("stalled");
            }
        } else if self
            .out
            .send(Ok(Bytes::from_static(b"\r\n")))
            .await
            .is_err()
        {
            return Next::End("client_closed");
        } else {
            update(&self.st, self.id, |r| r.heartbeats_sent += 1);
        }
        Next::Continue
    }

    /// Applies a line or a fault.
    async fn apply(&mut self, cmd: StreamCmd) -> Next {
        match cmd {
            StreamCmd::Line(b) => {
                if self.stalled {
                    Next::Continue
                } else if self.out.send(Ok(b)).await.is_err() {
                    Next::End("client_closed")
                } else {
                    self.lines += 1;
                    let lines = self.lines;
                    update(&self.st, self.id, |r| r.lines_sent = lines);
                    if let Some(c) = self.after_line() {
                        self.pending = Some(c);
                    }
                    Next::Continue
                }
            }
            StreamCmd::Stall => {
                self.stalled = true;
                update(&self.st, self.id, |r| r.stalled = true);
                tracing::info!(connection = self.id, "stream stalled (fault)");
                Next::Continue
            }
            StreamCmd::Drop => {
                abort(&self.out, "dropped").await;
                Next::End("dropped")
            }
            StreamCmd::Disconnect => {
                let _ = self.out.send(Ok(disconnect_line())).await;
                Next::End("operational_disconnect")
            }
        }
    }
}

/// Ends the response abruptly (no terminating chunk), after what was already sent had a
/// chance to reach the socket.
async fn abort(out: &Out, why: &str) {
    for _ in 0..100 {
        if out.capacity() == out.max_capacity() || out.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = out.send(Err(std::io::Error::other(why.to_owned()))).await;
}

fn finish(st: &Shared, id: u64, reason: &'static str) {
    tracing::info!(connection = id, reason, "stream connection ended");
    st.with_streams(|s| {
        s.live.retain(|c| c.id != id);
        if let Some(r) = s.records.iter_mut().rev().find(|r| r.id == id) {
            r.ended_at = Some(Utc::now());
            r.end_reason = Some(reason.to_owned());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_admin_json() {
        let parse = |v: serde_json::Value| serde_json::from_value::<StreamFault>(v).expect("fault");
        assert_eq!(
            parse(json!({"action": "drop"})),
            StreamFault::Drop { connection: None }
        );
        assert_eq!(
            parse(json!({"action": "stall", "connection": 3})),
            StreamFault::Stall {
                connection: Some(3)
            }
        );
        assert_eq!(
            parse(json!({"action": "operational_disconnect"})),
            StreamFault::OperationalDisconnect { connection: None }
        );
        assert_eq!(
            parse(json!({"action": "rate_limit", "count": 2, "reset_secs": 9})),
            StreamFault::RateLimit {
                count: 2,
                reset_secs: Some(9)
            }
        );
        assert_eq!(
            parse(json!({"action": "unavailable", "count": 1})),
            StreamFault::Unavailable { count: 1 }
        );
        assert_eq!(
            parse(json!({"action": "configure", "stall_after_lines": 5})),
            StreamFault::Configure(StreamFaults {
                stall_after_lines: Some(5),
                ..StreamFaults::default()
            })
        );
        assert_eq!(parse(json!({"action": "clear"})), StreamFault::Clear);
        assert!(serde_json::from_value::<StreamFault>(json!({"action": "explode"})).is_err());
    }
}
