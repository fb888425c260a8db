//! The id, time, classification and attribute rules, on constructed deliveries.

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use relay_envelope::{is_valid_id, normalize, Envelope, IngressKind, NormalizeError};
use serde_json::Value;

mod common;
use common::*;

#[test]
fn ids_are_deterministic_and_independent_of_ingress_and_source() {
    for name in expected_types().keys() {
        let body = fixture(name);
        let a = normalize(&body, &ctx(IngressKind::Webhook)).unwrap();
        let mut other = ctx(IngressKind::Stream);
        other.source = "/x/activity/stream/other".to_owned();
        other.received_at = Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap();
        let b = normalize(&body, &other).unwrap();
        let c = normalize(&body, &ctx(IngressKind::Replay)).unwrap();
        let ids = |v: &[Envelope]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b), "{name}");
        assert_eq!(ids(&a), ids(&c), "{name}");
        assert_eq!(b[0].ingress, IngressKind::Stream);
        assert_eq!(c[0].ingress, IngressKind::Replay);
        assert_eq!(b[0].source, "/x/activity/stream/other");
    }
}

#[test]
fn every_fixture_envelope_has_its_own_id() {
    let mut seen = HashSet::new();
    for name in expected_types().keys() {
        for e in norm(name) {
            assert!(seen.insert(e.id.clone()), "{name}: duplicate id {}", e.id);
        }
    }
}

#[test]
fn same_dm_for_two_subscribed_users_gets_two_ids() {
    let body = String::from_utf8(fixture("aaa/direct_message.received.json")).unwrap();
    let for_sender = body.replacen(
        "\"for_user_id\": \"4337869213\"",
        "\"for_user_id\": \"3001969357\"",
        1,
    );
    assert_ne!(body, for_sender);
    let recv = normalize(body.as_bytes(), &ctx(IngressKind::Webhook)).unwrap();
    let sent = normalize(for_sender.as_bytes(), &ctx(IngressKind::Webhook)).unwrap();
    assert_eq!(recv[0].event_type, "dm.received");
    assert_eq!(sent[0].event_type, "dm.sent");
    assert_eq!(recv[0].id, "4337869213:dm.received:954491830116155396");
    assert_eq!(sent[0].id, "3001969357:dm.sent:954491830116155396");
    assert_eq!(recv[0].objectid, sent[0].objectid);
}

#[test]
fn compact_and_pretty_deliveries_of_one_event_share_the_id() {
    for name in [
        "aaa/follow.json",
        "aaa/direct_message.typing.json",
        "aaa/replay_job_status.complete.json",
        "xaa/post.delete.json",
    ] {
        let pretty = fixture(name);
        let compact =
            serde_json::to_vec(&serde_json::from_slice::<Value>(&pretty).unwrap()).unwrap();
        let a = normalize(&pretty, &ctx(IngressKind::Webhook)).unwrap();
        let b = normalize(&compact, &ctx(IngressKind::Stream)).unwrap();
        assert_eq!(a[0].id, b[0].id, "{name}");
        assert_eq!(payload(&a[0]), payload(&b[0]), "{name}");
        assert!(!a[0].data.payload.get().contains(['\n', '\r']), "{name}");
    }
}

#[test]
fn fields_based_ids_tell_events_apart() {
    let follow = String::from_utf8(fixture("aaa/follow.json")).unwrap();
    let later = follow.replace("1517588749178", "1517588799999");
    let a = normalize(follow.as_bytes(), &ctx(IngressKind::Webhook)).unwrap();
    let b = normalize(later.as_bytes(), &ctx(IngressKind::Webhook)).unwrap();
    assert_eq!(
        a[0].id,
        "2244994945:follow.follow:3001969357:2244994945:1517588749178"
    );
    assert_ne!(a[0].id, b[0].id);
    let unfollow = normalize(&fixture("aaa/unfollow.json"), &ctx(IngressKind::Webhook)).unwrap();
    assert_ne!(a[0].id, unfollow[0].id);
    let c = one("aaa/replay_job_status.complete.json");
    let i = one("aaa/replay_job_status.incomplete.json");
    assert_eq!(c.id, "_:replay.job_status:1095098195724558337:Complete");
    assert_ne!(c.id, i.id);
}

#[test]
fn longform_post_keeps_the_exact_id_and_full_text() {
    let e = one("aaa/tweet_create.longform.json");
    assert_eq!(e.objectid.as_deref(), Some("1924465506158878979"));
    assert_eq!(e.id, "1603419180975409153:post.create:1924465506158878979");
    let p = payload(&e);
    let full = p["extended_tweet"]["full_text"].as_str().unwrap();
    assert!(full.len() > 1000, "{}", full.len());
    assert!(full.ends_with("@xai\n@HistoryInPics"));
    assert_eq!(p["truncated"], true);
    let json = String::from_utf8(e.to_json()).unwrap();
    assert!(
        json.contains("\"id_str\":\"1924465506158878979\""),
        "{json}"
    );
    // The rounded number stays exactly as X sent it and the 19-digit ids are not rounded.
    assert!(json.contains("\"id\":1924465506158879000"));
    assert!(json.contains("\"id_str\":\"1661523610111193088\""));
    assert!(json.contains("\"objectid\":\"1924465506158878979\""));
    assert!(!json.contains('\n'));
}

#[test]
fn envelope_serializes_with_the_spec_attribute_names_and_round_trips() {
    let e = one("aaa/tweet_create.mention.json");
    let json: Value = serde_json::from_slice(&e.to_json()).unwrap();
    let keys: HashSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let want: HashSet<&str> = [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "actorid",
        "targetid",
        "objectid",
        "ingress",
        "xformat",
        "data",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, want);
    assert_eq!(json["type"], "post.mention.create");
    assert_eq!(json["time"], "2025-05-19T14:32:52Z");
    assert_eq!(json["ingress"], "webhook");
    assert_eq!(json["data"]["payload"]["id_str"], "1924473333333333333");
    let back = Envelope::from_json(&e.to_json()).unwrap();
    assert_eq!(back.to_json(), e.to_json());
    assert_eq!(back.id, e.id);
    assert_eq!(back.time, e.time);
    assert_eq!(back.data.payload.get(), e.data.payload.get());
    // Absent attributes are omitted, not null.
    let post = one("aaa/tweet_create.post.json");
    let json: Value = serde_json::from_slice(&post.to_json()).unwrap();
    assert!(json.get("targetid").is_none());
}

fn unknown_one(body: &str) -> Envelope {
    let v = normalize(body.as_bytes(), &ctx(IngressKind::Webhook))
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(v.len(), 1, "{body}");
    assert_eq!(v[0].event_type, "unknown", "{body}");
    assert!(is_valid_id(&v[0].id), "{}", v[0].id);
    v.into_iter().next().unwrap()
}

#[test]
fn anything_else_valid_becomes_one_unknown_envelope_with_the_whole_object() {
    for body in [
        "{}",
        "[]",
        "[1,2,3]",
        "42",
        "\"text\"",
        "null",
        "true",
        r#"{"for_user_id":"1"}"#,
        r#"{"for_user_id":"1","new_thing_events":[{"id_str":"5"}]}"#,
        r#"{"for_user_id":"1","tweet_create_events":{"id_str":"5"}}"#,
        r#"{"for_user_id":"1","tweet_create_events":"nope"}"#,
        r#"{"for_user_id":"1","tweet_create_events":[]}"#,
        r#"{"for_user_id":"1","tweet_create_events":[1,"x",null]}"#,
        r#"{"for_user_id":"1","follow_events":[{"type":"poke"}]}"#,
        r#"{"user_event":{"grant":{}}}"#,
        r#"{"user_event":[]}"#,
        r#"{"replay_job_status":"done"}"#,
        r#"{"data":{"event_type":"post.create"}}"#,
        r#"{"data":{"event_type":"bad type!","payload":{}}}"#,
        r#"{"data":{"event_type":"x.>","payload":{}}}"#,
        r#"{"data":[1]}"#,
        r#"{"errors":"not an array"}"#,
    ] {
        let e = unknown_one(body);
        let whole: Value = serde_json::from_str(body).unwrap();
        assert_eq!(payload(&e), whole, "{body}");
        assert_eq!(e.time, received(), "{body}");
    }
    // The subject is kept when known, and the id depends on the content only.
    let a = unknown_one(r#"{"for_user_id":"7","x":[1]}"#);
    let b = unknown_one(r#"{ "x" : [1], "for_user_id" : "7" }"#);
    let c = unknown_one(r#"{"for_user_id":"7","x":[2]}"#);
    assert_eq!(a.subject, "7");
    assert!(a.id.starts_with("7:unknown:"));
    assert_eq!(a.id, b.id);
    assert_ne!(a.id, c.id);
    let x = unknown_one(r#"{"data":{"filter":{"user_id":"9"},"event_type":"post.create"}}"#);
    assert_eq!(x.subject, "9");
}

#[test]
fn understood_events_are_kept_and_the_rest_added_as_one_unknown() {
    let body = r#"{"for_user_id":"1",
        "tweet_create_events":[{"id_str":"1924480000000000001","user":{"id_str":"1"}}, 7],
        "brand_new_events":[{"a":1}]}"#;
    let v = normalize(body.as_bytes(), &ctx(IngressKind::Webhook)).unwrap();
    let types: Vec<_> = v.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["post.create", "unknown"]);
    assert_eq!(payload(&v[1]), serde_json::from_str::<Value>(body).unwrap());
    // Unknown scalar context keys are ignored.
    let v = normalize(
        br#"{"for_user_id":"1","shard":3,"tweet_create_events":[{"id_str":"5","user":{"id_str":"1"}}]}"#,
        &ctx(IngressKind::Webhook),
    )
    .unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].event_type, "post.create");
    // The separate unfollow/unblock/unmute keys.
    for (key, ty) in [
        ("unfollow_events", "follow.unfollow"),
        ("unblock_events", "block.unblock"),
        ("unmute_events", "mute.unmute"),
    ] {
        let body = format!(
            r#"{{"for_user_id":"1","{key}":[{{"created_timestamp":"1517588749178","source":{{"id_str":"1"}},"target":{{"id_str":"2"}}}}]}}"#
        );
        let v = normalize(body.as_bytes(), &ctx(IngressKind::Webhook)).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].event_type, ty);
        assert_eq!(v[0].actorid.as_deref(), Some("1"));
        assert_eq!(v[0].targetid.as_deref(), Some("2"));
    }
    // spaces_events pass through.
    let v = normalize(
        br#"{"for_user_id":"1","spaces_events":[{"a":1},{"a":2}]}"#,
        &ctx(IngressKind::Webhook),
    )
    .unwrap();
    assert_eq!(
        v.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["spaces.event", "spaces.event"]
    );
    assert_ne!(v[0].id, v[1].id);
}

#[test]
fn tweet_classification_precedence() {
    let t = |extra: &str| {
        let body = format!(
            r#"{{"for_user_id":"1","tweet_create_events":[{{"id_str":"1924480000000000001","user":{{"id_str":"2"}}{extra}}}]}}"#
        );
        normalize(body.as_bytes(), &ctx(IngressKind::Webhook)).unwrap()[0]
            .event_type
            .clone()
    };
    assert_eq!(
        t(
            r#","retweeted_status":{"id_str":"3"},"quoted_status":{},"in_reply_to_status_id_str":"4""#
        ),
        "post.repost.create"
    );
    assert_eq!(
        t(r#","quoted_status":{"id_str":"3"},"in_reply_to_status_id_str":"4""#),
        "post.quote.create"
    );
    assert_eq!(
        t(r#","is_quote_status":true,"in_reply_to_status_id_str":"4""#),
        "post.quote.create"
    );
    assert_eq!(
        t(r#","retweeted_status":null,"is_quote_status":false,"in_reply_to_status_id_str":"4""#),
        "post.reply.create"
    );
    assert_eq!(
        t(r#","in_reply_to_status_id_str":null"#),
        "post.mention.create"
    );
    assert_eq!(t(""), "post.mention.create");
}

/// AAA posts take XAA's meaning: what the subscribed user authors is `post.create`, their
/// replies, quotes and reposts included; someone else's post is a reply, quote or repost
/// only when it replies to, quotes or reposts the user.
#[test]
fn aaa_posts_are_classified_with_xaas_meaning() {
    let t = |author: &str, extra: &str| {
        let body = format!(
            r#"{{"for_user_id":"1","tweet_create_events":[{{"id_str":"1924480000000000001","user":{{"id_str":"{author}"}}{extra}}}]}}"#
        );
        let e = normalize(body.as_bytes(), &ctx(IngressKind::Webhook))
            .unwrap()
            .remove(0);
        (e.event_type, e.targetid)
    };
    let own = |ty: &str| (ty.to_owned(), None);
    let of_user = |ty: &str| (ty.to_owned(), Some("1".to_owned()));
    // The user's own reply, quote and repost.
    let reply_to_9 = r#","in_reply_to_status_id_str":"7","in_reply_to_user_id_str":"9""#;
    assert_eq!(t("1", reply_to_9), own("post.create"));
    assert_eq!(
        t(
            "1",
            r#","quoted_status":{"id_str":"7","user":{"id_str":"9"}}"#
        ),
        own("post.create")
    );
    assert_eq!(
        t(
            "1",
            r#","retweeted_status":{"id_str":"7","user":{"id_str":"9"}}"#
        ),
        own("post.create")
    );
    // Someone else's, of the user.
    assert_eq!(
        t(
            "2",
            r#","in_reply_to_status_id_str":"7","in_reply_to_user_id_str":"1""#
        ),
        of_user("post.reply.create")
    );
    assert_eq!(
        t(
            "2",
            r#","quoted_status":{"id_str":"7","user":{"id_str":"1"}}"#
        ),
        of_user("post.quote.create")
    );
    assert_eq!(
        t(
            "2",
            r#","retweeted_status":{"id_str":"7","user":{"id_str":"1"}}"#
        ),
        of_user("post.repost.create")
    );
    // Someone else's reply to, quote of or repost of a third user, delivered because it
    // mentions the user.
    assert_eq!(t("2", reply_to_9), of_user("post.mention.create"));
    assert_eq!(
        t(
            "2",
            r#","quoted_status":{"id_str":"7","user":{"id_str":"9"}}"#
        ),
        of_user("post.mention.create")
    );
    assert_eq!(
        t(
            "2",
            r#","retweeted_status":{"id_str":"7","user":{"id_str":"9"}}"#
        ),
        of_user("post.mention.create")
    );
}

#[test]
fn numeric_ids_are_never_used() {
    let body = br#"{"for_user_id":"1","tweet_create_events":[{"id":1924465506158879000,"user":{"id":1}}]}"#;
    let v = normalize(body, &ctx(IngressKind::Webhook)).unwrap();
    assert_eq!(v[0].event_type, "post.create");
    assert_eq!(v[0].objectid, None);
    assert_eq!(v[0].actorid, None);
    assert!(!v[0].id.contains("1924465506158879000"));
    // Numeric for_user_id: subject `_`, but different users still get different ids.
    let a = normalize(
        br#"{"for_user_id":1,"tweet_create_events":[{"id_str":"5"}]}"#,
        &ctx(IngressKind::Webhook),
    )
    .unwrap();
    let b = normalize(
        br#"{"for_user_id":2,"tweet_create_events":[{"id_str":"5"}]}"#,
        &ctx(IngressKind::Webhook),
    )
    .unwrap();
    assert_eq!(a[0].subject, "_");
    assert_ne!(a[0].id, b[0].id);
}

#[test]
fn xaa_errors_are_reported() {
    let body = br#"{"errors":[{"title":"operational-disconnect","detail":"This stream has been disconnected"},{"message":"second"}]}"#;
    match normalize(body, &ctx(IngressKind::Stream)) {
        Err(NormalizeError::XaaErrors { count, summary }) => {
            assert_eq!(count, 2);
            assert!(summary.contains("operational-disconnect"), "{summary}");
            assert!(summary.contains("second"), "{summary}");
        }
        other => panic!("{other:?}"),
    }
    match normalize(br#"{"errors":[]}"#, &ctx(IngressKind::Stream)) {
        Err(NormalizeError::XaaErrors { count, .. }) => assert_eq!(count, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_json_is_not_json() {
    let cases: &[&[u8]] = &[
        b"",
        b"   ",
        b"{",
        b"{\"a\":1} trailing",
        b"{\"a\":1}{\"b\":2}",
        b"\xff\xfe{}",
        b"{\"a\":\"\xc3\x28\"}",
        b"not json",
        b"{'a':1}",
    ];
    for body in cases {
        match normalize(body, &ctx(IngressKind::Webhook)) {
            Err(NormalizeError::NotJson { reason }) => assert!(!reason.is_empty()),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
}

#[test]
fn time_falls_back_to_snowflake_then_stream_then_receive_time() {
    let v = normalize(
        br#"{"for_user_id":"1","tweet_create_events":[{"id_str":"1924465506158878979","user":{"id_str":"1"}}]}"#,
        &ctx(IngressKind::Webhook),
    )
    .unwrap();
    assert_eq!(v[0].time.timestamp_millis(), 1747663306165);
    let v = normalize(
        br#"{"for_user_id":"1","created_at":"2024-01-15T10:30:00.000Z","tweet_create_events":[{"id":"5","author_id":"1"}]}"#,
        &ctx(IngressKind::Stream),
    )
    .unwrap();
    assert_eq!(v[0].time.to_rfc3339(), "2024-01-15T10:30:00+00:00");
    let v = normalize(
        br#"{"for_user_id":"1","tweet_create_events":[{"id":"5","created_at":"garbage","timestamp_ms":1522082006140}]}"#,
        &ctx(IngressKind::Webhook),
    )
    .unwrap();
    assert_eq!(v[0].time.timestamp_millis(), 1522082006140);
    let v = normalize(
        br#"{"for_user_id":"1","tweet_create_events":[{"id":"5"}]}"#,
        &ctx(IngressKind::Webhook),
    )
    .unwrap();
    assert_eq!(v[0].time, received());
}

#[test]
fn xaa_error_summary_is_short_and_single_line() {
    let long = "x\n".repeat(1000);
    let errors: Vec<Value> = (0..5)
        .map(|i| serde_json::json!({"title": format!("t{i}"), "detail": long}))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "errors": errors })).unwrap();
    match normalize(&body, &ctx(IngressKind::Stream)) {
        Err(NormalizeError::XaaErrors { count, summary }) => {
            assert_eq!(count, 5);
            assert!(summary.starts_with("t0: x x"), "{summary}");
            assert!(summary.chars().count() <= 301, "{}", summary.len());
            assert!(!summary.contains('\n'));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn revoke_without_a_user_still_gets_an_envelope() {
    let v = normalize(
        br#"{"user_event":{"revoke":{"date_time":"2018-05-24T09:48:12+00:00","target":{"app_id":"13090192"}}}}"#,
        &ctx(IngressKind::Webhook),
    )
    .unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].event_type, "oauth.revoke");
    assert_eq!(v[0].subject, "_");
    assert_eq!(v[0].actorid, None);
    assert_eq!(v[0].targetid.as_deref(), Some("13090192"));
    assert_eq!(v[0].id, "_:oauth.revoke:13090192:1527155292000");
}

#[test]
fn xaa_event_seen_on_webhook_and_stream_is_one_id() {
    let body = fixture("xaa/chat.sent.json");
    let a = normalize(&body, &ctx(IngressKind::Webhook)).unwrap();
    let b = normalize(&body, &ctx(IngressKind::Stream)).unwrap();
    assert_eq!(a[0].id, "1111111111111111111:chat.sent:3723060601307155846");
    assert_eq!(a[0].id, b[0].id);
}
