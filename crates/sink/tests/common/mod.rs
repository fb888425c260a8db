#![allow(dead_code)]
//! Envelope and message builders shared by the relay-sink tests.

use bytes::Bytes;
use chrono::TimeZone;
use relay_envelope::{Context, DeadLetter, Envelope, EventData, IngressKind};
use relay_sink::{Message, Payload};
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
        data: EventData {
            payload: RawValue::from_string(
                r#"{"id_str": "1924465506158878979", "text":"hi \u00e9"}"#.into(),
            )
            .unwrap(),
            includes: Some(RawValue::from_string(r#"{"users":{}}"#.into()).unwrap()),
        },
    }
}

pub fn message(env: Envelope) -> Message {
    let json = Bytes::from(env.to_json());
    Message {
        offset: 0,
        accepted_at_ms: 0,
        payload: Payload::Event(Box::new(env)),
        json,
    }
}

pub fn dead_letter(raw: &[u8], reason: &str) -> Message {
    let ctx = Context {
        ingress: IngressKind::Webhook,
        source: "/x/account-activity/webhook/prod-app".into(),
        received_at: chrono::Utc::now(),
    };
    let dl = DeadLetter::new(raw, reason, &ctx);
    let json = Bytes::from(dl.to_json());
    Message {
        offset: 0,
        accepted_at_ms: 0,
        payload: Payload::DeadLetter(Box::new(dl)),
        json,
    }
}
