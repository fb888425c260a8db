//! Pure: a record to its subject, headers and body ([`Routing::encode`]); subjects from
//! templates (values escaped per token), and what a published subject and its headers may
//! hold.

use super::*;

/// Replaces, inside one substituted value, what a published subject cannot hold.
pub(crate) fn escape_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if c.is_whitespace() || c.is_control() || c == '*' || c == '>' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
}

/// Empty tokens (from values with leading, trailing or doubled dots) become `_`.
pub(crate) fn sanitize_tokens(subject: String) -> String {
    if !subject.starts_with('.') && !subject.ends_with('.') && !subject.contains("..") {
        return subject;
    }
    subject
        .split('.')
        .map(|t| if t.is_empty() { "_" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

pub(crate) fn check_template_literals(t: &Template) -> Result<(), String> {
    for lit in t.literals() {
        if let Some(c) = lit
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '*' || *c == '>')
        {
            return Err(format!(
                "subject template {:?}: {c:?} is not allowed in a published subject",
                t.as_str()
            ));
        }
    }
    if t.is_empty() {
        return Err("subject template is empty".into());
    }
    // Render with placeholder values to find empty tokens (`a..{type}`, trailing dot).
    let probe = t.render_lookup(|_| Some("v"));
    check_publish_subject(&probe).map_err(|e| format!("subject template {:?}: {e}", t.as_str()))
}

pub(crate) fn check_publish_subject(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty subject".into());
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    {
        return Err(format!(
            "{s:?}: whitespace, '*' and '>' are not allowed in a published subject"
        ));
    }
    if s.split('.').any(str::is_empty) {
        return Err(format!("{s:?} has an empty token"));
    }
    Ok(())
}

pub(crate) fn headers_len(h: &HeaderMap) -> usize {
    // "NATS/1.0\r\n" + "name: value\r\n"… + "\r\n"
    let mut n = 12;
    for (k, vs) in h.iter() {
        for v in vs {
            n += AsRef::<str>::as_ref(k).len() + v.as_str().len() + 4;
        }
    }
    n
}

/// Where and how records are published: built from the configuration at connect.
pub(crate) struct Routing {
    pub(crate) subject: Template,
    pub(crate) deadletter_subject: String,
    pub(crate) wire_mode: WireMode,
}

impl Routing {
    pub(crate) fn subject_for(&self, message: &Message) -> String {
        match &message.payload {
            Payload::Event(env) => sanitize_tokens(self.subject.render_with(env, escape_value)),
            Payload::DeadLetter(_) => self.deadletter_subject.clone(),
        }
    }

    /// The subject, the headers (`Nats-Msg-Id` = the record's id, so JetStream drops a
    /// redelivery; `Content-Type`; binary mode's `ce-` attributes) and the body.
    pub(crate) fn encode(&self, message: &Message) -> (String, HeaderMap, Bytes) {
        let encoded = encode(message, self.wire_mode, HeaderStyle::Nats);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, message.id());
        headers.insert("Content-Type", encoded.content_type);
        for (k, v) in encoded.headers {
            headers.insert(k, v);
        }
        (self.subject_for(message), headers, encoded.body)
    }
}
