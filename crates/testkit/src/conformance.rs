//! One conformance suite that every sink type runs against its real broker (as Vector's
//! sinks share theirs): what the relay relies on from any [`Sink`], checked the same way
//! for each.
//!
//! A sink crate implements [`Harness`] (a configuration with a destination of its own, and
//! a reader of what reached the broker) in `tests/conformance.rs` and calls
//! [`conformance_tests!`](crate::conformance_tests), which writes one test per check:
//!
//! * `every_type_once`: every fixture type and a dead letter, structured mode: each
//!   confirmed, each read back once, at the destination its template renders, with the
//!   spooled JSON as its body;
//! * `binary_mode`: the body is what [`encode`] makes of it and every header `encode`
//!   gives is on the message;
//! * `confirmations_in_batch_order`: with at most two in flight, every record is
//!   confirmed and (for a broker that keeps one order) stored in batch order;
//! * `a_batch_sent_twice`: confirmed twice, each record stored once or twice (at least
//!   once, never lost);
//! * `unreachable_is_an_error`: connecting to nothing fails, within a bound;
//! * `check_and_describe`: `check` accepts the configuration and names the type, the
//!   AsyncAPI server carries the template, an empty batch is an empty answer, `close`
//!   succeeds.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use relay_sink::registry::SinkType;
use relay_sink::{encode, HeaderStyle, Message, Payload, Sink, WireMode};

use crate::fixtures;

/// A record as the broker holds it, read back by a [`Harness`].
#[derive(Clone, Debug)]
pub struct Received {
    /// Topic, subject, routing key or file: where it was stored.
    pub destination: String,
    /// The record's id as the broker carries it (`Nats-Msg-Id`, AMQP `message_id`, the
    /// `ce_id` header or the body's `id`).
    pub id: String,
    pub body: Bytes,
    /// The content type (a header or a message property, as the broker has it).
    pub content_type: Option<String>,
    /// Every header, as the broker delivers it.
    pub headers: Vec<(String, String)>,
    /// The broker's own properties of the message, for [`Harness::check_record`] (a Kafka
    /// key, an AMQP delivery mode), as text.
    pub properties: Vec<(&'static str, String)>,
}

impl Received {
    /// The value of header `name` (ASCII case ignored).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of broker property `name`.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a sink type gives the suite.
pub trait Harness: Send + Sync {
    type Type: SinkType;
    /// The names of its headers ([`encode`]'s style).
    const STYLE: HeaderStyle;
    /// Whether the broker keeps one order for what one batch sends (false for Kafka,
    /// whose order is per partition).
    const ORDERED: bool = true;

    /// A configuration publishing to destinations of its own (fresh at each call), in
    /// `mode`, with at most `max_in_flight` sends awaiting confirmation where the sink has
    /// such a bound.
    fn config(
        &self,
        mode: WireMode,
        max_in_flight: usize,
    ) -> impl Future<Output = <Self::Type as SinkType>::Config> + Send;

    /// A configuration whose broker address has nothing listening.
    fn unreachable(&self) -> <Self::Type as SinkType>::Config;

    /// Where `cfg` sends `message` (the rendered topic, subject or routing key).
    fn destination(&self, cfg: &<Self::Type as SinkType>::Config, message: &Message) -> String;

    /// What reached the broker at `cfg`'s destinations, in the broker's order, waiting
    /// (bounded) until there are `n`.
    fn read(
        &self,
        cfg: &<Self::Type as SinkType>::Config,
        n: usize,
    ) -> impl Future<Output = Vec<Received>> + Send;

    /// The broker's own checks of one record (properties the suite cannot know).
    fn check_record(&self, _mode: WireMode, _message: &Message, _received: &Received) {}

    /// Removes what `config` created.
    fn clean(&self, _cfg: &<Self::Type as SinkType>::Config) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The fixtures (every type) and one dead letter.
pub fn batch() -> Vec<Message> {
    let mut msgs = fixtures::messages();
    let n = msgs.len() as u64;
    msgs.push(fixtures::dead_letter(n, b"{not json", "body is not JSON"));
    msgs
}

async fn connect<H: Harness>(cfg: &<H::Type as SinkType>::Config) -> <H::Type as SinkType>::Sink {
    match <H::Type as SinkType>::connect("conformance", cfg).await {
        Ok(s) => s,
        Err(e) => panic!("{} sink does not connect: {e}", H::Type::TYPE),
    }
}

fn assert_all_confirmed(msgs: &[Message], results: &[Result<(), relay_sink::PublishError>]) {
    assert_eq!(results.len(), msgs.len(), "one result per record");
    for (m, r) in msgs.iter().zip(results) {
        assert!(r.is_ok(), "{}: {r:?}", m.id());
    }
}

/// Records by id; a record read twice shows as two.
fn by_id(got: &[Received]) -> HashMap<&str, Vec<&Received>> {
    let mut out: HashMap<&str, Vec<&Received>> = HashMap::new();
    for r in got {
        out.entry(r.id.as_str()).or_default().push(r);
    }
    out
}

/// Publishes [`batch`] in `mode` and checks each record once at its destination; returns
/// nothing but fails on the first difference.
async fn publish_and_read_once<H: Harness>(h: &H, mode: WireMode) {
    let cfg = h.config(mode, 256).await;
    let sink = connect::<H>(&cfg).await;
    assert!(sink.ready().await, "ready after connect");
    let msgs = batch();
    let types: std::collections::HashSet<&str> = msgs
        .iter()
        .filter_map(|m| match &m.payload {
            Payload::Event(e) => Some(e.event_type.as_str()),
            Payload::DeadLetter(_) => None,
        })
        .collect();
    assert!(types.len() >= 20, "too few types: {types:?}");
    assert_all_confirmed(&msgs, &sink.publish(&msgs).await);
    let got = h.read(&cfg, msgs.len()).await;
    assert_eq!(got.len(), msgs.len(), "records stored");
    let ids = by_id(&got);
    let dead_letter_destination = msgs
        .iter()
        .find(|m| m.is_dead_letter())
        .map(|m| h.destination(&cfg, m));
    for m in &msgs {
        let Some(rs) = ids.get(m.id()) else {
            panic!("{} was confirmed but is not at the broker", m.id());
        };
        assert_eq!(rs.len(), 1, "{} stored {} times", m.id(), rs.len());
        let r = rs[0];
        assert_eq!(
            r.destination,
            h.destination(&cfg, m),
            "destination of {}",
            m.id()
        );
        if !m.is_dead_letter() {
            assert_ne!(
                Some(&r.destination),
                dead_letter_destination.as_ref(),
                "an event at the dead-letter destination"
            );
        }
        let encoded = encode(m, mode, H::STYLE);
        assert_eq!(r.body, encoded.body, "body of {}", m.id());
        if mode == WireMode::Structured {
            assert_eq!(r.body, m.json, "structured: the spooled JSON, untouched");
        }
        assert_eq!(
            r.content_type.as_deref(),
            Some(encoded.content_type),
            "content type of {}",
            m.id()
        );
        for (name, value) in &encoded.headers {
            assert_eq!(
                r.header(name),
                Some(value.as_str()),
                "header {name} of {}",
                m.id()
            );
        }
        if let Payload::Event(e) = &m.payload {
            check_event_attributes(mode, e, &m.json, r, H::STYLE.prefix());
        }
        h.check_record(mode, m, r);
    }
    sink.close().await.expect("close");
    h.clean(&cfg).await;
}

/// What an event's record carries, written out rather than taken from [`encode`]: in
/// binary mode the body is `data` and the attributes are headers with the binding's
/// prefix; in structured mode there is no attribute header (an SDK would take the message
/// for binary mode).
fn check_event_attributes(
    mode: WireMode,
    e: &relay_envelope::Envelope,
    json: &[u8],
    r: &Received,
    prefix: &str,
) {
    let attr = |name: &str| r.header(&format!("{prefix}{name}"));
    match mode {
        WireMode::Structured => {
            let attrs: Vec<&(String, String)> = r
                .headers
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .collect();
            assert!(
                attrs.is_empty(),
                "structured {} has attribute headers {attrs:?}",
                e.id
            );
        }
        WireMode::Binary => {
            let whole: serde_json::Value = serde_json::from_slice(json).expect("spooled JSON");
            let body: serde_json::Value =
                serde_json::from_slice(&r.body).expect("a binary body is JSON data");
            assert_eq!(body, whole["data"], "binary body of {} is its data", e.id);
            assert_eq!(attr("specversion"), Some("1.0"));
            assert_eq!(attr("id"), Some(e.id.as_str()));
            assert_eq!(attr("type"), Some(e.event_type.as_str()));
            assert_eq!(attr("subject"), Some(e.subject.as_str()));
            assert_eq!(attr("actorid"), e.actorid.as_deref());
            assert_eq!(attr("objectid"), e.objectid.as_deref());
            assert_eq!(attr("targetid"), e.targetid.as_deref());
        }
    }
}

/// Every type and a dead letter, structured mode, each once.
pub async fn every_type_once<H: Harness>(h: &H) {
    publish_and_read_once(h, WireMode::Structured).await;
}

/// Binary mode: `encode`'s body and headers.
pub async fn binary_mode<H: Harness>(h: &H) {
    publish_and_read_once(h, WireMode::Binary).await;
}

/// At most two in flight: every record confirmed, stored in batch order.
pub async fn confirmations_in_batch_order<H: Harness>(h: &H) {
    let cfg = h.config(WireMode::Structured, 2).await;
    let sink = connect::<H>(&cfg).await;
    let msgs = fixtures::messages();
    assert!(msgs.len() > 10);
    assert_all_confirmed(&msgs, &sink.publish(&msgs).await);
    let got = h.read(&cfg, msgs.len()).await;
    let mut order: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    let mut expected: Vec<&str> = msgs.iter().map(Message::id).collect();
    if !H::ORDERED {
        order.sort_unstable();
        expected.sort_unstable();
    }
    assert_eq!(order, expected);
    sink.close().await.expect("close");
    h.clean(&cfg).await;
}

/// The same batch twice (a dispatcher's retry after a lost confirmation): confirmed both
/// times, each record stored once or twice.
pub async fn a_batch_sent_twice<H: Harness>(h: &H) {
    let cfg = h.config(WireMode::Structured, 256).await;
    let sink = connect::<H>(&cfg).await;
    let msgs = batch();
    assert_all_confirmed(&msgs, &sink.publish(&msgs).await);
    assert_all_confirmed(&msgs, &sink.publish(&msgs).await);
    // A broker that drops the repeats holds `len`, one that keeps them `2 * len`; read
    // what there is.
    let got = h.read(&cfg, 2 * msgs.len()).await;
    let ids = by_id(&got);
    for m in &msgs {
        let n = ids.get(m.id()).map_or(0, Vec::len);
        assert!((1..=2).contains(&n), "{} stored {n} times", m.id());
    }
    sink.close().await.expect("close");
    h.clean(&cfg).await;
}

/// Connecting to an address nothing listens on is an error, not a hang.
pub async fn unreachable_is_an_error<H: Harness>(h: &H) {
    let cfg = h.unreachable();
    // A bound so that a hang fails the test instead of stopping the suite.
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        <H::Type as SinkType>::connect("conformance", &cfg),
    )
    .await
    .expect("connect to nothing did not give up");
    assert!(r.is_err(), "connected to nothing");
}

/// `check`, the AsyncAPI server, an empty batch and `close`.
pub async fn check_and_describe<H: Harness>(h: &H) {
    let cfg = h.config(WireMode::Structured, 256).await;
    let line = match <H::Type as SinkType>::check("conformance", &cfg) {
        Ok(l) => l,
        Err(e) => panic!("check refuses the harness's configuration: {e}"),
    };
    let type_name = <H::Type as SinkType>::TYPE;
    assert!(line.starts_with(&format!("{type_name}: ")), "{line}");
    if let Some(server) = <H::Type as SinkType>::asyncapi(&cfg) {
        assert!(!server.host.is_empty() && !server.protocol.is_empty());
        let sample = &fixtures::messages()[0];
        let rendered = h.destination(&cfg, sample);
        let literal = server.template.split('{').next().unwrap_or_default();
        assert!(
            rendered.starts_with(literal),
            "template {:?} does not render {rendered:?}",
            server.template
        );
    }
    let sink = connect::<H>(&cfg).await;
    assert!(sink.publish(&[]).await.is_empty(), "an empty batch");
    assert_eq!(sink.name(), "conformance");
    sink.close().await.expect("close");
    h.clean(&cfg).await;
}

/// One `#[tokio::test]` per check of the suite, for the harness `$make()` returns:
/// `relay_testkit::conformance_tests!(NatsHarness::new);`
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        mod conformance {
            use super::*;
            #[tokio::test]
            async fn every_type_once() {
                $crate::conformance::every_type_once(&$make().await).await;
            }
            #[tokio::test]
            async fn binary_mode() {
                $crate::conformance::binary_mode(&$make().await).await;
            }
            #[tokio::test]
            async fn confirmations_in_batch_order() {
                $crate::conformance::confirmations_in_batch_order(&$make().await).await;
            }
            #[tokio::test]
            async fn a_batch_sent_twice() {
                $crate::conformance::a_batch_sent_twice(&$make().await).await;
            }
            #[tokio::test]
            async fn unreachable_is_an_error() {
                $crate::conformance::unreachable_is_an_error(&$make().await).await;
            }
            #[tokio::test]
            async fn check_and_describe() {
                $crate::conformance::check_and_describe(&$make().await).await;
            }
        }
    };
}
