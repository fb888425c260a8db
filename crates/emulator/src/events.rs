//! What the emulator knows about an event body: its format, key, taxonomy types, X ids
//! and the subscribed user it is for.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The three delivery formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Account Activity API webhook body.
    Aaa,
    /// Activity stream line (`event_type` + `created_at`).
    Stream,
    /// X Activity API `{"data":…}` envelope.
    Xaa,
}

impl Format {
    /// All formats.
    pub const ALL: [Format; 3] = [Format::Aaa, Format::Stream, Format::Xaa];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Aaa => "aaa",
            Format::Stream => "stream",
            Format::Xaa => "xaa",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aaa" | "webhook" => Some(Format::Aaa),
            "stream" => Some(Format::Stream),
            "xaa" => Some(Format::Xaa),
            _ => None,
        }
    }
}

/// The AAA event keys, in the order they are looked for.
pub const AAA_KEYS: &[&str] = &[
    "tweet_create_events",
    "favorite_events",
    "follow_events",
    "unfollow_events",
    "block_events",
    "unblock_events",
    "mute_events",
    "unmute_events",
    "user_event",
    "direct_message_events",
    "direct_message_indicate_typing_events",
    "direct_message_mark_read_events",
    "tweet_delete_events",
    "spaces_events",
    "replay_job_status",
];

const CONTEXT_KEYS: &[&str] = &[
    "for_user_id",
    "users",
    "apps",
    "user_has_blocked",
    "event_type",
    "created_at",
];

/// What the emulator extracts from an event body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    /// Its format.
    pub format: Format,
    /// The AAA event key, or the XAA `event_type`.
    pub key: String,
    /// The envelope `type` of each single event it carries, in order.
    pub types: Vec<String>,
    /// X's id of each single event (or the identifying fields when X gives none).
    pub ids: Vec<String>,
    /// The subscribed user it is for, when one applies.
    pub for_user_id: Option<String>,
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn str_or_num(v: &Value, key: &str) -> String {
    let alt = format!("{key}_str");
    match v.get(&alt) {
        Some(Value::String(x)) => x.clone(),
        _ => s(v.get(key)),
    }
}

/// Detects the format of a body.
pub fn detect_format(v: &Value) -> Format {
    if let Some(d) = v.get("data") {
        if d.get("event_type").is_some() || d.get("event_uuid").is_some() {
            return Format::Xaa;
        }
    }
    if v.get("errors").is_some() && v.get("for_user_id").is_none() {
        return Format::Xaa;
    }
    if v.get("event_type").and_then(Value::as_str).is_some() {
        return Format::Stream;
    }
    Format::Aaa
}

/// The AAA key of an AAA or stream body.
pub fn aaa_key(v: &Value) -> Option<String> {
    if let Some(k) = v.get("event_type").and_then(Value::as_str) {
        if v.get(k).is_some() {
            return Some(k.to_owned());
        }
    }
    for k in AAA_KEYS {
        if v.get(*k).is_some() {
            return Some((*k).to_owned());
        }
    }
    v.as_object()?
        .keys()
        .find(|k| !CONTEXT_KEYS.contains(&k.as_str()))
        .cloned()
}

/// The XAA type of an AAA tweet for the subscribed user, with XAA's meaning (as X
/// delivers its twin): what the user authors is `post.create`; someone else's post is a
/// repost, quote or reply of the user when it reposts, quotes or replies to the user
/// (a referenced author X left out counts as the user's), else a mention.
pub(crate) fn tweet_type(t: &Value, for_user: Option<&str>) -> &'static str {
    let present = |k: &str| t.get(k).is_some_and(|x| !x.is_null());
    let author_of = |v: Option<&Value>| {
        v.and_then(|v| v.get("user"))
            .map(|u| str_or_num(u, "id"))
            .filter(|a| !a.is_empty())
    };
    let author =
        author_of(Some(t)).or_else(|| Some(s(t.get("author_id"))).filter(|a| !a.is_empty()));
    let reposted = present("retweeted_status");
    let quoted =
        present("quoted_status") || t.get("is_quote_status").and_then(Value::as_bool) == Some(true);
    let replied = present("in_reply_to_status_id_str");
    let (Some(u), Some(a)) = (for_user, author) else {
        return if reposted {
            "post.repost.create"
        } else if quoted {
            "post.quote.create"
        } else if replied {
            "post.reply.create"
        } else {
            "post.create"
        };
    };
    let the_users = |x: Option<String>| x.is_none_or(|x| x == u);
    let replied_to = Some(s(t.get("in_reply_to_user_id_str"))).filter(|x| !x.is_empty());
    if a == u {
        "post.create"
    } else if reposted && the_users(author_of(t.get("retweeted_status"))) {
        "post.repost.create"
    } else if quoted && the_users(author_of(t.get("quoted_status"))) {
        "post.quote.create"
    } else if replied && the_users(replied_to) {
        "post.reply.create"
    } else {
        "post.mention.create"
    }
}

fn items(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
        None => Vec::new(),
    }
}

/// Extracts format, key, types, ids and target user of a body.
pub fn inspect(v: &Value) -> EventInfo {
    let format = detect_format(v);
    if format == Format::Xaa {
        return inspect_xaa(v);
    }
    inspect_aaa(v, format)
}

/// What an XAA envelope carries: its `event_type`, `event_uuid` and user (the filter's,
/// or for a revoke the payload's).
fn inspect_xaa(v: &Value) -> EventInfo {
    let d = v.get("data");
    let key = d
        .and_then(|d| d.get("event_type"))
        .and_then(Value::as_str)
        .unwrap_or("errors")
        .to_owned();
    let id = s(d.and_then(|d| d.get("event_uuid")));
    let mut for_user = d
        .and_then(|d| d.get("filter"))
        .and_then(|f| f.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if for_user.is_none() && key == "oauth.revoke" {
        for_user = d
            .and_then(|d| d.get("payload"))
            .and_then(|p| p.get("user_id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    EventInfo {
        format: Format::Xaa,
        types: vec![key.clone()],
        key,
        ids: if id.is_empty() { vec![] } else { vec![id] },
        for_user_id: for_user,
    }
}

/// What an AAA body or stream line carries: its key, the type and id of each item
/// under it, and its user (`for_user_id`, or for a revoke its source).
fn inspect_aaa(v: &Value, format: Format) -> EventInfo {
    let key = aaa_key(v).unwrap_or_else(|| "unknown".into());
    let mut for_user = v
        .get("for_user_id")
        .map(|x| s(Some(x)))
        .filter(|x| !x.is_empty());
    let body = v.get(&key);
    let found = match key.as_str() {
        "tweet_create_events" => Found::each(body, |t| {
            (
                tweet_type(t, for_user.as_deref()).to_owned(),
                str_or_num(t, "id"),
            )
        }),
        "favorite_events" => Found::each(body, |f| ("like.create".into(), s(f.get("id")))),
        "follow_events" | "unfollow_events" => Found::relations(&key, body),
        "block_events" | "unblock_events" => Found::relations(&key, body),
        "mute_events" | "unmute_events" => Found::relations(&key, body),
        "user_event" => {
            let (found, user) = Found::revoke(body);
            if for_user.is_none() && !user.is_empty() {
                for_user = Some(user);
            }
            found
        }
        "direct_message_events" => Found::each(body, |m| {
            let sender = s(m.get("message_create").and_then(|c| c.get("sender_id")));
            let ty = if for_user.as_deref() == Some(sender.as_str()) {
                "dm.sent"
            } else {
                "dm.received"
            };
            (ty.into(), s(m.get("id")))
        }),
        "direct_message_indicate_typing_events" | "direct_message_mark_read_events" => {
            Found::dm_signals(&key, body)
        }
        "tweet_delete_events" => Found::each(body, |d| {
            let id = s(d.get("status").and_then(|x| x.get("id")));
            ("post.delete".into(), id)
        }),
        "replay_job_status" => Found {
            types: vec!["replay.job_status".into()],
            ids: vec![format!(
                "{}:{}",
                s(body.and_then(|b| b.get("job_id"))),
                s(body.and_then(|b| b.get("job_state")))
            )],
        },
        "spaces_events" => Found::each(body, |e| ("spaces.event".into(), s(e.get("id")))),
        _ => Found {
            types: vec!["unknown".into()],
            ids: vec![],
        },
    };
    EventInfo {
        format,
        key,
        types: found.types,
        ids: found.ids,
        for_user_id: for_user,
    }
}

/// The types and ids found under an AAA key.
struct Found {
    types: Vec<String>,
    ids: Vec<String>,
}

impl Found {
    /// The (type, id) of each item of `body`.
    fn each(body: Option<&Value>, f: impl FnMut(&Value) -> (String, String)) -> Self {
        let (types, ids) = items(body).into_iter().map(f).unzip();
        Self { types, ids }
    }

    /// Follows, blocks, mutes and their undoing: `family.type`, identified by type,
    /// source, target and time (X gives them no id).
    fn relations(key: &str, body: Option<&Value>) -> Self {
        let family = key.trim_end_matches("_events").trim_start_matches("un");
        Self::each(body, |e| {
            let t = e
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| key.trim_end_matches("_events").to_owned());
            let src = e
                .get("source")
                .map(|u| str_or_num(u, "id"))
                .unwrap_or_default();
            let tgt = e
                .get("target")
                .map(|u| str_or_num(u, "id"))
                .unwrap_or_default();
            let id = format!("{t}:{src}:{tgt}:{}", s(e.get("created_timestamp")));
            (format!("{family}.{t}"), id)
        })
    }

    /// A revoke (`user_event`), identified by user and time; and the revoking user.
    fn revoke(body: Option<&Value>) -> (Self, String) {
        let r = body.and_then(|b| b.get("revoke"));
        let user = s(r
            .and_then(|r| r.get("source"))
            .and_then(|x| x.get("user_id")));
        let found = Self {
            types: vec!["oauth.revoke".into()],
            ids: vec![format!(
                "revoke:{user}:{}",
                s(r.and_then(|r| r.get("date_time")))
            )],
        };
        (found, user)
    }

    /// Typing indicators and read receipts, identified by kind, sender, recipient and
    /// time.
    fn dm_signals(key: &str, body: Option<&Value>) -> Self {
        let read = key == "direct_message_mark_read_events";
        Self::each(body, |m| {
            let ty = if read {
                "dm.read"
            } else {
                "dm.indicate_typing"
            };
            let id = format!(
                "{}:{}:{}:{}",
                if read { "read" } else { "typing" },
                s(m.get("sender_id")),
                s(m.get("target").and_then(|t| t.get("recipient_id"))),
                s(m.get("created_timestamp"))
            );
            (ty.into(), id)
        })
    }
}

/// The stream shape of an AAA body: the same object plus `event_type` and `created_at`.
pub fn to_stream(aaa: &Value, created_at: &str) -> Value {
    let mut v = aaa.clone();
    if let (Some(key), Some(obj)) = (aaa_key(aaa), v.as_object_mut()) {
        obj.insert("event_type".into(), Value::String(key));
        obj.insert("created_at".into(), Value::String(created_at.to_owned()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_classify_as_expected() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let expected = std::fs::read_to_string(root.join("expected-types.json"))
            .expect("the repository's fixtures/expected-types.json");
        let expected: serde_json::Map<String, Value> =
            serde_json::from_str(&expected).expect("expected-types");
        for (file, types) in expected {
            let body: Value =
                serde_json::from_str(&std::fs::read_to_string(root.join(&file)).expect("read"))
                    .expect("json");
            let info = inspect(&body);
            let want: Vec<String> = serde_json::from_value(types).expect("types");
            assert_eq!(info.types, want, "{file}");
            assert_eq!(info.ids.len(), want.len(), "{file}");
        }
    }
}
