//! The AAA-to-XAA cutover: one real event that X delivers once per format must give one
//! envelope id and one type (`fixtures/twins/`), so that it is published once.

use std::collections::BTreeMap;

use relay_envelope::XFormat;

mod common;
use common::*;

#[test]
fn each_twin_pair_gets_one_id_and_one_type() {
    let pairs: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&fixture("twins/expected-same-id.json")).unwrap();
    for kind in ["like", "post", "own_reply", "reply", "delete", "dm"] {
        assert!(pairs.contains_key(kind), "no {kind} pair");
    }
    for (kind, files) in &pairs {
        assert_eq!(files.len(), 2, "{kind}");
        let envs: Vec<_> = files.iter().map(|f| one(f)).collect();
        let (a, x) = (&envs[0], &envs[1]);
        assert_eq!(a.xformat, Some(XFormat::Aaa), "{kind}: {}", files[0]);
        assert_eq!(x.xformat, Some(XFormat::Xaa), "{kind}: {}", files[1]);
        assert_eq!(a.id, x.id, "{kind}: one event, one id");
        assert_eq!(a.event_type, x.event_type, "{kind}: one event, one type");
        assert_eq!(a.subject, x.subject, "{kind}");
        assert_eq!(a.objectid, x.objectid, "{kind}");
    }
}

#[test]
fn the_users_own_reply_is_a_post_create_in_both_formats() {
    assert_eq!(one("twins/own_reply.aaa.json").event_type, "post.create");
    assert_eq!(one("twins/own_reply.xaa.json").event_type, "post.create");
    assert_eq!(one("twins/reply.aaa.json").event_type, "post.reply.create");
}

#[test]
fn the_like_twins_agree_on_time_to_the_millisecond() {
    let a = one("twins/like.aaa.json");
    let x = one("twins/like.xaa.json");
    assert_eq!(a.time, x.time);
    assert_eq!(a.time.timestamp_millis(), 1_784_927_565_236);
}
