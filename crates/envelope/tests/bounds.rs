//! What input cannot multiply: metric labels from types, and envelope bytes from a batch's
//! shared `includes`.

use std::sync::Arc;

use relay_envelope::{normalize, taxonomy, Context, IngressKind, NormalizeError, MAX_OUTPUT_BYTES};

fn ctx() -> Context {
    Context {
        ingress: IngressKind::Webhook,
        source: "/t".into(),
        received_at: chrono::Utc::now(),
        formats: relay_envelope::Formats::ALL,
    }
}

#[test]
fn the_taxonomy_is_xs_42_types_and_everything_else_is_one_label() {
    let mut all: Vec<&str> = taxonomy::XAA_TYPES.to_vec();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 42, "42 distinct XAA types");
    for t in taxonomy::XAA_TYPES.iter().chain(&taxonomy::OTHER_TYPES) {
        assert_eq!(taxonomy::label(t), *t);
    }
    for made_up in ["attacker.type1", "post.create.x", "", "POST.CREATE"] {
        assert_eq!(taxonomy::known(made_up), None);
        assert_eq!(taxonomy::label(made_up), taxonomy::OTHER_LABEL);
    }
}

fn dm_batch(items: usize, users: usize) -> Vec<u8> {
    let users: serde_json::Map<String, serde_json::Value> = (0..users)
        .map(|i| {
            (
                format!("{i}"),
                serde_json::json!({ "id": format!("{i}"), "name": "n".repeat(80) }),
            )
        })
        .collect();
    let items: Vec<serde_json::Value> = (0..items)
        .map(|i| {
            serde_json::json!({ "type": "message_create", "id": format!("{}", 100 + i),
                "created_timestamp": "1700000000000",
                "message_create": { "target": { "recipient_id": "1" }, "sender_id": "2",
                    "message_data": { "text": "hi" } } })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "for_user_id": "1", "direct_message_events": items, "users": users
    }))
    .unwrap()
}

#[test]
fn envelopes_of_a_batch_share_one_includes() {
    let envs = normalize(&dm_batch(5, 10), &ctx()).unwrap();
    assert_eq!(envs.len(), 5);
    let first = envs[0].data.includes.as_ref().unwrap();
    for e in &envs[1..] {
        assert!(Arc::ptr_eq(first, e.data.includes.as_ref().unwrap()));
    }
}

#[test]
fn a_batch_that_would_expand_past_the_bound_is_refused_whole() {
    // ~100 KB of users x 400 items: ~40 MB of envelopes from a ~160 KB body.
    let body = dm_batch(400, 1000);
    assert!(body.len() < 1 << 20);
    match normalize(&body, &ctx()) {
        Err(NormalizeError::TooLarge { envelopes, bytes }) => {
            assert_eq!(envelopes, 400);
            assert!(bytes > MAX_OUTPUT_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Just under it: fine.
    let envs = normalize(&dm_batch(100, 1000), &ctx()).unwrap();
    assert_eq!(envs.len(), 100);
}
