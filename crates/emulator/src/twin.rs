//! The XAA twin of an AAA body: what X delivers during the AAA-to-XAA overlap for the same
//! real event, once per format.
//!
//! The twin carries the X object ids both formats share (post, deleted post, like, DM
//! event), the same subscribed user (`filter.user_id` = `for_user_id`) and the XAA
//! `event_type` with XAA's meaning, so a relay that follows the contract gives both one id.
//! Events whose formats share no id (follow, block, mute, typing, read receipts, revoke)
//! get their own `event_uuid`, as X's do.

use serde_json::{json, Value};

use crate::events::{aaa_key, tweet_type};

/// The XAA objects for an AAA body (one per item of its event array), each with a fresh
/// `event_uuid` from `uuid`. Empty for bodies without an XAA equivalent (replay status,
/// spaces, unknown keys).
pub fn xaa_twins(aaa: &Value, uuid: &mut impl FnMut() -> i64) -> Vec<Value> {
    let Some(key) = aaa_key(aaa) else {
        return Vec::new();
    };
    let user = aaa
        .get("for_user_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let items: Vec<&Value> = match aaa.get(&key) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for item in items {
        let Some((event_type, filter, payload)) = twin_of(&key, item, aaa, user.as_deref()) else {
            continue;
        };
        out.push(json!({"data": {
            "event_uuid": uuid().to_string(),
            "filter": filter,
            "event_type": event_type,
            "tag": "cutover",
            "payload": payload,
        }}));
    }
    out
}

fn id_str(v: Option<&Value>) -> Option<String> {
    let v = v?;
    match v.get("id_str").or_else(|| v.get("id")) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn user_v2(id: Option<String>) -> Value {
    json!({"data": {"id": id.unwrap_or_default()}})
}

/// RFC 3339 from a v1.1 date (`Mon May 19 14:01:46 +0000 2025`).
fn rfc3339(v1: Option<&Value>) -> Option<String> {
    let s = v1?.as_str()?;
    chrono::DateTime::parse_from_str(s, "%a %b %d %H:%M:%S %z %Y")
        .ok()
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
}

/// The event type, filter and payload of an XAA twin.
type Twin = (String, Value, Value);

/// The filter of a twin for the subscribed user.
fn by_user(user: Option<&str>) -> Value {
    json!({"user_id": user.unwrap_or_default()})
}

/// The twin of one item under AAA key `key` of `body`, for the subscribed `user`.
fn twin_of(key: &str, item: &Value, body: &Value, user: Option<&str>) -> Option<Twin> {
    match key {
        "tweet_create_events" => post_twin(item, user),
        "favorite_events" => like_twin(item, user),
        "follow_events" | "unfollow_events" => relation_twin(key, item, user),
        "block_events" | "unblock_events" => relation_twin(key, item, user),
        "mute_events" | "unmute_events" => relation_twin(key, item, user),
        "direct_message_events" => dm_twin(item, body, user),
        "direct_message_indicate_typing_events" => {
            Some(("dm.indicate_typing".into(), by_user(user), item.clone()))
        }
        "direct_message_mark_read_events" => Some(("dm.read".into(), by_user(user), item.clone())),
        "tweet_delete_events" => delete_twin(item, user),
        "user_event" => revoke_twin(item),
        _ => None,
    }
}

/// A post's twin: its XAA post type for the user, text, author and references.
fn post_twin(item: &Value, user: Option<&str>) -> Option<Twin> {
    let ty = tweet_type(item, user);
    let mut refs = Vec::new();
    if let Some(id) = id_str(item.get("retweeted_status")) {
        refs.push(json!({"type": "retweeted", "id": id}));
    }
    if let Some(id) = id_str(item.get("quoted_status")) {
        refs.push(json!({"type": "quoted", "id": id}));
    }
    if let Some(Value::String(id)) = item.get("in_reply_to_status_id_str") {
        refs.push(json!({"type": "replied_to", "id": id}));
    }
    let id = id_str(Some(item))?;
    let text = item
        .get("extended_tweet")
        .and_then(|e| e.get("full_text"))
        .or_else(|| item.get("text"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut payload = json!({
        "id": id,
        "edit_history_tweet_ids": [id],
        "text": text,
        "author_id": id_str(item.get("user")),
        "created_at": rfc3339(item.get("created_at")),
    });
    if let Some(Value::String(u)) = item.get("in_reply_to_user_id_str") {
        payload["in_reply_to_user_id"] = json!(u);
    }
    if !refs.is_empty() {
        payload["referenced_tweets"] = Value::Array(refs);
    }
    Some((ty.to_owned(), by_user(user), payload))
}

/// A like's twin: `like.create`, outbound when the user liked, with the like's id.
fn like_twin(item: &Value, user: Option<&str>) -> Option<Twin> {
    let liker = id_str(item.get("user"));
    let fav = item.get("favorited_status");
    let author = fav.and_then(|f| id_str(f.get("user")));
    let direction = if liker.as_deref() == user {
        "outbound"
    } else {
        "inbound"
    };
    let ms = match item.get("timestamp_ms") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    Some((
        "like.create".into(),
        json!({"user_id": user.unwrap_or_default(), "direction": direction}),
        json!({
            "id": item.get("id").cloned().unwrap_or(Value::Null),
            "created_at": rfc3339(fav.and_then(|f| f.get("created_at"))),
            "timestamp_ms": ms,
            "liked_tweet_id": id_str(fav),
            "liked_tweet_author_id": author,
        }),
    ))
}

/// A follow, block or mute (or its undoing)'s twin: `family.type` with both users.
fn relation_twin(key: &str, item: &Value, user: Option<&str>) -> Option<Twin> {
    let family = key.trim_end_matches("_events").trim_start_matches("un");
    let default = key.trim_end_matches("_events");
    let t = item.get("type").and_then(Value::as_str).unwrap_or(default);
    Some((
        format!("{family}.{t}"),
        by_user(user),
        json!({
            "source": user_v2(id_str(item.get("source"))),
            "target": user_v2(id_str(item.get("target"))),
        }),
    ))
}

/// A direct message's twin: sent when the user is its sender, with the body's users.
fn dm_twin(item: &Value, body: &Value, user: Option<&str>) -> Option<Twin> {
    let sender = item
        .get("message_create")
        .and_then(|m| m.get("sender_id"))
        .and_then(Value::as_str);
    let ty = if sender.is_some() && sender == user {
        "dm.sent"
    } else {
        "dm.received"
    };
    Some((
        ty.into(),
        by_user(user),
        json!({
            "direct_message_events": [item],
            "users": body.get("users").cloned().unwrap_or(json!({})),
        }),
    ))
}

/// A deleted post's twin: `post.delete` with the post and author ids.
fn delete_twin(item: &Value, user: Option<&str>) -> Option<Twin> {
    let st = item.get("status")?;
    Some((
        "post.delete".into(),
        by_user(user),
        json!({"id": st.get("id"), "author_id": st.get("user_id")}),
    ))
}

/// A revoke's twin: `oauth.revoke` with an empty filter.
fn revoke_twin(item: &Value) -> Option<Twin> {
    let r = item.get("revoke")?;
    Some((
        "oauth.revoke".into(),
        json!({}),
        json!({
            "user_id": r.get("source").and_then(|s| s.get("user_id")),
            "app_id": r.get("target").and_then(|t| t.get("app_id")),
            "date_time": r.get("date_time"),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_like_and_its_twin_share_the_like_id_and_user() {
        let aaa = json!({"for_user_id": "1", "favorite_events": [{
            "id": "abc123", "timestamp_ms": 1700000000123u64,
            "favorited_status": {"id_str": "55", "user": {"id_str": "9"}, "created_at": "Mon May 19 14:01:46 +0000 2025"},
            "user": {"id_str": "1"}
        }]});
        let mut n = 0;
        let twins = xaa_twins(&aaa, &mut || {
            n += 1;
            n
        });
        assert_eq!(twins.len(), 1);
        let d = &twins[0]["data"];
        assert_eq!(d["event_type"], "like.create");
        assert_eq!(d["filter"]["user_id"], "1");
        assert_eq!(d["filter"]["direction"], "outbound");
        assert_eq!(d["payload"]["id"], "abc123");
        assert_eq!(d["payload"]["liked_tweet_id"], "55");
        assert_eq!(d["payload"]["timestamp_ms"], "1700000000123");
    }

    #[test]
    fn a_batch_gives_one_twin_per_post_and_replay_status_none() {
        let aaa = json!({"for_user_id": "1", "tweet_create_events": [
            {"id_str": "10", "user": {"id_str": "1"}, "text": "a"},
            {"id_str": "11", "user": {"id_str": "2"}, "text": "b", "in_reply_to_status_id_str": "10", "in_reply_to_user_id_str": "1"}
        ]});
        let twins = xaa_twins(&aaa, &mut || 7);
        let types: Vec<&str> = twins
            .iter()
            .map(|t| t["data"]["event_type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(types, ["post.create", "post.reply.create"]);
        assert_eq!(twins[1]["data"]["payload"]["id"], "11");
        let status = json!({"replay_job_status": {"job_id": "1", "job_state": "Complete"}});
        assert!(xaa_twins(&status, &mut || 7).is_empty());
    }
}
