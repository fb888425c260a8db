//! Pure: a record to its routing key, AMQP properties and body ([`Routing::encode`]), and
//! what AMQP's field types allow of routing keys and header values.

use super::*;

/// An AMQP short string (at most 255 bytes; cut at a char boundary if longer).
pub(crate) fn short(s: &str) -> ShortString {
    if s.len() <= 255 {
        return ShortString::from(s);
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}

/// Where and how records are published: built from the configuration at connect.
pub(crate) struct Routing {
    pub(crate) routing_key: Template,
    pub(crate) deadletter_routing_key: String,
    pub(crate) wire_mode: WireMode,
    pub(crate) header_style: HeaderStyle,
}

impl Routing {
    pub(crate) fn routing_key_for(&self, message: &Message) -> String {
        match &message.payload {
            Payload::Event(env) => self.routing_key.render(env),
            Payload::DeadLetter(_) => self.deadletter_routing_key.clone(),
        }
    }

    fn properties(&self, message: &Message, content_type: &str) -> BasicProperties {
        let (kind, timestamp) = match &message.payload {
            Payload::Event(env) => (env.event_type.as_str(), env.time.timestamp()),
            Payload::DeadLetter(dl) => ("deadletter", dl.received_at.timestamp()),
        };
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(short(message.id()))
            .with_content_type(short(content_type))
            .with_type(short(kind))
            .with_timestamp(u64::try_from(timestamp).unwrap_or(0))
            .with_app_id(ShortString::from("activity-relay"))
    }

    pub(crate) fn encode(
        &self,
        message: &Message,
    ) -> Result<(String, BasicProperties, Bytes), PublishError> {
        let routing_key = self.routing_key_for(message);
        if routing_key.len() > 255 {
            return Err(PublishError::permanent(
                Reason::InvalidDestination,
                format!(
                    "routing key of {} bytes exceeds AMQP's 255 (template {})",
                    routing_key.len(),
                    self.routing_key
                ),
            ));
        }
        let encoded = encode(message, self.wire_mode, self.header_style);
        let mut props = self.properties(message, encoded.content_type);
        if self.wire_mode == WireMode::Binary || message.is_dead_letter() {
            let mut table = FieldTable::default();
            for (k, v) in encoded.headers {
                table.insert(short(&k), AMQPValue::LongString(LongString::from(v)));
            }
            props = props.with_headers(table);
        }
        Ok((routing_key, props, encoded.body))
    }
}
