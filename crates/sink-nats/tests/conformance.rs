//! The sink conformance suite (`relay_testkit::conformance`) against a real NATS
//! JetStream server: each configuration has its own stream `T_<u>` capturing `t<u>.>`.

use std::time::Duration;

use async_nats::jetstream;
use relay_sink::{HeaderStyle, Message, Template, WireMode};
use relay_sink_nats::{NatsSinkConfig, NatsSinkType};
use relay_testkit::conformance::{Harness, Received};
use relay_testkit::nats_url;

mod common;

struct Nats {
    js: jetstream::Context,
}

impl Nats {
    async fn new() -> Nats {
        let client = async_nats::connect(nats_url()).await.unwrap();
        Nats {
            js: jetstream::new(client),
        }
    }
}

/// `t<u>.{subject}.{type}` → `T_<u>`.
fn stream_of(cfg: &NatsSinkConfig) -> String {
    let prefix = cfg.subject.split('.').next().unwrap_or_default();
    format!("T_{}", prefix.strip_prefix('t').unwrap_or(prefix))
}

impl Harness for Nats {
    type Type = NatsSinkType;
    const STYLE: HeaderStyle = HeaderStyle::Nats;

    async fn config(&self, mode: WireMode, max_in_flight: usize) -> NatsSinkConfig {
        let (prefix, _) = common::create_stream(&self.js).await;
        let mut cfg = NatsSinkConfig::new(nats_url());
        cfg.subject = format!("{prefix}.{{subject}}.{{type}}");
        cfg.deadletter_subject = format!("{prefix}.deadletter");
        cfg.ack_timeout = Duration::from_secs(3);
        cfg.connect_timeout = Duration::from_secs(5);
        cfg.wire_mode = mode;
        cfg.max_in_flight = max_in_flight;
        cfg
    }

    fn unreachable(&self) -> NatsSinkConfig {
        let mut cfg =
            NatsSinkConfig::new(format!("nats://127.0.0.1:{}", relay_testkit::free_port()));
        cfg.connect_timeout = Duration::from_secs(2);
        cfg
    }

    fn destination(&self, cfg: &NatsSinkConfig, message: &Message) -> String {
        match &message.payload {
            relay_sink::Payload::Event(e) => Template::parse(&cfg.subject).unwrap().render(e),
            relay_sink::Payload::DeadLetter(_) => cfg.deadletter_subject.clone(),
        }
    }

    async fn read(&self, cfg: &NatsSinkConfig, n: usize) -> Vec<Received> {
        common::consume(&self.js, &stream_of(cfg), n)
            .await
            .into_iter()
            .map(|m| {
                let headers: Vec<(String, String)> = m
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .flat_map(|(k, vs)| {
                        vs.iter().map(move |v| {
                            (AsRef::<str>::as_ref(k).to_owned(), v.as_str().to_owned())
                        })
                    })
                    .collect();
                let find = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                Received {
                    destination: m.subject.to_string(),
                    id: find("Nats-Msg-Id").unwrap_or_default(),
                    content_type: find("Content-Type"),
                    body: m.payload.clone(),
                    headers,
                    properties: Vec::new(),
                }
            })
            .collect()
    }

    async fn clean(&self, cfg: &NatsSinkConfig) {
        let _ = self.js.delete_stream(stream_of(cfg)).await;
    }
}

relay_testkit::conformance_tests!(Nats::new);
