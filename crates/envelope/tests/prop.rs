//! Property tests: `normalize` never panics, and whatever it returns follows the rules.

use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use relay_envelope::{is_valid_id, normalize, Context, Envelope, IngressKind, NormalizeError};
use serde_json::{Map, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

fn ctx() -> Context {
    Context {
        ingress: IngressKind::Webhook,
        source: "/x/account-activity/webhook/prop".to_owned(),
        received_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
        formats: relay_envelope::Formats::ALL,
    }
}

fn fixtures() -> &'static Vec<Vec<u8>> {
    static F: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    F.get_or_init(|| {
        let list: std::collections::BTreeMap<String, Value> = serde_json::from_slice(
            &std::fs::read(PathBuf::from(FIXTURES).join("expected-types.json")).unwrap(),
        )
        .unwrap();
        list.keys()
            .map(|name| std::fs::read(PathBuf::from(FIXTURES).join(name)).unwrap())
            .collect()
    })
}

/// Checks every rule an `Ok` result must follow.
fn check_envelopes(v: &[Envelope]) -> Result<(), TestCaseError> {
    prop_assert!(!v.is_empty(), "Ok with no envelope");
    for e in v {
        prop_assert!(is_valid_id(&e.id), "bad id {:?}", e.id);
        prop_assert!(!e.event_type.is_empty());
        prop_assert!(!e.subject.is_empty());
        let head = format!("{}:{}:", e.subject, e.event_type);
        prop_assert!(e.id.starts_with(&head), "id {} head {}", e.id, head);
        let json = e.to_json();
        prop_assert!(!json.is_empty());
        prop_assert!(!json.contains(&b'\n'), "envelope spans lines");
        // Valid JSON that reads back as an envelope. (Not as a `serde_json::Value`: a payload
        // may carry a number like 1e999, valid JSON that the relay passes through as it is
        // but that `Value` refuses as out of range.)
        let back = Envelope::from_json(&json);
        prop_assert!(
            back.is_ok(),
            "envelope does not read back: {:?}",
            back.err()
        );
        prop_assert_eq!(back.map(|b| b.id).ok(), Some(e.id.clone()));
        for a in [&e.actorid, &e.targetid, &e.objectid].into_iter().flatten() {
            prop_assert!(!a.is_empty() && a.len() <= 64);
        }
    }
    Ok(())
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "for_user_id",
            "tweet_create_events",
            "favorite_events",
            "follow_events",
            "unfollow_events",
            "block_events",
            "unblock_events",
            "mute_events",
            "unmute_events",
            "direct_message_events",
            "direct_message_indicate_typing_events",
            "direct_message_mark_read_events",
            "tweet_delete_events",
            "spaces_events",
            "user_event",
            "revoke",
            "replay_job_status",
            "data",
            "errors",
            "includes",
            "users",
            "apps",
            "user_has_blocked",
            "event_type",
            "created_at",
            "event_uuid",
            "filter",
            "user_id",
            "payload",
            "id",
            "id_str",
            "user",
            "type",
            "retweeted_status",
            "quoted_status",
            "is_quote_status",
            "in_reply_to_status_id_str",
            "message_create",
            "sender_id",
            "target",
            "recipient_id",
            "source",
            "status",
            "timestamp_ms",
            "created_timestamp",
            "date_time",
            "job_id",
            "job_state",
        ])
        .prop_map(str::to_owned),
        "[a-z_.]{0,10}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        prop::sample::select(vec![
            "follow",
            "unfollow",
            "block",
            "unblock",
            "mute",
            "unmute",
            "post.create",
            "dm.sent",
            "x.>",
            "",
            "_",
            "1924465506158878979",
            "2244994945",
            "true",
            "Mon May 19 14:01:46 +0000 2025",
            "2025-05-19T14:01:46Z",
            "99999999999999999",
            "a.b*c",
            "Complete",
            "Terminé",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        ".{0,40}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every JSON pointer of a value.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                pointers(c, p.clone(), out);
                out.push(p);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                pointers(c, p.clone(), out);
                out.push(p);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        match normalize(&body, &ctx()) {
            Ok(v) => check_envelopes(&v)?,
            Err(NormalizeError::NotJson { reason }) => prop_assert!(!reason.is_empty()),
            Err(NormalizeError::XaaErrors { .. }) => {}
            // 512 input bytes cannot expand past the output bound.
            Err(e @ NormalizeError::TooLarge { .. }) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn arbitrary_json_never_panics_and_is_never_dropped(v in json()) {
        let body = serde_json::to_vec(&v).unwrap();
        match normalize(&body, &ctx()) {
            Ok(envs) => check_envelopes(&envs)?,
            Err(NormalizeError::XaaErrors { .. }) => {
                prop_assert!(v.get("errors").is_some_and(Value::is_array));
            }
            Err(e) => prop_assert!(false, "valid JSON refused: {e}"),
        }
        // Pretty-printed, the same value gives the same ids.
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        if let (Ok(a), Ok(b)) = (normalize(&body, &ctx()), normalize(&pretty, &ctx())) {
            let ids = |v: &[Envelope]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
            prop_assert_eq!(ids(&a), ids(&b));
        }
    }

    #[test]
    fn fixture_byte_mutations_never_panic(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        op in 0u8..4,
        byte in any::<u8>(),
    ) {
        let mut body = fixtures()[which.index(fixtures().len())].clone();
        let i = at.index(body.len());
        match op {
            0 => body[i] = byte,
            1 => body.truncate(i),
            2 => body.insert(i, byte),
            _ => { body.remove(i); }
        }
        if let Ok(v) = normalize(&body, &ctx()) {
            check_envelopes(&v)?;
        }
    }

    #[test]
    fn fixture_value_mutations_never_panic_nor_drop(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        replacement in json(),
    ) {
        let mut v: Value = serde_json::from_slice(&fixtures()[which.index(fixtures().len())]).unwrap();
        let mut ps = Vec::new();
        pointers(&v, String::new(), &mut ps);
        let p = &ps[at.index(ps.len())];
        if let Some(slot) = v.pointer_mut(p) {
            *slot = replacement;
        }
        let body = serde_json::to_vec(&v).unwrap();
        match normalize(&body, &ctx()) {
            Ok(envs) => check_envelopes(&envs)?,
            Err(NormalizeError::XaaErrors { .. }) => {}
            Err(e) => prop_assert!(false, "valid JSON refused: {e}"),
        }
    }
}

#[test]
fn deep_nesting_does_not_panic() {
    for depth in [10usize, 127, 128, 129, 500, 5000] {
        let body = format!(
            "{{\"for_user_id\":\"1\",\"tweet_create_events\":[{}{}]}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        match normalize(body.as_bytes(), &ctx()) {
            Ok(v) => assert!(v.iter().all(|e| is_valid_id(&e.id))),
            Err(NormalizeError::NotJson { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        let body = format!(
            "{{\"for_user_id\":\"1\",\"tweet_create_events\":[{{\"user\":{}1{}}}]}}",
            "{\"user\":".repeat(depth),
            "}".repeat(depth)
        );
        let _ = normalize(body.as_bytes(), &ctx());
    }
}

/// Found by `fixture_byte_mutations_never_panic`: a number beyond f64's range is valid JSON;
/// the relay passes it through byte for byte and the envelope still reads back.
#[test]
fn out_of_range_numbers_pass_through_unchanged() {
    let body = br#"{"for_user_id":"2244994945","favorite_events":[{"id":"abc","timestamp_ms":1e999,"user":{"id_str":"1"}}]}"#;
    let ctx = relay_envelope::Context {
        ingress: relay_envelope::IngressKind::Webhook,
        source: "/x/account-activity/webhook/t".into(),
        received_at: chrono::Utc::now(),
        formats: relay_envelope::Formats::ALL,
    };
    let envs = relay_envelope::normalize(body, &ctx).expect("valid JSON");
    assert_eq!(envs.len(), 1);
    let json = envs[0].to_json();
    assert!(
        String::from_utf8_lossy(&json).contains("1e999"),
        "payload bytes changed"
    );
    let back = Envelope::from_json(&json).expect("reads back");
    assert_eq!(back.id, envs[0].id);
    assert!(check_envelopes(&envs).is_ok());
}
