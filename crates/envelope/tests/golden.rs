//! Golden tests over every fixture of `fixtures/`, plus the id, time and attribute rules.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use relay_envelope::{is_valid_id, normalize, Context, Envelope, IngressKind, NormalizeError};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(FIXTURES).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
}

fn ctx(ingress: IngressKind) -> Context {
    Context {
        ingress,
        source: "/x/account-activity/webhook/test-app".to_owned(),
        received_at: received(),
    }
}

fn norm(name: &str) -> Vec<Envelope> {
    normalize(&fixture(name), &ctx(IngressKind::Webhook)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn one(name: &str) -> Envelope {
    let mut v = norm(name);
    assert_eq!(v.len(), 1, "{name}");
    v.remove(0)
}

fn payload(e: &Envelope) -> Value {
    serde_json::from_str(e.data.payload.get()).unwrap()
}

fn expected_types() -> BTreeMap<String, Vec<String>> {
    serde_json::from_slice(&fixture("expected-types.json")).unwrap()
}

/// (type, subject, time, actorid, targetid, objectid)
type Spot = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

fn check(name: &str, e: &Envelope, want: Spot) {
    let (ty, subject, time, actor, target, object) = want;
    assert_eq!(e.event_type, ty, "{name} type");
    assert_eq!(e.subject, subject, "{name} subject");
    assert_eq!(
        e.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        time,
        "{name} time"
    );
    assert_eq!(e.actorid.as_deref(), actor, "{name} actorid");
    assert_eq!(e.targetid.as_deref(), target, "{name} targetid");
    assert_eq!(e.objectid.as_deref(), object, "{name} objectid");
}

#[test]
fn every_fixture_gives_exactly_the_expected_types_in_order() {
    let expected = expected_types();
    assert!(
        expected.len() >= 50,
        "expected-types.json lists {} files",
        expected.len()
    );
    for (name, types) in &expected {
        let got: Vec<String> = norm(name).into_iter().map(|e| e.event_type).collect();
        assert_eq!(&got, types, "{name}");
    }
}

#[test]
fn every_fixture_envelope_is_well_formed() {
    for name in expected_types().keys() {
        for e in norm(name) {
            assert!(is_valid_id(&e.id), "{name}: bad id {}", e.id);
            assert!(
                e.id.starts_with(&format!("{}:{}:", e.subject, e.event_type)),
                "{name}: {}",
                e.id
            );
            assert_eq!(e.specversion, "1.0");
            assert_eq!(e.datacontenttype, "application/json");
            assert_eq!(e.source, "/x/account-activity/webhook/test-app");
            assert_eq!(e.ingress, IngressKind::Webhook);
            assert!(payload(&e).is_object(), "{name}");
            assert!(
                !e.data.payload.get().contains('\n'),
                "{name}: payload spans lines"
            );
            // The time comes from the event itself for every AAA/stream fixture but the
            // replay status (XAA follow/profile/spaces/delete payloads carry no time).
            if !name.starts_with("xaa/") && e.event_type != "replay.job_status" {
                assert_ne!(e.time, received(), "{name}: fell back to the receive time");
            }
            // Attributes never hold a rounded number.
            for a in [&e.actorid, &e.targetid, &e.objectid].into_iter().flatten() {
                assert!(
                    !a.ends_with("000") || a.len() < 16,
                    "{name}: suspicious id {a}"
                );
            }
        }
    }
}

#[test]
fn aaa_spot_checks() {
    let cases: &[(&str, Spot)] = &[
        (
            "aaa/tweet_create.post.json",
            (
                "post.create",
                "2244994945",
                "2025-05-19T14:01:46Z",
                Some("2244994945"),
                None,
                Some("1924465506158878979"),
            ),
        ),
        (
            "aaa/tweet_create.reply.json",
            (
                "post.reply.create",
                "2244994945",
                "2025-05-19T14:19:37Z",
                Some("3001969357"),
                Some("2244994945"),
                Some("1924470000000000001"),
            ),
        ),
        (
            "aaa/tweet_create.repost.json",
            (
                "post.repost.create",
                "2244994945",
                "2025-05-19T14:24:02Z",
                Some("3001969357"),
                Some("2244994945"),
                Some("1924471111111111111"),
            ),
        ),
        (
            "aaa/tweet_create.quote.json",
            (
                "post.quote.create",
                "2244994945",
                "2025-05-19T14:28:27Z",
                Some("3001969357"),
                Some("2244994945"),
                Some("1924472222222222222"),
            ),
        ),
        (
            "aaa/tweet_create.mention.json",
            (
                "post.mention.create",
                "2244994945",
                "2025-05-19T14:32:52Z",
                Some("783214"),
                Some("2244994945"),
                Some("1924473333333333333"),
            ),
        ),
        (
            "aaa/tweet_create.longform.json",
            (
                "post.create",
                "1603419180975409153",
                "2025-05-19T14:01:46Z",
                Some("1603419180975409153"),
                None,
                Some("1924465506158878979"),
            ),
        ),
        (
            "aaa/favorite.json",
            (
                "like.create",
                "2244994945",
                "2018-03-26T16:33:26Z",
                Some("3001969357"),
                Some("2244994945"),
                Some("977921488357154817"),
            ),
        ),
        (
            "aaa/follow.json",
            (
                "follow.follow",
                "2244994945",
                "2018-02-02T16:25:49.178Z",
                Some("3001969357"),
                Some("2244994945"),
                None,
            ),
        ),
        (
            "aaa/unfollow.json",
            (
                "follow.unfollow",
                "2244994945",
                "2018-02-02T16:25:49.178Z",
                Some("3001969357"),
                Some("2244994945"),
                None,
            ),
        ),
        (
            "aaa/block.json",
            (
                "block.block",
                "2244994945",
                "2018-02-02T16:25:49.178Z",
                Some("2244994945"),
                Some("3001969357"),
                None,
            ),
        ),
        (
            "aaa/unblock.json",
            (
                "block.unblock",
                "2244994945",
                "2018-02-02T16:25:49.178Z",
                Some("2244994945"),
                Some("3001969357"),
                None,
            ),
        ),
        (
            "aaa/mute.json",
            (
                "mute.mute",
                "2244994945",
                "2018-02-02T16:25:49.178Z",
                Some("2244994945"),
                Some("3001969357"),
                None,
            ),
        ),
        (
            "aaa/unmute.json",
            (
                "mute.unmute",
                "2244994945",
                "2018-02-02T16:25:49.178Z",
                Some("2244994945"),
                Some("3001969357"),
                None,
            ),
        ),
        (
            "aaa/user_event.revoke.json",
            (
                "oauth.revoke",
                "63046977",
                "2018-05-24T09:48:12Z",
                Some("63046977"),
                Some("13090192"),
                None,
            ),
        ),
        (
            "aaa/direct_message.received.json",
            (
                "dm.received",
                "4337869213",
                "2018-01-19T23:12:40.557Z",
                Some("3001969357"),
                Some("4337869213"),
                Some("954491830116155396"),
            ),
        ),
        (
            "aaa/direct_message.sent.json",
            (
                "dm.sent",
                "3001969357",
                "2018-01-19T23:13:10.557Z",
                Some("3001969357"),
                Some("4337869213"),
                Some("954491830116155397"),
            ),
        ),
        (
            "aaa/direct_message.typing.json",
            (
                "dm.indicate_typing",
                "4337869213",
                "2018-02-08T21:59:43.443Z",
                Some("3001969357"),
                Some("4337869213"),
                None,
            ),
        ),
        (
            "aaa/direct_message.read.json",
            (
                "dm.read",
                "4337869213",
                "2018-02-12T16:20:44.662Z",
                Some("3001969357"),
                Some("4337869213"),
                Some("963085315333238788"),
            ),
        ),
        (
            "aaa/tweet_delete.json",
            (
                "post.delete",
                "930524282358325248",
                "2015-05-21T17:09:15.593Z",
                Some("930524282358325248"),
                None,
                Some("1045405559317569537"),
            ),
        ),
        (
            "aaa/replay_job_status.complete.json",
            (
                "replay.job_status",
                "_",
                "2030-01-02T03:04:05Z",
                None,
                None,
                Some("1095098195724558337"),
            ),
        ),
        (
            "stream/tweet_create.json",
            (
                "post.create",
                "2244994945",
                "2024-01-15T10:30:00Z",
                Some("2244994945"),
                None,
                Some("1234567890"),
            ),
        ),
        (
            "stream/favorite.json",
            (
                "like.create",
                "2244994945",
                "2024-01-15T10:31:00Z",
                Some("3001969357"),
                Some("2244994945"),
                Some("1234567890"),
            ),
        ),
    ];
    for (name, want) in cases {
        check(name, &one(name), *want);
    }
}

#[test]
fn xaa_spot_checks() {
    let u = "1111111111111111111";
    let cases: &[(&str, Spot)] = &[
        (
            "xaa/post.create.json",
            (
                "post.create",
                u,
                "2026-07-24T21:05:48Z",
                Some(u),
                None,
                Some("2080761390344937796"),
            ),
        ),
        (
            "xaa/post.reply.create.json",
            (
                "post.reply.create",
                u,
                "2026-08-12T18:00:00Z",
                Some("2222222222222222222"),
                Some(u),
                Some("2090000000000000001"),
            ),
        ),
        (
            "xaa/post.mention.create.json",
            (
                "post.mention.create",
                u,
                "2026-07-24T21:23:23Z",
                Some("2222222222222222222"),
                Some(u),
                Some("2080765813578191303"),
            ),
        ),
        (
            "xaa/post.quote.create.json",
            (
                "post.quote.create",
                u,
                "2026-08-12T18:05:00Z",
                Some("2222222222222222222"),
                None,
                Some("2090000000000000002"),
            ),
        ),
        (
            "xaa/post.delete.json",
            (
                "post.delete",
                u,
                "2030-01-02T03:04:05Z",
                Some(u),
                None,
                Some("2080761269309813134"),
            ),
        ),
        (
            "xaa/like.create.json",
            (
                "like.create",
                u,
                "2026-07-24T21:12:45Z",
                Some(u),
                Some("3333333333333333333"),
                Some("2079814480427442556"),
            ),
        ),
        (
            "xaa/follow.follow.json",
            (
                "follow.follow",
                u,
                "2030-01-02T03:04:05Z",
                Some(u),
                Some("4444444444444444444"),
                None,
            ),
        ),
        (
            "xaa/dm.received.json",
            (
                "dm.received",
                u,
                "2026-07-24T21:23:44.372Z",
                Some("2222222222222222222"),
                Some(u),
                Some("2080765901528535096"),
            ),
        ),
        (
            "xaa/dm.sent.json",
            (
                "dm.sent",
                u,
                "2026-07-24T21:15:50.704Z",
                Some(u),
                Some("2244994945"),
                Some("2080763914820927863"),
            ),
        ),
        (
            "xaa/chat.received.json",
            (
                "chat.received",
                u,
                "2026-07-23T21:13:03.370Z",
                Some("2222222222222222222"),
                None,
                Some("e4f4d3fc-8bbf-4928-92eb-e5058d6bb6f6"),
            ),
        ),
        (
            "xaa/oauth.revoke.json",
            (
                "oauth.revoke",
                u,
                "2026-07-23T21:44:05Z",
                Some(u),
                Some("29820954"),
                None,
            ),
        ),
        (
            "xaa/profile.update.bio.json",
            (
                "profile.update.bio",
                u,
                "2030-01-02T03:04:05Z",
                Some(u),
                None,
                None,
            ),
        ),
        (
            "xaa/news.new.json",
            (
                "news.new",
                "_",
                "2026-07-24T20:53:37Z",
                None,
                None,
                Some("2080756868147019827"),
            ),
        ),
        (
            "xaa/spaces.start.json",
            (
                "spaces.start",
                u,
                "2030-01-02T03:04:05Z",
                Some(u),
                None,
                Some("1qxvvvyLLdnxB"),
            ),
        ),
        (
            "xaa/broadcast.start.json",
            (
                "broadcast.start",
                "1234567890123456789",
                "2024-07-03T09:46:43.500Z",
                Some("1234567890123456789"),
                None,
                Some("1a2b3c4d5e6fG"),
            ),
        ),
        (
            "xaa/broadcast.chat.json",
            (
                "broadcast.chat",
                u,
                "2026-08-19T08:56:44.979Z",
                Some(u),
                None,
                Some("2090000000000000004"),
            ),
        ),
    ];
    for (name, want) in cases {
        check(name, &one(name), *want);
    }
    // XAA ids are built from event_uuid, negative ones included.
    assert_eq!(
        one("xaa/dm.received.json").id,
        format!("{u}:dm.received:-6850472171600526495")
    );
    assert_eq!(
        one("xaa/post.create.json").id,
        format!("{u}:post.create:2080761390344937796")
    );
}

#[test]
fn includes_carry_users_apps_and_user_has_blocked_or_xaa_includes() {
    let dm = one("aaa/direct_message.received.json");
    let inc: Value = serde_json::from_str(dm.data.includes.as_ref().unwrap().get()).unwrap();
    assert_eq!(inc["apps"]["13090192"]["name"], "FuriousCamperTestApp1");
    assert_eq!(inc["users"]["3001969357"]["screen_name"], "furiouscamper");
    let mention = one("aaa/tweet_create.mention.json");
    let inc: Value = serde_json::from_str(mention.data.includes.as_ref().unwrap().get()).unwrap();
    assert_eq!(inc, serde_json::json!({"user_has_blocked": "false"}));
    assert!(one("aaa/tweet_create.post.json").data.includes.is_none());
    let like = one("xaa/like.create.json");
    let inc: Value = serde_json::from_str(like.data.includes.as_ref().unwrap().get()).unwrap();
    assert_eq!(inc["users"][0]["id"], "3333333333333333333");
    // `"includes": {}` is omitted, also from the serialized form.
    let quote = one("xaa/post.quote.create.json");
    assert!(quote.data.includes.is_none());
    let json: Value = serde_json::from_slice(&quote.to_json()).unwrap();
    assert!(json["data"].get("includes").is_none());
}

#[test]
fn payload_is_the_original_item() {
    for name in [
        "aaa/direct_message.sent.json",
        "aaa/favorite.json",
        "aaa/tweet_delete.json",
    ] {
        let body: Value = serde_json::from_slice(&fixture(name)).unwrap();
        let key = body
            .as_object()
            .unwrap()
            .keys()
            .find(|k| k.ends_with("_events"))
            .unwrap()
            .clone();
        assert_eq!(payload(&one(name)), body[&key][0], "{name}");
    }
    let body: Value = serde_json::from_slice(&fixture("xaa/follow.follow.json")).unwrap();
    assert_eq!(
        payload(&one("xaa/follow.follow.json")),
        body["data"]["payload"]
    );
    let body: Value = serde_json::from_slice(&fixture("aaa/user_event.revoke.json")).unwrap();
    assert_eq!(
        payload(&one("aaa/user_event.revoke.json")),
        body["user_event"]["revoke"]
    );
}

#[test]
fn batch_is_split_in_order_with_one_id_each() {
    let v = norm("aaa/tweet_create.batch3.json");
    let objects: Vec<_> = v.iter().map(|e| e.objectid.clone().unwrap()).collect();
    assert_eq!(
        objects,
        [
            "1924480000000000001",
            "1924480000000000011",
            "1924480000000000021"
        ]
    );
    let ids: HashSet<_> = v.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), 3);
    let times: Vec<_> = v.iter().map(|e| e.time.to_rfc3339()).collect();
    assert_eq!(
        times,
        [
            "2025-05-19T14:50:00+00:00",
            "2025-05-19T14:51:00+00:00",
            "2025-05-19T14:52:00+00:00"
        ]
    );
}

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
