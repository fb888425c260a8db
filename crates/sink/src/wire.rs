//! CloudEvents wire modes: structured and binary encoding, header naming per binding.

use bytes::Bytes;
use relay_envelope::Envelope;

use crate::{Message, Payload};

// ---------------------------------------------------------------------------------------
// Wire modes and encoding
// ---------------------------------------------------------------------------------------

/// How a sink puts an envelope on the wire (`docs/spec/envelope.md`, "Wire mode").
///
/// In configuration: `wire_mode = "structured"` (the default) or `"binary"`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum WireMode {
    /// Body = the envelope JSON as spooled, content type `application/cloudevents+json`.
    #[default]
    Structured,
    /// Body = the envelope's `data` JSON, content type `application/json`, every
    /// attribute in a header of its own.
    Binary,
}

impl std::fmt::Display for WireMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireMode::Structured => "structured",
            WireMode::Binary => "binary",
        })
    }
}

/// How attribute headers are named, per CloudEvents protocol binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderStyle {
    /// Kafka binding: `ce_<attr>`.
    Kafka,
    /// NATS binding: `ce-<attr>`, values percent-encoded as the binding requires.
    Nats,
    /// AMQP 0-9-1 (RabbitMQ) as the CloudEvents SDKs' RabbitMQ binding and Knative's
    /// eventing-rabbitmq read it: `ce-<attr>`.
    Amqp,
    /// The AMQP 1.0 binding's application properties, `cloudEvents_<attr>`, for bridges
    /// that want it (`header_style = "amqp1"` on a RabbitMQ sink).
    Amqp1,
}

impl HeaderStyle {
    /// The header name prefix: `ce_`, `ce-` or `cloudEvents_`.
    pub fn prefix(self) -> &'static str {
        match self {
            HeaderStyle::Kafka => "ce_",
            HeaderStyle::Nats | HeaderStyle::Amqp => "ce-",
            HeaderStyle::Amqp1 => "cloudEvents_",
        }
    }

    /// The header name of an attribute, e.g. `ce_id`.
    pub fn header(self, attr: &str) -> String {
        let prefix = self.prefix();
        let mut name = String::with_capacity(prefix.len() + attr.len());
        name.push_str(prefix);
        name.push_str(attr);
        name
    }
}

/// Content type of a structured-mode CloudEvent.
pub const CONTENT_TYPE_CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// Content type of a binary-mode body (the `data`) and of a dead letter.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Attribute name (after the header prefix) of a dead letter's reason header, e.g.
/// `ce_deadletterreason`.
pub const DEADLETTER_REASON_ATTR: &str = "deadletterreason";

/// A record ready for a broker: what [`encode`] returns.
///
/// `content_type` is not repeated in `headers`: each sink puts it where its binding says
/// (Kafka and NATS a `content-type` header, AMQP the `content_type` property).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub body: Bytes,
    /// `(name, value)` pairs, in a fixed order (`<prefix>id` first).
    pub headers: Vec<(String, String)>,
    pub content_type: &'static str,
}

/// Encodes one record for the wire.
///
/// * [`WireMode::Structured`]: `body` = `message.json` untouched, content type
///   `application/cloudevents+json`, no attribute header: an SDK that finds any `ce_`
///   header takes a message for binary mode (the Python SDK's `from_kafka` does). The
///   brokers' own dedup ids (`Nats-Msg-Id`, AMQP `message_id`) are set by the sinks.
/// * [`WireMode::Binary`]: `body` = the envelope's `data` JSON (the bytes as spooled),
///   content type `application/json` (which is `datacontenttype`: the bindings carry it as
///   the message's content type, not as a header), one header per other attribute present:
///   `specversion`, `id`, `source`, `type`, `subject`, `time`, `actorid`, `targetid`,
///   `objectid`, `ingress`, `xformat` (absent optional attributes give no header).
/// * A dead letter, whatever the mode: `body` = its JSON, content type
///   `application/json`, headers `<prefix>id` and `<prefix>deadletterreason`.
///
/// Header values are the attribute strings as they are, except that with
/// [`HeaderStyle::Nats`] they are percent-encoded as the NATS binding requires: space,
/// `"`, `%` and every character outside U+0021..U+007E, as `%XX` of their UTF-8 bytes.
pub fn encode(message: &Message, mode: WireMode, style: HeaderStyle) -> Encoded {
    let value = |v: &str| header_value(v, style);
    match &message.payload {
        Payload::DeadLetter(dl) => Encoded {
            body: message.json.clone(),
            headers: vec![
                (style.header("id"), value(&dl.id)),
                (style.header(DEADLETTER_REASON_ATTR), value(&dl.reason)),
            ],
            content_type: CONTENT_TYPE_JSON,
        },
        Payload::Event(env) => match mode {
            WireMode::Structured => Encoded {
                body: message.json.clone(),
                headers: Vec::new(),
                content_type: CONTENT_TYPE_CLOUDEVENTS_JSON,
            },
            WireMode::Binary => {
                let time = env
                    .time
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                let mut headers = Vec::with_capacity(11);
                let attrs: [(&str, Option<&str>); 11] = [
                    ("specversion", Some(&env.specversion)),
                    ("id", Some(&env.id)),
                    ("source", Some(&env.source)),
                    ("type", Some(&env.event_type)),
                    ("subject", Some(&env.subject)),
                    ("time", Some(&time)),
                    ("actorid", env.actorid.as_deref()),
                    ("targetid", env.targetid.as_deref()),
                    ("objectid", env.objectid.as_deref()),
                    ("ingress", Some(env.ingress.as_str())),
                    ("xformat", env.xformat.map(relay_envelope::XFormat::as_str)),
                ];
                for (name, v) in attrs {
                    if let Some(v) = v {
                        headers.push((style.header(name), value(v)));
                    }
                }
                Encoded {
                    body: binary_body(message, env),
                    headers,
                    content_type: CONTENT_TYPE_JSON,
                }
            }
        },
    }
}

/// The `data` member of the spooled JSON, byte for byte; re-serialized from the typed
/// envelope only if the spooled bytes do not parse (they always should).
fn binary_body(message: &Message, env: &Envelope) -> Bytes {
    #[derive(serde::Deserialize)]
    struct DataOnly<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    match serde_json::from_slice::<DataOnly<'_>>(&message.json) {
        Ok(d) => {
            let raw = d.data.get().as_bytes();
            // `raw` points into `message.json`: share the buffer instead of copying.
            let start = (raw.as_ptr() as usize).wrapping_sub(message.json.as_ptr() as usize);
            match start.checked_add(raw.len()) {
                Some(end) if end <= message.json.len() => message.json.slice(start..end),
                _ => Bytes::copy_from_slice(raw),
            }
        }
        Err(e) => {
            tracing::warn!(id = %env.id, error = %e, "spooled JSON has no parsable data member; re-serializing data");
            Bytes::from(serde_json::to_vec(&env.data).unwrap_or_default())
        }
    }
}

/// Whether the NATS binding lets `b` stand as it is in a header value.
fn nats_plain(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%'
}

fn header_value(v: &str, style: HeaderStyle) -> String {
    if style != HeaderStyle::Nats || v.bytes().all(nats_plain) {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len() + 8);
    for b in v.bytes() {
        if nats_plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
