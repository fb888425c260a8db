//! `activity-relay schema`: the relay's output as machine-readable contracts, for event
//! catalogs.
//!
//! * `schema envelope`: a JSON Schema (2020-12) of the envelope (`docs/spec/envelope.md`).
//! * `schema asyncapi --config FILE`: an AsyncAPI 3.0 document of what that configuration
//!   publishes: one server per broker sink, one channel per sink and event type (its
//!   address rendered from the sink's template, the attributes left in it as channel
//!   parameters), one message per type (the envelope, in the sink's wire mode), a `send`
//!   operation per channel, and the Kafka, NATS and AMQP bindings. A sink's `types` /
//!   `exclude_types` filter decides which types it gets channels for. The file sink is not
//!   a broker and is left out.

use serde_json::{json, Map, Value};

use crate::config::Config;
use relay_envelope::taxonomy;

/// The JSON Schema of one envelope.
pub fn envelope_schema() -> Value {
    let id_attr = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://activity-relay.invalid/schemas/envelope.json",
        "title": "activity-relay envelope",
        "description": "A CloudEvents 1.0 event (JSON format): one X activity event, normalized.",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "ingress", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$",
                   "description": "<subject>:<type>:<key>, the same for one real event in both input formats"},
            "source": {"type": "string", "minLength": 1},
            "type": {"type": "string", "description": "a taxonomy type (or a newer XAA event_type)",
                     "examples": taxonomy::XAA_TYPES.to_vec()},
            "subject": {"type": "string", "description": "the subscribed user, `_` when none applies"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "actorid": id_attr,
            "targetid": id_attr,
            "objectid": id_attr,
            "ingress": {"enum": ["webhook", "stream", "replay"]},
            "xformat": {"enum": ["aaa", "xaa"], "description": "the payload's shape: v1.1 (aaa) or v2 (xaa)"},
            "data": {
                "type": "object",
                "required": ["payload"],
                "properties": {
                    "payload": {"description": "the original event object, unmodified"},
                    "includes": {"type": "object"}
                },
                "additionalProperties": false
            }
        },
        "additionalProperties": false
    })
}

/// Splits a template's attributes: `{type}` is rendered, every other `{attr}` stays as an
/// AsyncAPI channel parameter.
fn address(template: &str, ty: &str) -> (String, Vec<String>) {
    let rendered = template.replace("{type}", ty);
    let mut params = Vec::new();
    let mut rest = rendered.as_str();
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        if !params.iter().any(|p| p == name) {
            params.push(name.to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    (rendered, params)
}

fn key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The AsyncAPI 3.0 document of what `cfg` publishes.
pub fn asyncapi(cfg: &Config) -> Value {
    let mut servers = Map::new();
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let types: Vec<&str> = taxonomy::XAA_TYPES
        .iter()
        .chain(taxonomy::OTHER_TYPES.iter())
        .copied()
        .collect();
    for s in &cfg.sinks {
        let Some(b) = s.spec.asyncapi() else { continue };
        let sink = key(&s.name);
        servers.insert(
            sink.clone(),
            json!({"host": b.host, "protocol": b.protocol, "description": format!("sink {:?}", s.name)}),
        );
        for ty in types.iter().filter(|t| s.filter.admits_type(t)) {
            let msg_name = format!(
                "{}_{}",
                key(ty),
                if b.binary { "binary" } else { "structured" }
            );
            if !messages.contains_key(&msg_name) {
                let mut m = json!({
                    "name": ty,
                    "title": format!("{ty} ({})", if b.binary { "binary mode" } else { "structured mode" }),
                    "contentType": if b.binary { "application/json" } else { "application/cloudevents+json" },
                    "payload": if b.binary {
                        json!({"$ref": "#/components/schemas/EnvelopeData"})
                    } else {
                        json!({"$ref": "#/components/schemas/Envelope"})
                    },
                });
                if b.binary {
                    m["description"] =
                        json!("the envelope's data; its attributes are in ce- (Kafka ce_) headers");
                }
                if let Some((name, v)) = &b.message_binding {
                    m["bindings"] = json!({ *name: v });
                }
                messages.insert(msg_name.clone(), m);
            }
            let (addr, params) = address(&b.template, ty);
            let channel = format!("{sink}__{}", key(ty));
            let mut c = json!({
                "address": addr,
                "servers": [{"$ref": format!("#/servers/{sink}")}],
                "messages": {"event": {"$ref": format!("#/components/messages/{msg_name}")}},
            });
            if !params.is_empty() {
                let p: Map<String, Value> = params
                    .iter()
                    .map(|p| {
                        (
                            p.clone(),
                            json!({"description": format!("the envelope's `{p}` attribute")}),
                        )
                    })
                    .collect();
                c["parameters"] = Value::Object(p);
            }
            if let Some((name, v)) = &b.channel_binding {
                c["bindings"] = json!({ *name: v });
            }
            channels.insert(channel.clone(), c);
            operations.insert(
                format!("publish__{channel}"),
                json!({
                    "action": "send",
                    "channel": {"$ref": format!("#/channels/{channel}")},
                    "messages": [{"$ref": format!("#/channels/{channel}/messages/event")}],
                }),
            );
        }
    }
    let envelope = envelope_schema();
    let data = envelope["properties"]["data"].clone();
    let mut envelope_component = envelope;
    if let Some(o) = envelope_component.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "activity-relay",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "X account activity as CloudEvents 1.0, as this configuration publishes it.",
        },
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {"Envelope": envelope_component, "EnvelopeData": data},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_other_attributes_as_parameters() {
        assert_eq!(
            address("x.activity.{subject}.{type}", "dm.sent"),
            (
                "x.activity.{subject}.dm.sent".to_owned(),
                vec!["subject".to_owned()]
            )
        );
        assert_eq!(
            address("x.activity.{type}", "like.create").1,
            Vec::<String>::new()
        );
    }
}
