//! Pure: where a record goes (topic, key), its headers and body ([`Routing::encode`]), and
//! what Kafka's topic names allow.

use super::*;

pub(crate) fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

pub(crate) fn check_topic_name(t: &str) -> Result<(), String> {
    if t.is_empty() || t == "." || t == ".." {
        return Err(format!("{t:?} is not a valid Kafka topic name"));
    }
    if t.len() > MAX_TOPIC_LEN {
        return Err(format!("{t:?} is longer than {MAX_TOPIC_LEN} characters"));
    }
    if !t.chars().all(is_topic_char) {
        return Err(format!(
            "{t:?} has characters Kafka does not allow in topic names (only A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// Makes any string a valid Kafka topic name: characters outside `[A-Za-z0-9._-]`
/// become `_`, the result is cut to 249 characters, and `""`, `.`, `..` become `_`.
pub fn sanitize_topic(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if is_topic_char(c) { c } else { '_' })
        .take(MAX_TOPIC_LEN)
        .collect();
    if out.is_empty() || out == "." || out == ".." {
        out = "_".into();
    }
    out
}

pub(crate) struct Routing {
    pub(crate) topic: Template,
    pub(crate) key: Option<Template>,
    pub(crate) deadletter_topic: String,
    pub(crate) wire_mode: WireMode,
}

impl Routing {
    pub(crate) fn topic_for(&self, msg: &Message) -> String {
        match &msg.payload {
            Payload::DeadLetter(_) => self.deadletter_topic.clone(),
            Payload::Event(env) => sanitize_topic(&self.topic.render_with(env, |v, out| {
                out.extend(v.chars().map(|c| if is_topic_char(c) { c } else { '_' }))
            })),
        }
    }

    /// The key, the headers (binary mode's `ce_` attributes, a dead letter's, and
    /// `content-type`) and the body of a record; its topic is [`Routing::topic_for`].
    pub(crate) fn encode(&self, msg: &Message) -> (Option<String>, OwnedHeaders, bytes::Bytes) {
        let enc = encode(msg, self.wire_mode, HeaderStyle::Kafka);
        let mut headers = OwnedHeaders::new_with_capacity(enc.headers.len() + 1);
        for (k, v) in &enc.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_str()),
            });
        }
        headers = headers.insert(Header {
            key: "content-type",
            value: Some(enc.content_type),
        });
        (self.key_for(msg), headers, enc.body)
    }

    pub(crate) fn key_for(&self, msg: &Message) -> Option<String> {
        match (&msg.payload, &self.key) {
            (Payload::Event(env), Some(key)) => Some(key.render(env)),
            _ => None,
        }
    }
}
