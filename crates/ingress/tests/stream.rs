//! Stream client tests against a scripted NDJSON server on a real socket, in virtual time
//! (`start_paused`): reconnect schedules are asserted without waiting for them.
//!
//! The paused clock auto-advances whenever the runtime is idle, including while real
//! loopback I/O is still on its way, so a slow socket shows up as *extra* virtual time, never
//! less. So the schedule is asserted exactly from the delay the client chose before each
//! attempt (its backoff gauge, read by the server), and the time between attempts exactly
//! from below (never sooner) and with [`SLACK`] from above.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use parking_lot::Mutex;
use relay_envelope::{Context, IngressKind};
use relay_ingress::stream::{run, StreamConfig};
use relay_ingress::{AcceptError, AcceptReport, Pipeline};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
enum Step {
    Send(&'static [u8]),
    Sleep(Duration),
    /// Never send anything again (a stall).
    Hang,
}

#[derive(Clone, Debug)]
enum Script {
    Status(u16, Vec<(&'static str, String)>),
    /// 200 and a chunked body made of these steps; the body ends after the last step.
    Stream(Vec<Step>),
}

#[derive(Debug, Clone)]
struct Attempt {
    at: Instant,
    query: Option<String>,
    auth: Option<String>,
    user_agent: Option<String>,
    /// The client's `activity_relay_stream_backoff_seconds` when this attempt arrived: the
    /// delay it chose before it (0 before the first).
    backoff: f64,
}

#[derive(Default)]
struct ServerState {
    scripts: Mutex<VecDeque<Script>>,
    attempts: Mutex<Vec<Attempt>>,
    /// The stream client's registry.
    registry: prometheus::Registry,
}

/// The sum of the metric `name` over the series with these `labels`.
fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for fam in registry.gather() {
        if fam.name() != name {
            continue;
        }
        for m in fam.get_metric() {
            let ok = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if ok {
                total += match fam.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                    _ => m.get_histogram().get_sample_count() as f64,
                };
            }
        }
    }
    total
}

async fn handler(
    State(st): State<Arc<ServerState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    st.attempts.lock().push(Attempt {
        at: Instant::now(),
        query,
        auth: h("authorization"),
        user_agent: h("user-agent"),
        backoff: metric(&st.registry, "activity_relay_stream_backoff_seconds", &[]),
    });
    let script = st
        .scripts
        .lock()
        .pop_front()
        .unwrap_or(Script::Stream(vec![Step::Hang]));
    match script {
        Script::Status(code, hdrs) => {
            let mut resp =
                (StatusCode::from_u16(code).unwrap(), "{\"title\":\"error\"}").into_response();
            for (k, v) in hdrs {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            resp
        }
        Script::Stream(steps) => {
            let body = futures::stream::unfold(steps.into_iter(), |mut it| async move {
                loop {
                    match it.next()? {
                        Step::Send(b) => {
                            return Some((Ok::<_, Infallible>(Bytes::from_static(b)), it))
                        }
                        Step::Sleep(d) => tokio::time::sleep(d).await,
                        Step::Hang => futures::future::pending::<()>().await,
                    }
                }
            });
            Response::builder()
                .header("content-type", "application/x-ndjson")
                .body(Body::from_stream(body))
                .unwrap()
        }
    }
}

#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<(Bytes, Context)>>,
    /// Answers to give before accepting, consumed one per call.
    refusals: Mutex<VecDeque<AcceptError>>,
    calls: Mutex<Vec<(Bytes, Instant)>>,
}

#[async_trait::async_trait]
impl Pipeline for Recorder {
    async fn accept(&self, body: Bytes, ctx: Context) -> Result<AcceptReport, AcceptError> {
        self.calls.lock().push((body.clone(), Instant::now()));
        if let Some(err) = self.refusals.lock().pop_front() {
            return Err(err);
        }
        self.lines.lock().push((body, ctx));
        Ok(AcceptReport {
            spooled: 1,
            ..Default::default()
        })
    }
}

struct Harness {
    server: Arc<ServerState>,
    rec: Arc<Recorder>,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), relay_ingress::IngressError>>,
}

async fn start(scripts: Vec<Script>, tweak: impl FnOnce(&mut StreamConfig)) -> Harness {
    let registry = prometheus::Registry::new();
    let server = Arc::new(ServerState {
        registry: registry.clone(),
        ..ServerState::default()
    });
    server.scripts.lock().extend(scripts);
    let app = axum::Router::new()
        .route("/2/activity/stream", axum::routing::get(handler))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut cfg = StreamConfig::new("test-bearer-token");
    cfg.url = format!("http://{addr}/2/activity/stream");
    cfg.name = "t".into();
    tweak(&mut cfg);
    let rec = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let task = {
        let (rec, registry, shutdown) = (rec.clone(), registry.clone(), shutdown.clone());
        tokio::spawn(async move { run(cfg, rec, &registry, shutdown).await })
    };
    Harness {
        server,
        rec,
        registry,
        shutdown,
        task,
    }
}

/// How often [`Harness::until`] looks, in virtual time. While real I/O is pending, each look
/// is a timer the paused clock jumps to; a fine tick keeps that drift small.
const TICK: Duration = Duration::from_millis(2);

/// How much later than scheduled (in virtual time) a reconnect may show up: what pending
/// loopback I/O can add. Half the smallest step of the HTTP schedule (5 s); the schedule
/// itself is asserted exactly from [`Harness::delays`].
const SLACK: f64 = 2.5;

impl Harness {
    /// Waits (in virtual time) until `cond` holds; panics after a virtual day.
    async fn until(&self, what: &str, cond: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(24 * 3600);
        while Instant::now() < deadline {
            if cond(self) {
                return;
            }
            tokio::time::sleep(TICK).await;
        }
        panic!("never happened: {what}");
    }

    fn lines(&self) -> Vec<Bytes> {
        self.rec
            .lines
            .lock()
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.server.attempts.lock().clone()
    }

    /// Seconds between consecutive attempts.
    fn gaps(&self) -> Vec<f64> {
        self.attempts()
            .windows(2)
            .map(|w| (w[1].at - w[0].at).as_secs_f64())
            .collect()
    }

    /// The delay, in seconds, the client chose before each reconnect (exact: not a measured
    /// time).
    fn delays(&self) -> Vec<f64> {
        self.attempts().iter().skip(1).map(|a| a.backoff).collect()
    }

    fn backfills(&self) -> Vec<Option<String>> {
        self.params("backfill_minutes")
    }

    /// The query parameter `name` of every attempt.
    fn params(&self, name: &str) -> Vec<Option<String>> {
        self.attempts()
            .iter()
            .map(|a| {
                a.query.as_deref().and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.into_owned())
                })
            })
            .collect()
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.registry, name, labels)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "got {got:?}, want {want:?} (±{tol})");
    }
}

/// Each gap is at least the scheduled wait (exactly) and at most [`SLACK`] more (what slow
/// loopback I/O adds in virtual time).
fn assert_waited(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            *w <= *g && *g <= w + SLACK,
            "got {got:?}, want {want:?} (+0..{SLACK})"
        );
    }
}

/// Checks each reconnect's `backfill_minutes` against the gap the client measured: since
/// the stream's position (here the first connection: these lines carry no event time)
/// plus `RESUME_MARGIN`. That gap is at least `since_first[i]` (the schedule) and at most
/// the virtual time between the first attempt and this one (slow loopback I/O lengthens
/// it: see `assert_waited`); `None` stands for a gap past 5 minutes (then `start_time`).
fn assert_backfills(h: &Harness, since_first: &[f64]) {
    let margin = relay_ingress::stream::RESUME_MARGIN.as_secs_f64();
    let minutes = |gap: f64| -> Option<u64> {
        relay_ingress::stream::backfill_minutes(Duration::from_secs_f64(gap + margin))
    };
    let rank = |m: Option<u64>| m.unwrap_or(u64::MAX);
    let got = h.backfills();
    let attempts = h.attempts();
    assert_eq!(got.len(), since_first.len() + 1, "{got:?}");
    assert_eq!(got[0], None, "the first start asks for nothing: {got:?}");
    for (i, sched) in since_first.iter().enumerate() {
        let measured = (attempts[i + 1].at - attempts[0].at).as_secs_f64();
        let (lo, hi) = (minutes(*sched), minutes(measured.max(*sched)));
        let g = got[i + 1].as_deref().map(|v| v.parse::<u64>().unwrap());
        assert!(
            rank(lo) <= rank(g) && rank(g) <= rank(hi),
            "attempt {}: backfill_minutes {g:?}, want {lo:?}..={hi:?} (gap {sched}..{measured} s + margin): {got:?}",
            i + 1
        );
    }
}

const L1: &[u8] =
    br#"{"event_type":"tweet_create_events","created_at":"2025-05-19T14:01:46Z","n":1}"#;

#[tokio::test(start_paused = true)]
async fn lines_split_across_chunks_and_sharing_chunks() {
    let h = start(
        vec![Script::Stream(vec![
            Step::Send(b"{\"a\":"),
            Step::Sleep(Duration::from_secs(1)),
            Step::Send(b"1}\r\n{\"b\":2}\n{\"c\""),
            Step::Sleep(Duration::from_secs(1)),
            Step::Send(b":3}\r"),
            Step::Sleep(Duration::from_secs(1)),
            Step::Send(b"\n\r\n{\"d\":4}\n"),
            Step::Hang,
        ])],
        |_| {},
    )
    .await;
    h.until("4 lines", |h| h.lines().len() == 4).await;
    assert_eq!(
        h.lines(),
        vec![
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"{\"b\":2}"),
            Bytes::from_static(b"{\"c\":3}"),
            Bytes::from_static(b"{\"d\":4}"),
        ]
    );
    let (_, ctx) = h.rec.lines.lock()[0].clone();
    assert_eq!(ctx.ingress, IngressKind::Stream);
    assert_eq!(ctx.source, "/x/activity/stream/t");
    let a = &h.attempts()[0];
    assert_eq!(a.auth.as_deref(), Some("Bearer test-bearer-token"));
    assert!(a
        .user_agent
        .as_deref()
        .unwrap()
        .starts_with("activity-relay/"));
    assert_eq!(a.query, None, "no backfill on the first connection");
    assert_eq!(
        h.metric("activity_relay_stream_lines_total", &[("stream", "t")]),
        4.0
    );
    assert_eq!(h.metric("activity_relay_stream_heartbeats_total", &[]), 1.0);
    assert_eq!(h.metric("activity_relay_stream_connected", &[]), 1.0);
    assert!(h.metric("activity_relay_stream_last_event_timestamp_seconds", &[]) > 1.7e9);
    assert_eq!(h.attempts().len(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn heartbeats_only_accept_nothing() {
    let h = start(
        vec![Script::Stream(vec![
            Step::Send(b"\r\n"),
            Step::Sleep(Duration::from_secs(15)),
            Step::Send(b"\n"),
            Step::Sleep(Duration::from_secs(15)),
            Step::Send(b"\r\n"),
            Step::Hang,
        ])],
        |_| {},
    )
    .await;
    h.until("3 heartbeats", |h| {
        h.metric("activity_relay_stream_heartbeats_total", &[]) == 3.0
    })
    .await;
    assert!(h.rec.calls.lock().is_empty());
    assert_eq!(h.metric("activity_relay_stream_lines_total", &[]), 0.0);
    // 15 s between heartbeats is under the 30 s idle timeout: still the first connection.
    assert_eq!(h.attempts().len(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stall_past_idle_timeout_reconnects_immediately_with_backfill() {
    let h = start(
        vec![
            Script::Stream(vec![Step::Send(b"{\"n\":1}\n"), Step::Hang]),
            Script::Stream(vec![Step::Send(b"{\"n\":2}\n"), Step::Hang]),
        ],
        |_| {},
    )
    .await;
    h.until("2 lines", |h| h.lines().len() == 2).await;
    // Stalled for the 30 s idle timeout, then reconnected at once (the first event had reset
    // the backoff), asking for the time it may have missed plus the margin.
    assert_eq!(h.delays(), [0.0]);
    assert_waited(&h.gaps(), &[30.0]);
    assert_backfills(&h, &[30.0]);
    assert_eq!(
        h.metric(
            "activity_relay_stream_reconnects_total",
            &[("reason", "idle_timeout")]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn http_errors_back_off_exponentially_then_connect() {
    let h = start(
        vec![
            Script::Status(503, vec![]),
            Script::Status(503, vec![]),
            Script::Status(500, vec![]),
            Script::Status(401, vec![]),
            Script::Stream(vec![Step::Send(L1), Step::Send(b"\n"), Step::Hang]),
        ],
        |_| {},
    )
    .await;
    h.until("the line", |h| h.lines().len() == 1).await;
    // Once immediately, then 5 s, 10 s, 20 s.
    assert_eq!(h.delays(), [0.0, 5.0, 10.0, 20.0]);
    assert_waited(&h.gaps(), &[0.0, 5.0, 10.0, 20.0]);
    assert_eq!(h.lines()[0].as_ref(), L1);
    assert_eq!(
        h.metric(
            "activity_relay_stream_reconnects_total",
            &[("reason", "http")]
        ),
        4.0
    );
    assert!(
        h.backfills().iter().all(Option::is_none),
        "nothing received yet: no gap to backfill"
    );
    assert_eq!(h.metric("activity_relay_stream_backoff_seconds", &[]), 20.0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rate_limits_honour_reset_then_double() {
    // The wall clock (which the reset is measured against) does not follow the paused
    // clock: the client reads it at some real moment between `now` and `later`.
    let unix_secs = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let now = unix_secs();
    let h = start(
        vec![
            Script::Status(429, vec![("x-rate-limit-reset", (now + 200).to_string())]),
            Script::Status(429, vec![]),
            Script::Status(429, vec![("x-rate-limit-reset", now.to_string())]),
            Script::Stream(vec![Step::Send(b"{\"ok\":1}\n"), Step::Hang]),
        ],
        |_| {},
    )
    .await;
    h.until("the line", |h| h.lines().len() == 1).await;
    let later = unix_secs();
    // The reset (200 s away, beyond 60 s) rules first: the wait until it, in whole seconds
    // of a wall clock read between `now` and `later`; then 120 s, 240 s. Never immediate.
    let delays = h.delays();
    assert_eq!(delays.len(), 3, "{delays:?}");
    let until_reset = (now + 200).saturating_sub(later) as f64..=200.0;
    assert!(
        until_reset.contains(&delays[0]),
        "{delays:?}: {until_reset:?}"
    );
    assert_eq!(delays[1..], [120.0, 240.0]);
    assert_waited(&h.gaps(), &delays);
    assert_eq!(
        h.metric(
            "activity_relay_stream_reconnects_total",
            &[("reason", "rate_limited")]
        ),
        3.0
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn in_stream_errors_end_the_connection_and_use_the_http_schedule() {
    const OP: &[u8] = br#"{"errors":[{"title":"operational-disconnect","disconnect_type":"OperationalDisconnect","detail":"This stream has been disconnected for operational reasons.","type":"https://api.twitter.com/2/problems/operational-disconnect"}]}"#;
    const TOO_MANY: &[u8] = br#"{"errors":[{"title":"ConnectionException","detail":"This stream is currently at the maximum allowed connection limit.","connection_issue":"TooManyConnections","type":"https://api.twitter.com/2/problems/streaming-connection"}]}"#;
    let h = start(
        vec![
            Script::Stream(vec![
                Step::Send(b"{\"n\":1}\n"),
                Step::Sleep(Duration::from_secs(1)),
                Step::Send(OP),
                Step::Send(b"\r\n{\"after\":\"error\"}\n"),
                Step::Hang,
            ]),
            Script::Stream(vec![Step::Send(TOO_MANY), Step::Send(b"\r\n"), Step::Hang]),
            Script::Stream(vec![Step::Send(TOO_MANY), Step::Send(b"\r\n"), Step::Hang]),
            Script::Stream(vec![Step::Send(b"{\"n\":2}\n"), Step::Hang]),
        ],
        |_| {},
    )
    .await;
    h.until("2 lines", |h| h.lines().len() == 2).await;
    assert_eq!(
        h.lines(),
        vec![
            Bytes::from_static(b"{\"n\":1}"),
            Bytes::from_static(b"{\"n\":2}")
        ],
        "error objects are not events; nothing after the error is read"
    );
    // The error came 1 s in; reconnected at once, then the HTTP schedule: 5 s, 10 s.
    assert_eq!(h.delays(), [0.0, 5.0, 10.0]);
    assert_waited(&h.gaps(), &[1.0, 5.0, 10.0]);
    assert_eq!(
        h.metric(
            "activity_relay_stream_reconnects_total",
            &[("reason", "stream_error")]
        ),
        3.0
    );
    // Every reconnect asks for the gap since the stream's position (the first connection,
    // at t=0: the lines carry no event time) plus the margin.
    assert_backfills(&h, &[1.0, 6.0, 16.0]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn gap_recovery_uses_backfill_minutes_then_start_time() {
    let real_start = std::time::SystemTime::now();
    let mut scripts = vec![Script::Stream(vec![Step::Send(b"{\"n\":1}\n")])];
    scripts.extend((0..7).map(|_| Script::Status(503, vec![])));
    scripts.push(Script::Stream(vec![Step::Send(b"{\"n\":2}\n"), Step::Hang]));
    let h = start(scripts, |_| {}).await;
    h.until("2 lines", |h| h.lines().len() == 2).await;
    // The server closed after line 1 (network: immediate), then 503s: 5, 10, 20, 40, 80,
    // 160, 320 s. Gaps since line 1: 0, 5, 15, 35, 75, 155, 315, 635 s.
    let want = [0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0];
    assert_eq!(h.delays(), want);
    assert_waited(&h.gaps(), &want);
    // Gaps since the position (the first connection: the lines carry no event time), plus
    // the 2-minute margin: backfill_minutes up to 5 minutes, then start_time.
    assert_backfills(&h, &[0.0, 5.0, 15.0, 35.0, 75.0, 155.0, 315.0, 635.0]);
    let real_secs = i64::try_from(real_start.elapsed().unwrap_or_default().as_secs()).unwrap_or(0);
    // Past 5 minutes: start_time = the position less the margin, the same for every
    // reconnect since no event moved it: the wall-clock time of the first connection (the
    // client projects the paused runtime clock onto the wall clock it read at start, so
    // that is about when this test started, in real time) less 2 minutes (±5 s).
    let starts = h.params("start_time");
    assert!(starts[..7].iter().all(Option::is_none), "{starts:?}");
    let now = chrono::Utc::now();
    for i in [7, 8] {
        let t = chrono::DateTime::parse_from_rfc3339(starts[i].as_deref().unwrap()).unwrap();
        let age = now.signed_duration_since(t).num_seconds();
        assert!(
            (115..=125 + real_secs).contains(&age),
            "attempt {i}: start_time {age} s ago, want 120 (±5, + {real_secs} s of this test)"
        );
    }
    assert_eq!(
        h.metric(
            "activity_relay_stream_reconnects_total",
            &[("reason", "closed")]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backfill_can_be_disabled() {
    let h = start(
        vec![
            Script::Stream(vec![Step::Send(b"{\"n\":1}\n")]),
            Script::Stream(vec![Step::Send(b"{\"n\":2}\n"), Step::Hang]),
        ],
        |c| c.backfill = false,
    )
    .await;
    h.until("2 lines", |h| h.lines().len() == 2).await;
    assert_eq!(h.backfills(), vec![None, None]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_pipeline_holds_the_line_and_loses_nothing() {
    let h = start(
        vec![Script::Stream(vec![
            Step::Send(b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"),
            Step::Hang,
        ])],
        |_| {},
    )
    .await;
    h.rec.refusals.lock().extend([
        // n=1 accepted on the third try…
        AcceptError::Full {
            retry_after: Duration::from_secs(2),
        },
        AcceptError::Unavailable("shutting down".into()),
    ]);
    h.until("3 lines", |h| h.lines().len() == 3).await;
    assert_eq!(
        h.lines(),
        vec![
            Bytes::from_static(b"{\"n\":1}"),
            Bytes::from_static(b"{\"n\":2}"),
            Bytes::from_static(b"{\"n\":3}"),
        ]
    );
    let calls = h.rec.calls.lock().clone();
    let bodies: Vec<&[u8]> = calls.iter().map(|(b, _)| b.as_ref()).collect();
    assert_eq!(
        bodies,
        vec![
            &b"{\"n\":1}"[..],
            b"{\"n\":1}",
            b"{\"n\":1}",
            b"{\"n\":2}",
            b"{\"n\":3}"
        ]
    );
    // Retried after the pipeline's 2 s, then after unavailable_retry (1 s).
    let t: Vec<f64> = calls
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).as_secs_f64())
        .collect();
    assert_close(&t[..2], &[2.0, 1.0], 0.05);
    assert_eq!(
        h.metric("activity_relay_stream_backpressure_waits_total", &[]),
        2.0
    );
    assert_eq!(h.attempts().len(), 1, "backpressure is not a reconnect");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_overlong_line_drops_the_connection() {
    let h = start(
        vec![
            Script::Stream(vec![
                Step::Send(b"{\"n\":1}\n{\"this line\":\"is far too long\"}\n{\"n\":\"lost\"}\n"),
                Step::Hang,
            ]),
            Script::Stream(vec![Step::Send(b"{\"n\":2}\n"), Step::Hang]),
        ],
        |c| c.max_line_bytes = 16,
    )
    .await;
    h.until("2 lines", |h| h.lines().len() == 2).await;
    assert_eq!(
        h.lines(),
        vec![
            Bytes::from_static(b"{\"n\":1}"),
            Bytes::from_static(b"{\"n\":2}")
        ]
    );
    assert_eq!(
        h.metric(
            "activity_relay_stream_reconnects_total",
            &[("reason", "line_too_long")]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn connection_refused_backs_off_linearly_and_shutdown_interrupts_waits() {
    // A port bound but not listening: connections are refused, and nobody else can take it
    // while `_reserved` lives.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reserved.local_addr().unwrap();
    let _reserved = reserved;
    let mut cfg = StreamConfig::new("tok");
    cfg.url = format!("http://{addr}/2/activity/stream");
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    let rec = Arc::new(Recorder::default());
    let task = {
        let (registry, shutdown) = (registry.clone(), shutdown.clone());
        tokio::spawn(async move { run(cfg, rec, &registry, shutdown).await })
    };
    let reconnects = |r: &prometheus::Registry| {
        r.gather()
            .iter()
            .filter(|f| f.name() == "activity_relay_stream_reconnects_total")
            .flat_map(|f| {
                f.get_metric()
                    .iter()
                    .map(|m| m.get_counter().get_value())
                    .collect::<Vec<_>>()
            })
            .sum::<f64>()
    };
    let start = Instant::now();
    while reconnects(&registry) < 5.0 {
        tokio::time::sleep(TICK).await;
    }
    // 0 + 0.25 + 0.5 + 0.75 s of waits before the fifth failure: at least that (exactly),
    // and less than the 2.5 s it would take without the immediate first retry (the rest is
    // what refused connects and this loop's tick add in virtual time).
    let waited = start.elapsed().as_secs_f64();
    assert!((1.5..2.5).contains(&waited), "{waited}");
    // The delay chosen after the fifth failure (exact; the next attempt is 1 s away, far
    // more than this loop's tick).
    assert_eq!(reconnects(&registry), 5.0);
    assert_eq!(
        metric(&registry, "activity_relay_stream_backoff_seconds", &[]),
        1.0
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn stream_config_defaults_and_unknown_fields() {
    let cfg: StreamConfig =
        serde_json::from_value(serde_json::json!({"bearer_token": "secret-tok"})).unwrap();
    assert_eq!(cfg.name, "default");
    assert_eq!(cfg.url, "https://api.x.com/2/activity/stream");
    assert_eq!(cfg.idle_timeout, Duration::from_secs(30));
    assert!(cfg.backfill);
    assert!(cfg.user_agent.starts_with("activity-relay/"));
    assert!(!format!("{cfg:?}").contains("secret-tok"));
    let cfg: StreamConfig = serde_json::from_value(serde_json::json!({
        "bearer_token": "t", "idle_timeout": "45s", "backoff": {"http_initial": "1s"}
    }))
    .unwrap();
    assert_eq!(cfg.idle_timeout, Duration::from_secs(45));
    assert_eq!(cfg.backoff.http_initial, Duration::from_secs(1));
    assert_eq!(cfg.backoff.http_max, Duration::from_secs(320));
    assert!(serde_json::from_value::<StreamConfig>(
        serde_json::json!({"bearer_token": "t", "idle": "1s"})
    )
    .is_err());
    // No token: parses (the defaults live in one place), and validate() names it.
    let missing: StreamConfig = serde_json::from_value(serde_json::json!({})).unwrap();
    let err = missing.validate().unwrap_err().to_string();
    assert!(err.contains("bearer_token is required"), "{err}");
}

#[tokio::test]
async fn invalid_stream_configs_fail_fast() {
    for tweak in [
        (|c: &mut StreamConfig| c.bearer_token = " ".into()) as fn(&mut StreamConfig),
        |c| c.url = "not a url".into(),
        |c| c.url = "ftp://x/y".into(),
        |c| c.idle_timeout = Duration::ZERO,
    ] {
        let mut cfg = StreamConfig::new("tok");
        tweak(&mut cfg);
        let err = run(
            cfg,
            Arc::new(Recorder::default()),
            &prometheus::Registry::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, relay_ingress::IngressError::Config(_)),
            "{err}"
        );
    }
}
