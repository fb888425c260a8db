//! `relay-testkit`: what activity-relay's tests share (the end-to-end tests in `tests/` and
//! the crates' own integration tests and benches):
//!
//! * [`TcpProxy`]: a TCP proxy in front of a broker that a test can cut (every connection
//!   dropped, new ones refused) and restore, to simulate an outage.
//! * [`nats_url`], [`amqp_url`], [`kafka_bootstrap`]: the test brokers (`scripts/brokers`).
//! * [`unique`]: a random-enough suffix for stream, subject, exchange and queue names, so
//!   tests run in parallel and repeat against the same brokers.
//! * [`fixtures`]: envelopes of many types built from `fixtures/`, as sink
//!   [`Message`](relay_sink::Message)s.
//!
//! These are test helpers: they panic (with a message) where a test should fail anyway.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub mod bench;
pub mod conformance;
pub mod fixtures;

/// `RELAY_TEST_NATS_URL`, default `nats://127.0.0.1:4222`.
pub fn nats_url() -> String {
    std::env::var("RELAY_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The socket address of the first server of [`nats_url`] (for a [`TcpProxy`] in front of it).
pub fn nats_addr() -> SocketAddr {
    use std::net::ToSocketAddrs as _;
    let url = nats_url();
    let hostport = url
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("nats://")
        .to_string();
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("NATS address {hostport:?} does not resolve"))
}

/// `RELAY_TEST_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`.
pub fn amqp_url() -> String {
    std::env::var("RELAY_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// `RELAY_TEST_KAFKA_BOOTSTRAP`, if set (`scripts/brokers` starts tansu and sets it).
pub fn kafka_bootstrap() -> Option<String> {
    std::env::var("RELAY_TEST_KAFKA_BOOTSTRAP").ok()
}

/// `RELAY_TEST_KAFKA_BOOTSTRAP`, for the tests that need Kafka: panics with what to do
/// when it is not set.
pub fn require_kafka() -> String {
    match kafka_bootstrap() {
        Some(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "RELAY_TEST_KAFKA_BOOTSTRAP is not set: run `source scripts/brokers` first \
             (it starts tansu, the Kafka-protocol test broker, and sets it), or use scripts/test"
        ),
    }
}

/// Deletes the key-value buckets a fleet (`[cluster]`, `namespace`) made in the NATS of
/// `store`; nothing to do for a Redis store, whose keys expire on their own.
pub async fn delete_fleet_buckets(store: &str, namespace: &str) {
    if !store.starts_with("nats://") {
        return;
    }
    let Ok(client) = async_nats::connect(store).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    for what in ["claims", "jobs"] {
        let _ = js.delete_key_value(format!("{namespace}-{what}")).await;
    }
}

/// base64(HMAC-SHA256(`key`, `msg`)): X's signature and CRC response without the prefix.
pub fn hmac_b64(key: &str, msg: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// X's signature of a webhook body: `sha256=` + base64(HMAC-SHA256(consumer secret, body)).
pub fn x_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_b64(secret, body))
}

/// A port that was free a moment ago (bound, then released): for an address nothing
/// listens on, or for a process that binds it next (which something else could take in
/// between: prefer binding port 0 and reporting the address, as the relay's
/// `--listen-file` does).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A lowercase alphanumeric suffix unique within this process and very likely across
/// processes (time, pid and a counter mixed), e.g. `k3f9q0c1z8`.
pub fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 over the mix, so consecutive calls differ in every digit.
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(13);
    while x > 0 {
        out.push(DIGITS[(x % 36) as usize] as char);
        x /= 36;
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, for outage tests.
///
/// * [`TcpProxy::cut`]: every proxied connection is closed and the listening socket is
///   closed too, so new connections are refused (`ECONNREFUSED`), as when a broker is down.
/// * [`TcpProxy::restore`]: listens again on the same address and proxies new connections.
/// * [`TcpProxy::stall`] / [`TcpProxy::unstall`]: connections stay open but no byte moves
///   in either direction (a network partition without resets); held bytes flow on unstall.
///
/// Dropping the proxy stops it (connections included).
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stalled: tokio::sync::watch::Sender<bool>,
    running: Mutex<Option<Running>>,
}

struct Running {
    accept: JoinHandle<()>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TcpProxy {
    /// Starts a proxy on `127.0.0.1:0` to `upstream`. Panics if it cannot listen.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        match TcpProxy::try_start(upstream).await {
            Ok(p) => p,
            Err(e) => panic!("TcpProxy: cannot listen on 127.0.0.1:0: {e}"),
        }
    }

    /// [`TcpProxy::start`] that returns the error instead of panicking.
    pub async fn try_start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let proxy = TcpProxy {
            addr,
            upstream,
            accepted: Arc::new(AtomicUsize::new(0)),
            stalled: tokio::sync::watch::channel(false).0,
            running: Mutex::new(None),
        };
        proxy.run(listener);
        Ok(proxy)
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxied address.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// How many client connections were accepted so far (reconnections show up here).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops moving bytes on every connection (open ones and new ones), without closing
    /// anything: peers see silence, as in a network partition.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Moves bytes again (what was held is delivered).
    pub fn unstall(&self) {
        self.stalled.send_replace(false);
    }

    /// Whether the proxy is currently cut.
    pub fn is_cut(&self) -> bool {
        lock(&self.running).is_none()
    }

    /// Closes every proxied connection and stops listening, so new connections are
    /// refused. When this returns, no socket of the proxy is open any more.
    pub async fn cut(&self) {
        let running = lock(&self.running).take();
        let Some(running) = running else {
            return;
        };
        running.accept.abort();
        // Resolves once the task has been dropped, and with it the listener.
        let _ = running.accept.await;
        let mut conns = std::mem::take(&mut *lock(&running.conns));
        conns.shutdown().await;
    }

    /// Listens again on the same address. Panics if the address cannot be bound again.
    pub async fn restore(&self) {
        if let Err(e) = self.try_restore().await {
            panic!("TcpProxy: cannot listen again on {}: {e}", self.addr);
        }
    }

    /// [`TcpProxy::restore`] that returns the error instead of panicking.
    pub async fn try_restore(&self) -> std::io::Result<()> {
        if !self.is_cut() {
            return Ok(());
        }
        // The port was ours a moment ago; tokio listeners set SO_REUSEADDR, so the closed
        // connections' TIME_WAIT entries do not block it. Retry briefly in case the kernel
        // still holds the old socket.
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.run(listener);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
    }

    fn run(&self, listener: TcpListener) {
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn(accept_loop(
            listener,
            self.upstream,
            Arc::clone(&conns),
            Arc::clone(&self.accepted),
            self.stalled.subscribe(),
        ));
        *lock(&self.running) = Some(Running { accept, conns });
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    conns: Arc<Mutex<JoinSet<()>>>,
    accepted: Arc<AtomicUsize>,
    stalled: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // EMFILE and the like: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        let mut set = lock(&conns);
        // Reap finished connections so the set does not grow without bound.
        while set.try_join_next().is_some() {}
        set.spawn(proxy_connection(client, upstream, stalled.clone()));
    }
}

async fn proxy_connection(
    client: TcpStream,
    upstream: SocketAddr,
    stalled: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Either direction ending (EOF or error) ends the connection.
    tokio::select! {
        _ = pump(cr, sw, stalled.clone()) => {}
        _ = pump(sr, cw, stalled) => {}
    }
}

/// Copies `from` to `to`, holding bytes while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.running).take() {
            running.accept.abort();
            // Dropping the JoinSet aborts every connection task.
            drop(std::mem::take(&mut *lock(&running.conns)));
        }
    }
}

/// Waits until a relay started with `run --listen-file <path>` has written the file, and
/// returns the addresses it bound: admin, and the webhook's if it has one. Configured with
/// `listen = "127.0.0.1:0"`, the relay picks its own ports, so no test chooses a port that
/// something else takes before the relay binds it. Bounded (60 s, a guard against a hang,
/// not a speed); panics with `log`'s text if the process exits first.
pub async fn wait_listening(
    child: &mut std::process::Child,
    path: &std::path::Path,
    log: &std::path::Path,
) -> (SocketAddr, Option<SocketAddr>) {
    let guard = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "activity-relay exited at start ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let read = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if let Some(v) = read {
            let addr = |k: &str| v.get(k)?.as_str()?.parse::<SocketAddr>().ok();
            if let Some(admin) = addr("admin") {
                return (admin, addr("webhook"));
            }
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "activity-relay wrote no {} within 60 s:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn proxies_cuts_and_restores() {
        let upstream = echo_server().await;
        let proxy = TcpProxy::start(upstream).await;
        assert_eq!(proxy.upstream(), upstream);

        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"hello").await, b"hello");
        assert_eq!(proxy.accepted(), 1);

        proxy.cut().await;
        assert!(proxy.is_cut());
        // The open connection is closed: a read sees EOF or a reset.
        let mut buf = [0u8; 8];
        let r = c.read(&mut buf).await;
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "connection survived the cut: {r:?}"
        );
        // New connections are refused.
        let refused = TcpStream::connect(proxy.addr()).await;
        assert!(refused.is_err(), "connect succeeded while cut");

        proxy.restore().await;
        assert!(!proxy.is_cut());
        let mut c2 = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c2, b"again").await, b"again");
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test]
    async fn stall_holds_bytes_until_unstall() {
        let upstream = echo_server().await;
        let proxy = TcpProxy::start(upstream).await;
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"one").await, b"one");

        proxy.stall();
        c.write_all(b"two").await.unwrap();
        let mut buf = [0u8; 3];
        // Nothing comes back while stalled (bounded look: 300 ms).
        let r = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            c.read_exact(&mut buf),
        )
        .await;
        assert!(r.is_err(), "bytes moved while stalled");

        proxy.unstall();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"two");
    }

    #[test]
    fn unique_differs() {
        let a = unique();
        let b = unique();
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }
}
