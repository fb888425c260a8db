//! Golden tests over every fixture of `fixtures/`: types, attributes, payloads.

use std::collections::HashSet;

use relay_envelope::{is_valid_id, IngressKind, XFormat};
use serde_json::Value;

mod common;
use common::*;

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
                // `timestamp_ms` (milliseconds) wins over the seconds of `created_at`.
                "2025-05-19T14:01:46.165Z",
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
                "2025-05-19T14:01:46.165Z",
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
                "2018-03-26T16:33:26.140Z",
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
                Some(u),
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
                // The like's `timestamp_ms`, not `created_at` (the liked post's).
                "2026-07-24T21:12:45.236Z",
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
    // XAA ids: the X object id both formats carry (post, deleted post, like, DM event) ...
    assert_eq!(
        one("xaa/dm.received.json").id,
        format!("{u}:dm.received:2080765901528535096")
    );
    assert_eq!(
        one("xaa/post.delete.json").id,
        format!("{u}:post.delete:2080761269309813134")
    );
    assert_eq!(
        one("xaa/like.create.json").id,
        format!("{u}:like.create:87719f50ee17bdfa06a3089098a2b9ed")
    );
    // ... and event_uuid, negative ones included, where the formats share none.
    assert_eq!(
        one("xaa/follow.follow.json").id,
        format!("{u}:follow.follow:-7953119945885597316")
    );
}

/// The 16 XAA types whose fixtures this repository built from X's published shapes.
#[test]
fn xaa_spot_checks_of_the_types_x_shows_no_example_of() {
    let u = "1111111111111111111";
    let o = "2222222222222222222";
    let received = "2030-01-02T03:04:05Z";
    let mut cases: Vec<(String, Spot)> = Vec::new();
    for ty in ["handle", "verified_badge", "affiliate_badge"] {
        let ty: &'static str = Box::leak(format!("profile.update.{ty}").into_boxed_str());
        cases.push((
            format!("xaa/{ty}.json"),
            (ty, u, received, Some(u), None, None),
        ));
    }
    let chats: [(&str, &str, &str, &str); 7] = [
        ("chat.conversation.join", u, "2026-07-23T21:15:00Z", "51"),
        (
            "chat.conversation.member_added",
            o,
            "2026-07-23T21:15:10Z",
            "52",
        ),
        (
            "chat.conversation.member_removed",
            o,
            "2026-07-23T21:15:20Z",
            "53",
        ),
        (
            "chat.conversation.admin_added",
            o,
            "2026-07-23T21:15:30Z",
            "54",
        ),
        (
            "chat.conversation.admin_removed",
            o,
            "2026-07-23T21:15:40Z",
            "55",
        ),
        ("chat.update.group_name", o, "2026-07-23T21:15:50Z", "56"),
        ("chat.update.restrictions", o, "2026-07-23T21:16:00Z", "57"),
    ];
    for (ty, actor, time, n) in chats {
        let object: &'static str =
            Box::leak(format!("0c4e0f0a-3d7e-4b48-9f0e-6a1b2c3d4e{n}").into_boxed_str());
        cases.push((
            format!("xaa/{ty}.json"),
            (ty, u, time, Some(actor), None, Some(object)),
        ));
    }
    cases.push((
        "xaa/dm.read.json".into(),
        (
            "dm.read",
            u,
            "2026-07-24T21:25:00Z",
            Some(o),
            Some(u),
            Some("2080765901528535096"),
        ),
    ));
    cases.push((
        "xaa/dm.indicate_typing.json".into(),
        (
            "dm.indicate_typing",
            u,
            "2026-07-24T21:24:50Z",
            Some(o),
            Some(u),
            None,
        ),
    ));
    for ty in ["mute.mute", "mute.unmute", "block.block", "block.unblock"] {
        cases.push((
            format!("xaa/{ty}.json"),
            (ty, u, received, Some(u), Some("4444444444444444444"), None),
        ));
    }
    assert_eq!(cases.len(), 16);
    for (name, want) in &cases {
        check(name, &one(name), *want);
    }
}

#[test]
fn every_one_of_the_42_xaa_types_has_a_fixture() {
    let covered: HashSet<String> = expected_types()
        .into_iter()
        .filter(|(name, _)| name.starts_with("xaa/"))
        .flat_map(|(_, types)| types)
        .collect();
    for ty in relay_envelope::taxonomy::XAA_TYPES {
        assert!(covered.contains(ty), "no xaa/ fixture gives {ty}");
    }
}

#[test]
fn every_envelope_says_its_format() {
    for name in expected_types().keys() {
        let want = if name.starts_with("xaa/") {
            XFormat::Xaa
        } else {
            XFormat::Aaa
        };
        for e in norm(name) {
            assert_eq!(e.xformat, Some(want), "{name}");
        }
    }
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
