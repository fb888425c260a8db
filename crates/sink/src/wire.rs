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
    /// NATS binding: `ce-<attr>`.
    Nats,
    /// AMQP binding as used over AMQP 0-9-1 (RabbitMQ): `cloudEvents_<attr>`.
    Amqp,
}

impl HeaderStyle {
    /// The header name prefix: `ce_`, `ce-` or `cloudEvents_`.
    pub fn prefix(self) -> &'static str {
        match self {
            HeaderStyle::Kafka => "ce_",
            HeaderStyle::Nats => "ce-",
            HeaderStyle::Amqp => "cloudEvents_",
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
///   `application/cloudevents+json`, headers: `<prefix>id` only.
/// * [`WireMode::Binary`]: `body` = the envelope's `data` JSON (the bytes as spooled),
///   content type `application/json`, one header per attribute present: `specversion`, `id`,
///   `source`, `type`, `subject`, `time`, `datacontenttype`, `actorid`, `targetid`,
///   `objectid`, `ingress` (absent optional attributes give no header).
/// * A dead letter, whatever the mode: `body` = its JSON, content type
///   `application/json`, headers `<prefix>id` and `<prefix>deadletterreason`.
///
/// Header values are the attribute strings as they are, except that with
/// [`HeaderStyle::Nats`] control characters (which NATS headers cannot carry) are
/// percent-encoded (`%0A`), as the CloudEvents HTTP binding does.
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
                headers: vec![(style.header("id"), value(&env.id))],
                content_type: CONTENT_TYPE_CLOUDEVENTS_JSON,
            },
            WireMode::Binary => {
                let time = env
                    .time
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                let mut headers = Vec::with_capacity(12);
                let attrs: [(&str, Option<&str>); 12] = [
                    ("specversion", Some(&env.specversion)),
                    ("id", Some(&env.id)),
                    ("source", Some(&env.source)),
                    ("type", Some(&env.event_type)),
                    ("subject", Some(&env.subject)),
                    ("time", Some(&time)),
                    ("datacontenttype", Some(&env.datacontenttype)),
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

fn header_value(v: &str, style: HeaderStyle) -> String {
    if style != HeaderStyle::Nats || !v.chars().any(|c| c.is_control()) {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}
