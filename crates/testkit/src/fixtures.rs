//! Envelopes for sink tests and benchmarks, from the fixture deliveries in
//! the repository's `fixtures/`.
//!
//! [`envelopes`] runs [`relay_envelope::normalize`] over every fixture file. Where a file
//! does not normalize (while normalization is still being built, say), it falls back to
//! envelopes constructed directly with the types `expected-types.json` lists for that file
//! and the file's JSON as `data.payload`, so the sinks are always exercised with the whole
//! taxonomy.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use relay_envelope::{Context, DeadLetter, Envelope, EventData, IngressKind};
use relay_sink::{Message, Payload};
use serde_json::value::RawValue;

/// The repository's fixtures directory (`<repo>/fixtures`), or `RELAY_TEST_FIXTURES`.
pub fn dir() -> PathBuf {
    match std::env::var_os("RELAY_TEST_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures")),
    }
}

fn context(file: &str) -> Context {
    let (ingress, source) = if file.starts_with("stream/") {
        (IngressKind::Stream, "/x/activity/stream/test")
    } else {
        (IngressKind::Webhook, "/x/account-activity/webhook/test-app")
    };
    Context {
        ingress,
        source: source.to_owned(),
        received_at: Utc
            .with_ymd_and_hms(2025, 5, 19, 14, 1, 46)
            .single()
            .unwrap_or_else(Utc::now),
        formats: relay_envelope::Formats::ALL,
    }
}

/// Every fixture's envelopes, in file order (sorted by path), duplicates by id removed.
/// Panics if the fixtures directory is missing or unreadable (a test setup error).
pub fn envelopes() -> Vec<Envelope> {
    let dir = dir();
    let expected_path = dir.join("expected-types.json");
    let expected_text = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", expected_path.display()));
    let expected: BTreeMap<String, Vec<String>> = serde_json::from_str(&expected_text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", expected_path.display()));

    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (file, types) in &expected {
        let path = dir.join(file);
        let body =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let ctx = context(file);
        let envs = match relay_envelope::normalize(&body, &ctx) {
            Ok(envs) if !envs.is_empty() => envs,
            _ => synthetic(file, types, &body, &ctx),
        };
        for env in envs {
            if seen.insert(env.id.clone()) {
                out.push(env);
            }
        }
    }
    out
}

fn synthetic(file: &str, types: &[String], body: &[u8], ctx: &Context) -> Vec<Envelope> {
    let text = String::from_utf8_lossy(body);
    let payload: Box<RawValue> = serde_json::from_str::<&RawValue>(&text)
        .map(|r| r.to_owned())
        .unwrap_or_else(|_| {
            RawValue::from_string("{}".to_owned()).unwrap_or_else(|e| panic!("raw {{}}: {e}"))
        });
    let stem: String = file
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| Envelope {
            specversion: relay_envelope::SPECVERSION.to_owned(),
            id: format!("2244994945:{ty}:{stem}-{i}"),
            source: ctx.source.clone(),
            event_type: ty.clone(),
            subject: if ty == "replay.job_status" {
                "_".to_owned()
            } else {
                "2244994945".to_owned()
            },
            time: ctx.received_at,
            datacontenttype: relay_envelope::DATACONTENTTYPE.to_owned(),
            actorid: (i % 2 == 0).then(|| "783214".to_owned()),
            targetid: Some("2244994945".to_owned()),
            objectid: (i % 3 != 2).then(|| format!("19244655061588789{i:02}")),
            ingress: ctx.ingress,
            xformat: Some(relay_envelope::XFormat::Aaa),
            data: EventData {
                payload: payload.clone(),
                includes: None,
            },
        })
        .collect()
}

/// An envelope as a sink [`Message`] (its JSON as the spool would hold it).
pub fn message(offset: u64, env: Envelope) -> Message {
    Message::event(offset, 1_747_663_306_000 + offset, env)
}

/// [`envelopes`] as messages, offsets from 0.
pub fn messages() -> Vec<Message> {
    envelopes()
        .into_iter()
        .enumerate()
        .map(|(i, env)| message(i as u64, env))
        .collect()
}

/// A dead-letter record for `raw`.
pub fn dead_letter(offset: u64, raw: &[u8], reason: &str) -> Message {
    let dl = DeadLetter::new(raw, reason, &context("aaa/x"));
    Message::dead_letter(offset, 1_747_663_306_000 + offset, dl)
}

/// `n` distinct messages for benchmarks: the fixture envelopes repeated with ids made
/// unique by a `:<round>` suffix.
pub fn many(n: usize) -> Vec<Message> {
    let base = envelopes();
    (0..n)
        .map(|i| {
            let mut env = base[i % base.len()].clone();
            env.id = format!("{}:{}", env.id, i / base.len());
            message(i as u64, env)
        })
        .collect()
}

/// [`many`] with `:<tag>` appended to every id, so that each benchmark round publishes ids
/// a broker has not seen (JetStream would drop repeats as duplicates).
pub fn many_tagged(n: usize, tag: &str) -> Vec<Message> {
    many(n)
        .into_iter()
        .map(|mut m| {
            if let Payload::Event(env) = &mut m.payload {
                let env = std::sync::Arc::make_mut(env);
                env.id = format!("{}:{tag}", env.id);
                m.json = Bytes::from(env.to_json());
            }
            m
        })
        .collect()
}

/// An envelope built by hand, `n` its object id and in its id and payload (for when the
/// fixtures are not what is under test).
pub fn envelope(event_type: &str, subject: &str, n: usize) -> Envelope {
    Envelope {
        specversion: relay_envelope::SPECVERSION.to_owned(),
        id: format!("{subject}:{event_type}:{n}"),
        source: "/x/account-activity/webhook/test".into(),
        event_type: event_type.into(),
        subject: subject.into(),
        time: Utc
            .with_ymd_and_hms(2025, 5, 19, 14, 1, 46)
            .single()
            .unwrap_or_else(Utc::now),
        datacontenttype: relay_envelope::DATACONTENTTYPE.to_owned(),
        actorid: Some("2244994945".into()),
        targetid: None,
        objectid: Some(format!("{n}")),
        ingress: IngressKind::Webhook,
        xformat: Some(relay_envelope::XFormat::Aaa),
        data: EventData {
            payload: RawValue::from_string(format!(
                r#"{{"n": {n}, "text": "caf\u00e9 \ud83d\ude00"}}"#
            ))
            .unwrap_or_else(|e| panic!("payload: {e}")),
            includes: None,
        },
    }
}

/// A post-shaped envelope of `event_type` for `subject`, object `1924465506158878979`,
/// with `includes` (what the routing and wire tests look at).
pub fn sample(event_type: &str, subject: &str) -> Envelope {
    let mut env = envelope(event_type, subject, 1924465506158878979);
    env.source = "/x/account-activity/webhook/prod-app".into();
    env.data = EventData {
        payload: RawValue::from_string(
            r#"{"id_str": "1924465506158878979", "text":"hi \u00e9"}"#.into(),
        )
        .unwrap_or_else(|e| panic!("payload: {e}")),
        includes: Some(
            RawValue::from_string(r#"{"users":{}}"#.into())
                .unwrap_or_else(|e| panic!("includes: {e}"))
                .into(),
        ),
    };
    env
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_cover_many_types_with_unique_ids() {
        let msgs = super::messages();
        let types: std::collections::HashSet<_> = super::envelopes()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert!(types.len() >= 20, "only {} types: {types:?}", types.len());
        let ids: std::collections::HashSet<_> = msgs.iter().map(|m| m.id().to_owned()).collect();
        assert_eq!(ids.len(), msgs.len());
        let many = super::many(3 * msgs.len() + 1);
        let ids: std::collections::HashSet<_> = many.iter().map(|m| m.id().to_owned()).collect();
        assert_eq!(ids.len(), many.len());
    }
}
