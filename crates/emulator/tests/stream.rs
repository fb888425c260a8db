//! The activity stream over real HTTP: Bearer auth, NDJSON lines and heartbeats, backfill,
//! every fault, the connection limit, connection records.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use x_emulator::{Emulator, EmulatorConfig, StreamFault, StreamFaults};

struct Conn {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(base: &str, query: &str) -> reqwest::Response {
        client()
            .get(format!("{base}/2/activity/stream{query}"))
            .bearer_auth(BEARER)
            .header("user-agent", "stream-test/1.0")
            .send()
            .await
            .unwrap()
    }

    async fn connect(base: &str, query: &str) -> Conn {
        let resp = Self::open(base, query).await;
        assert_eq!(resp.status(), 200);
        Conn {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next `\r\n`-terminated line ("" for a heartbeat); `Ok(None)` at a clean end.
    async fn line(&mut self) -> Result<Option<String>, reqwest::Error> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..pos]).into_owned()));
            }
            match tokio::time::timeout(Duration::from_secs(10), self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self.buf.extend_from_slice(&c),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Err(_) => panic!("no data from the stream in 10 s"),
            }
        }
    }

    /// The next non-heartbeat line, parsed.
    async fn event(&mut self) -> Value {
        loop {
            let l = self.line().await.unwrap().expect("stream ended");
            if !l.is_empty() {
                return serde_json::from_str(&l).unwrap();
            }
        }
    }
}

fn fixture(p: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(p)).unwrap()).unwrap()
}

fn cfg() -> EmulatorConfig {
    let mut c = EmulatorConfig::default();
    c.stream.heartbeat_ms = Some(30);
    c
}

#[tokio::test]
async fn bearer_lines_and_heartbeats() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let base = emu.base_url();
    let r = client()
        .get(format!("{base}/2/activity/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{base}/2/activity/stream"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let mut c = Conn::connect(&base, "").await;
    emu.emit(fixture("stream/tweet_create.json"));
    emu.emit(fixture("aaa/follow.json")); // webhook format: not on the stream
    emu.emit(fixture("xaa/post.create.json"));
    let mut events = Vec::new();
    let mut heartbeats = 0;
    while events.len() < 2 || heartbeats < 2 {
        let l = c.line().await.unwrap().unwrap();
        if l.is_empty() {
            heartbeats += 1;
        } else {
            events.push(serde_json::from_str::<Value>(&l).unwrap());
        }
    }
    assert_eq!(events[0], fixture("stream/tweet_create.json"));
    assert_eq!(events[1]["data"]["event_type"], "post.create");

    let conns: Value = client()
        .get(format!("{base}/admin/stream/connections"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = conns["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["unauthorized", "unauthorized", "connected"]);
    assert_eq!(conns["connections"][2]["user_agent"], "stream-test/1.0");
    assert_eq!(conns["connections"][2]["lines_sent"], 2);
    assert!(conns["connections"][2]["heartbeats_sent"].as_u64().unwrap() >= 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn backfill_replays_the_window() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let base = emu.base_url();
    let mut old = fixture("stream/tweet_create.json");
    old["tweet_create_events"][0]["id"] = json!("old");
    let mut recent = fixture("stream/tweet_create.json");
    recent["tweet_create_events"][0]["id"] = json!("recent");
    let now = chrono::Utc::now();
    emu.emit_at(old, now - chrono::Duration::minutes(10));
    emu.emit_at(recent, now - chrono::Duration::minutes(2));

    let mut c = Conn::connect(&base, "?backfill_minutes=5").await;
    assert_eq!(c.event().await["tweet_create_events"][0]["id"], "recent");
    emu.emit(fixture("stream/favorite.json"));
    assert_eq!(c.event().await["event_type"], "favorite_events");

    // Without backfill, only live events.
    let mut c2 = Conn::connect(&base, "").await;
    emu.emit(fixture("xaa/like.create.json"));
    assert_eq!(c2.event().await["data"]["event_type"], "like.create");

    let r = Conn::open(&base, "?backfill_minutes=6").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "QueryParamInvalid");
    let rec = emu.connections();
    assert_eq!(rec[0].backfilled, 1);
    assert_eq!(
        rec[0].params.get("backfill_minutes").map(String::as_str),
        Some("5")
    );
    assert_eq!(rec[2].outcome, "invalid_params");
    emu.shutdown().await;
}

#[tokio::test]
async fn drop_fault_breaks_the_connection() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let mut c = Conn::connect(&emu.base_url(), "").await;
    emu.emit(fixture("stream/favorite.json"));
    c.event().await;
    assert_eq!(emu.stream_fault(StreamFault::Drop { connection: None }), 1);
    let end = loop {
        match c.line().await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert!(end.is_err(), "an abrupt drop, not a clean end: {end:?}");
    wait_for(10, || {
        (emu.connections()[0].end_reason.as_deref() == Some("dropped")).then_some(())
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test]
async fn stall_fault_stops_everything_including_heartbeats() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let base = emu.base_url();
    let mut c = Conn::connect(&base, "").await;
    emu.emit(fixture("stream/favorite.json"));
    c.event().await;
    let r: Value = client()
        .post(format!("{base}/admin/faults"))
        .json(&json!({"action": "stall"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["applied"][0]["affected"], 1);
    wait_for(10, || emu.connections()[0].stalled.then_some(())).await;
    let before = emu.connections()[0].clone();
    emu.emit(fixture("stream/tweet_create.json"));
    tokio::time::sleep(Duration::from_millis(300)).await; // ten heartbeat periods
    let after = emu.connections()[0].clone();
    assert_eq!(after.heartbeats_sent, before.heartbeats_sent);
    assert_eq!(after.lines_sent, 1);
    emu.stream_fault(StreamFault::Drop {
        connection: Some(after.id),
    });
    while let Ok(Some(l)) = c.line().await {
        assert!(l.is_empty(), "nothing but earlier heartbeats: {l}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn operational_disconnect_sends_error_then_closes() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let mut c = Conn::connect(&emu.base_url(), "").await;
    emu.stream_fault(StreamFault::OperationalDisconnect { connection: None });
    let mut last = String::new();
    while let Some(l) = c.line().await.unwrap() {
        if !l.is_empty() {
            last = l;
        }
    }
    let v: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["errors"][0]["title"], "operational-disconnect");
    wait_for(10, || {
        (emu.connections()[0].end_reason.as_deref() == Some("operational_disconnect")).then_some(())
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test]
async fn refusals_503_429_and_connection_limit() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let base = emu.base_url();
    emu.stream_fault(StreamFault::Unavailable { count: 2 });
    emu.stream_fault(StreamFault::RateLimit {
        count: 1,
        reset_secs: Some(30),
    });
    let mut statuses = Vec::new();
    let mut reset = None;
    let before = chrono::Utc::now().timestamp();
    for _ in 0..3 {
        let r = Conn::open(&base, "").await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            reset = r
                .headers()
                .get("x-rate-limit-reset")
                .map(|v| v.to_str().unwrap().parse::<i64>().unwrap());
        }
    }
    assert_eq!(statuses, [503, 503, 429]);
    let after = chrono::Utc::now().timestamp();
    let reset = reset.expect("x-rate-limit-reset");
    assert!((before + 30..=after + 30).contains(&reset), "{reset}");

    // At most 2 connections.
    let c1 = Conn::connect(&base, "").await;
    let _c2 = Conn::connect(&base, "").await;
    let r = Conn::open(&base, "").await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["connection_issue"], "TooManyConnections");
    drop(c1);
    wait_for(10, || {
        let n = emu
            .connections()
            .iter()
            .filter(|c| c.outcome == "connected" && c.ended_at.is_none())
            .count();
        (n == 1).then_some(())
    })
    .await;
    let _c3 = Conn::connect(&base, "").await;
    let outcomes: Vec<String> = emu
        .connections()
        .iter()
        .map(|c| c.outcome.clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            "unavailable",
            "unavailable",
            "rate_limited",
            "connected",
            "connected",
            "too_many_connections",
            "connected"
        ]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn configured_faults_apply_to_each_connection() {
    let mut c = cfg();
    c.stream.faults = StreamFaults {
        drop_after_lines: Some(1),
        fail_503: 1,
        ..StreamFaults::default()
    };
    let emu = Emulator::start(c).await.unwrap();
    let base = emu.base_url();
    assert_eq!(Conn::open(&base, "").await.status(), 503);
    let mut conn = Conn::connect(&base, "").await;
    emu.emit(fixture("stream/favorite.json"));
    emu.emit(fixture("stream/tweet_create.json"));
    assert_eq!(conn.event().await["event_type"], "favorite_events");
    let end = loop {
        match conn.line().await {
            Ok(Some(l)) => assert!(l.is_empty(), "only one line: {l}"),
            other => break other,
        }
    };
    assert!(end.is_err());
    // Cleared over HTTP: the next connection gets both lines.
    let r = client()
        .post(format!("{base}/admin/faults"))
        .json(&json!({"action": "clear"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut conn = Conn::connect(&base, "").await;
    emu.emit(fixture("stream/favorite.json"));
    emu.emit(fixture("stream/tweet_create.json"));
    conn.event().await;
    assert_eq!(conn.event().await["event_type"], "tweet_create_events");
    emu.shutdown().await;
}

#[tokio::test]
async fn start_and_end_time_replay_a_past_window_then_close() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let now = chrono::Utc::now();
    for (minutes, id) in [(60, "before"), (30, "inside"), (10, "after")] {
        let mut e = fixture("stream/tweet_create.json");
        e["tweet_create_events"][0]["id"] = json!(id);
        emu.emit_at(e, now - chrono::Duration::minutes(minutes));
    }
    let fmt = |m: i64| {
        (now - chrono::Duration::minutes(m)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let q = format!("?start_time={}&end_time={}", fmt(40), fmt(20));
    let mut c = Conn::connect(&emu.base_url(), &q).await;
    assert_eq!(c.event().await["tweet_create_events"][0]["id"], "inside");
    // The window is over: the stream closes cleanly.
    while let Some(l) = c.line().await.unwrap() {
        assert!(l.is_empty(), "{l}");
    }
    wait_for(10, || {
        (emu.connections()[0].end_reason.as_deref() == Some("end_time")).then_some(())
    })
    .await;
    let r = Conn::open(&emu.base_url(), &format!("?start_time={}", fmt(60 * 25))).await;
    assert_eq!(r.status(), 400);
    emu.shutdown().await;
}
