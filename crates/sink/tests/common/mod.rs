#![allow(dead_code)]
//! Envelope and message builders shared by the relay-sink tests.

use chrono::TimeZone;
use relay_envelope::{Envelope, EventData, IngressKind};
use relay_sink::Message;
use serde_json::value::RawValue;

pub fn envelope(event_type: &str, subject: &str) -> Envelope {
    Envelope {
        specversion: "1.0".into(),
        id: format!("{subject}:{event_type}:1924465506158878979"),
        source: "/x/account-activity/webhook/prod-app".into(),
        event_type: event_type.into(),
        subject: subject.into(),
        time: chrono::Utc
            .with_ymd_and_hms(2025, 5, 19, 14, 1, 46)
            .unwrap(),
        datacontenttype: "application/json".into(),
        actorid: Some("2244994945".into()),
        targetid: None,
        objectid: Some("1924465506158878979".into()),
        ingress: IngressKind::Webhook,
        xformat: Some(relay_envelope::XFormat::Aaa),
        data: EventData {
            payload: RawValue::from_string(
                r#"{"id_str": "1924465506158878979", "text":"hi \u00e9"}"#.into(),
            )
            .unwrap(),
            includes: Some(
                RawValue::from_string(r#"{"users":{}}"#.into())
                    .unwrap()
                    .into(),
            ),
        },
    }
}

/// A message of `env` (the shared test helper, offset 0).
pub fn message(env: Envelope) -> Message {
    relay_e2e::fixtures::message(0, env)
}

/// A dead letter of `raw` (the shared test helper, offset 0).
pub fn dead_letter(raw: &[u8], reason: &str) -> Message {
    relay_e2e::fixtures::dead_letter(0, raw, reason)
}
