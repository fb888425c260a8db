//! The sink conformance suite (`relay_testkit::conformance`) against a real RabbitMQ:
//! each configuration has its own topic exchange and an exclusive queue bound with `#`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lapin::options::{BasicGetOptions, ExchangeDeleteOptions};
use lapin::types::AMQPValue;
use lapin::{Channel, Connection, ConnectionProperties};
use relay_sink::{HeaderStyle, Message, Payload, Template, WireMode};
use relay_sink_rabbitmq::{RabbitMqSinkConfig, RabbitMqSinkType};
use relay_testkit::amqp_url;
use relay_testkit::conformance::{Harness, Received};

mod common;

struct Rabbit {
    _conn: Connection,
    ch: Channel,
    /// Exchange → its queue.
    queues: Mutex<HashMap<String, String>>,
}

impl Rabbit {
    async fn new() -> Rabbit {
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        Rabbit {
            _conn: conn,
            ch,
            queues: Mutex::new(HashMap::new()),
        }
    }
}

fn text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => format!("{other:?}"),
    }
}

impl Harness for Rabbit {
    type Type = RabbitMqSinkType;
    const STYLE: HeaderStyle = HeaderStyle::Amqp;

    async fn config(&self, mode: WireMode, max_in_flight: usize) -> RabbitMqSinkConfig {
        let (exchange, queue) = common::declare(&self.ch, true).await;
        self.queues.lock().unwrap().insert(exchange.clone(), queue);
        let mut cfg = RabbitMqSinkConfig::new(amqp_url());
        cfg.exchange = exchange;
        cfg.wire_mode = mode;
        cfg.max_in_flight = max_in_flight;
        cfg.confirm_timeout = Duration::from_secs(5);
        cfg.connect_timeout = Duration::from_secs(5);
        cfg
    }

    fn unreachable(&self) -> RabbitMqSinkConfig {
        let mut cfg = RabbitMqSinkConfig::new(format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f",
            relay_testkit::free_port()
        ));
        cfg.connect_timeout = Duration::from_secs(2);
        cfg
    }

    fn destination(&self, cfg: &RabbitMqSinkConfig, message: &Message) -> String {
        match &message.payload {
            Payload::Event(e) => Template::parse(&cfg.routing_key).unwrap().render(e),
            Payload::DeadLetter(_) => cfg.deadletter_routing_key.clone(),
        }
    }

    /// Confirmed publishes are enqueued already: reads until the first empty `basic.get`.
    async fn read(&self, cfg: &RabbitMqSinkConfig, _n: usize) -> Vec<Received> {
        let queue = self.queues.lock().unwrap()[&cfg.exchange].clone();
        let mut out = Vec::new();
        while let Some(m) = self
            .ch
            .basic_get(&queue, BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let d = m.delivery;
            let p = &d.properties;
            let headers: Vec<(String, String)> = p
                .headers()
                .as_ref()
                .map(|h| {
                    h.inner()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), text(v)))
                        .collect()
                })
                .unwrap_or_default();
            let mut properties = vec![("exchange", d.exchange.as_str().to_owned())];
            let mut add = |name: &'static str, v: Option<String>| {
                if let Some(v) = v {
                    properties.push((name, v));
                }
            };
            add("delivery_mode", p.delivery_mode().map(|m| m.to_string()));
            add("type", p.kind().as_ref().map(|k| k.as_str().to_owned()));
            add("timestamp", p.timestamp().map(|t| t.to_string()));
            out.push(Received {
                destination: d.routing_key.as_str().to_owned(),
                id: p
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                body: d.data.into(),
                content_type: p.content_type().as_ref().map(|s| s.as_str().to_owned()),
                headers,
                properties,
            });
        }
        out
    }

    /// Persistent, on the sink's exchange; an event's AMQP `type` and `timestamp` are its
    /// type and time.
    fn check_record(&self, _mode: WireMode, message: &Message, r: &Received) {
        assert_eq!(r.property("delivery_mode"), Some("2"), "persistent");
        assert!(r
            .property("exchange")
            .is_some_and(|x| x.starts_with("test.x.")));
        if let Payload::Event(e) = &message.payload {
            assert_eq!(r.property("type"), Some(e.event_type.as_str()));
            assert_eq!(
                r.property("timestamp"),
                Some(e.time.timestamp().to_string().as_str())
            );
        }
    }

    async fn clean(&self, cfg: &RabbitMqSinkConfig) {
        let _ = self
            .ch
            .exchange_delete(&cfg.exchange, ExchangeDeleteOptions::default())
            .await;
    }
}

relay_testkit::conformance_tests!(Rabbit::new);
