//! A small axum receiver acting as the relay's webhook: answers CRC correctly or not,
//! records signed POSTs and verifies their signatures.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub use relay_testkit::hmac_b64;

#[derive(Clone, Debug)]
pub enum Crc {
    Correct,
    WrongToken,
    Status(u16),
    Redirect,
    SlowMs(u64),
}

#[derive(Clone, Debug)]
pub struct Post {
    pub body: Bytes,
    pub json: serde_json::Value,
    pub signature: Option<String>,
    pub signature_valid: bool,
    pub answered: u16,
}

pub struct Inner {
    pub secret: String,
    pub crc: Crc,
    pub crc_requests: Vec<std::collections::HashMap<String, String>>,
    pub statuses: VecDeque<u16>,
    pub posts: Vec<Post>,
    pub post_delay_ms: u64,
    pub slow_posts: u32,
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Clone)]
pub struct Receiver {
    pub inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

async fn crc(
    State(r): State<Arc<Mutex<Inner>>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let (mode, secret) = {
        let mut g = r.lock().unwrap();
        g.crc_requests.push(q.clone());
        (g.crc.clone(), g.secret.clone())
    };
    let token = q.get("crc_token").cloned().unwrap_or_default();
    let good = format!("sha256={}", hmac_b64(&secret, token.as_bytes()));
    match mode {
        Crc::Correct => Json(serde_json::json!({"response_token": good})).into_response(),
        Crc::WrongToken => {
            Json(serde_json::json!({"response_token": "sha256=AAAA"})).into_response()
        }
        Crc::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Crc::Redirect => {
            (StatusCode::FOUND, [("location", "http://example.invalid/")]).into_response()
        }
        Crc::SlowMs(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Json(serde_json::json!({"response_token": good})).into_response()
        }
    }
}

async fn post(State(r): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let (delay, gate) = {
        let mut g = r.lock().unwrap();
        let delay = if g.slow_posts > 0 {
            g.slow_posts -= 1;
            g.post_delay_ms
        } else {
            0
        };
        (delay, g.gate.clone())
    };
    if let Some(gate) = gate {
        let _ = gate.acquire().await.unwrap();
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut g = r.lock().unwrap();
    let sig = headers
        .get("x-twitter-webhooks-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let expected = format!("sha256={}", hmac_b64(&g.secret, &body));
    let valid = sig.as_deref() == Some(expected.as_str());
    let status = if valid {
        g.statuses.pop_front().unwrap_or(200)
    } else {
        401
    };
    g.posts.push(Post {
        json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        body,
        signature: sig,
        signature_valid: valid,
        answered: status,
    });
    StatusCode::from_u16(status).unwrap().into_response()
}

impl Receiver {
    pub async fn start(secret: &str, crc_mode: Crc) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            secret: secret.to_owned(),
            crc: crc_mode,
            crc_requests: Vec::new(),
            statuses: VecDeque::new(),
            posts: Vec::new(),
            post_delay_ms: 0,
            slow_posts: 0,
            gate: None,
        }));
        let app = Router::new()
            .route("/webhooks/{app}", get(crc).post(post))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { inner, addr }
    }

    pub fn url(&self, app: &str) -> String {
        format!("http://{}/webhooks/{app}", self.addr)
    }
    pub fn set_crc(&self, mode: Crc) {
        self.inner.lock().unwrap().crc = mode;
    }
    pub fn script(&self, statuses: &[u16]) {
        self.inner
            .lock()
            .unwrap()
            .statuses
            .extend(statuses.iter().copied());
    }
    /// The next `n` POSTs are answered after `ms`.
    pub fn slow_next(&self, n: u32, ms: u64) {
        let mut g = self.inner.lock().unwrap();
        g.post_delay_ms = ms;
        g.slow_posts = n;
    }
    /// Holds every POST until `open_gate`.
    pub fn close_gate(&self) -> Arc<tokio::sync::Semaphore> {
        let s = Arc::new(tokio::sync::Semaphore::new(0));
        self.inner.lock().unwrap().gate = Some(Arc::clone(&s));
        s
    }
    pub fn open_gate(&self, gate: &tokio::sync::Semaphore) {
        gate.add_permits(1_000_000);
    }
    pub fn posts(&self) -> Vec<Post> {
        self.inner.lock().unwrap().posts.clone()
    }
    pub fn crc_count(&self) -> usize {
        self.inner.lock().unwrap().crc_requests.len()
    }
}

/// Polls `f` until it returns `Some` (fails the test after `secs` seconds).
pub async fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const SECRET: &str = "emulator-consumer-secret";
pub const BEARER: &str = "emulator-bearer";

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn register(base: &str, url: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/2/webhooks"))
        .bearer_auth(BEARER)
        .json(&serde_json::json!({"url": url}))
        .send()
        .await
        .unwrap()
}

pub fn fixtures() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    assert!(
        p.is_dir(),
        "the repository's fixtures are missing: {}",
        p.display()
    );
    p
}
