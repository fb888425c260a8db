//! Helpers shared by the webhook test files: a recording `Pipeline`, a bound server and
//! its metrics.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use relay_envelope::Context;
use relay_ingress::webhook::{AppConfig, WebhookConfig, WebhookServer};
use relay_ingress::{AcceptError, AcceptReport, Pipeline};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");
pub const SIG: &str = "x-twitter-webhooks-signature";

#[derive(Clone, Debug)]
pub enum Mode {
    Ok,
    Full(Duration),
    Unavailable,
}

#[derive(Default)]
pub struct Recorder {
    pub got: Mutex<Vec<(Bytes, Context)>>,
    pub mode: Mutex<Option<Mode>>,
    /// When set, `accept` waits for it before answering.
    pub gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Signalled whenever `accept` is entered.
    pub entered: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Pipeline for Recorder {
    async fn accept(&self, body: Bytes, ctx: Context) -> Result<AcceptReport, AcceptError> {
        self.entered.notify_one();
        let gate = self.gate.lock().clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await;
        }
        let mode = self.mode.lock().clone().unwrap_or(Mode::Ok);
        match mode {
            Mode::Ok => {
                self.got.lock().push((body, ctx));
                Ok(AcceptReport {
                    spooled: 1,
                    ..Default::default()
                })
            }
            Mode::Full(retry_after) => Err(AcceptError::Full { retry_after }),
            Mode::Unavailable => Err(AcceptError::Unavailable("disk failed".into())),
        }
    }
}

pub use relay_testkit::hmac_b64;

pub fn app(name: &str, secrets: &[&str]) -> AppConfig {
    AppConfig {
        name: name.into(),
        consumer_secrets: secrets.iter().map(|s| (*s).into()).collect(),
        source: None,
        formats: relay_envelope::Formats::ALL,
    }
}

pub fn config(apps: Vec<AppConfig>) -> WebhookConfig {
    let mut cfg = WebhookConfig::new(apps);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg
}

pub struct Running {
    pub base: String,
    pub registry: prometheus::Registry,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), relay_ingress::IngressError>>,
    pub client: reqwest::Client,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, app: &str, body: &[u8], sig: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(&format!("/webhooks/{app}")))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = sig {
            req = req.header(SIG, sig);
        }
        req.send().await.unwrap()
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.registry, name, labels)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

pub fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for fam in registry.gather() {
        if fam.name() != name {
            continue;
        }
        for m in fam.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if matches {
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

pub async fn start(cfg: WebhookConfig, pipeline: Arc<dyn Pipeline>) -> Running {
    start_with(cfg, relay_ingress::Acceptance::default(), pipeline).await
}

/// [`start`], recording the webhook's acceptance in `acceptance`.
pub async fn start_with(
    cfg: WebhookConfig,
    acceptance: relay_ingress::Acceptance,
    pipeline: Arc<dyn Pipeline>,
) -> Running {
    let registry = prometheus::Registry::new();
    let server = WebhookServer::bind_with(cfg, acceptance, pipeline, &registry)
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    Running {
        base: format!("http://{addr}"),
        registry,
        shutdown,
        task,
        client: reqwest::Client::new(),
    }
}

pub async fn start_default() -> (Running, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let cfg = config(vec![
        app("prod", &["current-secret", "old-secret"]),
        app("other", &["other-secret"]),
    ]);
    (start(cfg, rec.clone()).await, rec)
}

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap()
}
