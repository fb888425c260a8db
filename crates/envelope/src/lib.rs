//! `relay-envelope`: the one event format activity-relay publishes.
//!
//! * [`Envelope`]: a CloudEvents 1.0 event (JSON format) as specified in
//!   `docs/spec/envelope.md`; `data.payload` keeps the original event object's bytes.
//! * [`normalize`]: one delivery (AAA webhook body, activity-stream line or X Activity API
//!   object) to envelopes, one per event. Pure: no I/O, no panics on any input.
//! * [`DeadLetter`]: what the relay stores for an authentic body it cannot parse.
//!
//! # What `normalize` does
//!
//! The body must be UTF-8 JSON (one value, nothing after it) or the result is
//! [`NormalizeError::NotJson`]. Then, by shape:
//!
//! * **AAA / stream**: an object with one or more known event keys. Array keys give one
//!   envelope per item, in order; `user_event.revoke` and `replay_job_status` (objects) give
//!   one. The stream format is the same object plus `event_type` (ignored: the key present
//!   decides) and `created_at` (used as the time of events that have none of their own).
//! * **XAA**: `{"data":{event_uuid, filter, event_type, tag?, payload, includes?}}` gives one
//!   envelope whose `type` is `event_type` as it is (when it is 1–40 characters of dot
//!   separated `[A-Za-z0-9_]+` segments: anything else could break routing and gives
//!   `unknown`). `{"errors":[...]}` gives [`NormalizeError::XaaErrors`].
//! * **Anything else** (not an object, no known key, an event key of the wrong JSON type, an
//!   array item that is not an object, a follow/block/mute item with an unknown `type`, an
//!   unknown key holding an object or array next to known ones, …) adds exactly one
//!   `unknown` envelope whose payload is the whole delivery. Unknown keys holding scalars are
//!   ignored (context). So `Ok` always holds at least one envelope and nothing is dropped.
//!
//! ## Attributes per type
//!
//! Ids are only taken from JSON **strings** (`id_str`, or `id` when it is a string, as in
//! DMs, XAA and the stream format), never from numbers (X rounds them), and only when they
//! are 1–64 characters of `[A-Za-z0-9_-]`; otherwise the attribute is absent.
//!
//! | `type` | actorid | targetid | objectid |
//! |---|---|---|---|
//! | `post.create` | author (`user.id_str`, else `author_id`) | – | post `id_str` |
//! | `post.reply.create` | author | `in_reply_to_user_id_str` | post |
//! | `post.quote.create` | author | the subscribed user (AAA without one: author of `quoted_status`) | post |
//! | `post.repost.create` | author | the subscribed user (AAA without one: author of `retweeted_status`) | post |
//! | `post.mention.create` | author | the subscribed user | post |
//! | `post.delete` | `status.user_id` (XAA `author_id`) | – | `status.id` (XAA `id`) |
//! | `like.create` | liker `user` (XAA outbound: the filter user; inbound: absent, X does not say) | author of the liked post | liked post |
//! | `follow.*`, `block.*`, `mute.*` | `source` (XAA block/mute without it: the filter user) | `target` | – |
//! | `dm.sent`, `dm.received` | `sender_id` | `recipient_id` | DM event `id` |
//! | `dm.indicate_typing` | `sender_id` | `recipient_id` | – |
//! | `dm.read` | `sender_id` | `recipient_id` | `last_read_event_id` |
//! | `oauth.revoke` | revoking user | app id | – |
//! | `replay.job_status` | – | – | `job_id` |
//! | XAA `chat.*` | `sender_id` | – | message `id` |
//! | XAA `profile.*` | the filter user | – | – |
//! | XAA `spaces.*`, `broadcast.*` | `user`/`author` `data.id` | – | `message_id`, else `broadcast_id` |
//! | XAA `news.*` | – | – | story `id` |
//! | `spaces.event`, `unknown` | – | – | – |
//!
//! Tweets take XAA's meaning (so an AAA tweet and its XAA twin get one type): authored by
//! the subscribed user (`for_user_id`) → `post.create`, their own replies, quotes and
//! reposts included; else a repost of the user's post (`retweeted_status`) → repost; else a
//! quote of it (`quoted_status`, `is_quote_status`) → quote; else a reply to the user →
//! reply; else → mention. A referenced post or user X left out counts as the user's. When
//! the subscribed user or the author is unknown, the structure alone decides (repost,
//! quote, reply, else post). DMs are `dm.sent` when `sender_id` equals `for_user_id`, else
//! `dm.received`.
//!
//! ## subject
//!
//! `for_user_id`; XAA `filter.user_id`; for `oauth.revoke` the revoking user
//! (`source.user_id`, XAA `payload.user_id`); `_` when none applies. A user id that is not a
//! string of 1–20 `[A-Za-z0-9_-]` is not used (subject `_`) but its original form is hashed
//! into the `id`, so distinct users never share ids.
//!
//! ## time
//!
//! The most precise of the event's own time fields that parses: first the millisecond ones,
//! `timestamp_ms`, `created_timestamp`, XAA's `created_at_msec`, `event_timestamp_ms(_str)`
//! (strings or numbers), then the text ones, `created_at` (`Mon May 19 14:01:46 +0000 2025`
//! or RFC 3339: often whole seconds, and in XAA's like the liked post's), `date_time`,
//! `updated_at`; then the
//! Snowflake time of the post / DM id (`(id >> 22) + 1288834974657`, only for plausible
//! Snowflakes, never for deletions); then the stream line's `created_at`; then
//! [`Context::received_at`].
//!
//! ## id
//!
//! `<subject>:<type>:<key>`, never containing the ingress or the source, and the same in both
//! input formats, so that an event X delivers once as AAA and once as XAA during the cutover
//! is one event. The key is the X object id both formats carry: the post id (AAA `id_str`,
//! XAA `payload.id`) for `post.*`, the deleted post id for `post.delete`, the like id (AAA
//! `favorite_events[].id`, XAA `payload.id`), the DM event id for `dm.sent`/`dm.received`.
//! Where the formats share none, the format's own identity: XAA `event_uuid`, replay
//! `job_id:job_state`. Without one it is built from identifying fields:
//! follow/block/mute `source:target:created_timestamp`, typing/read
//! `sender:recipient:created_timestamp`, revoke `app_id:date_time(ms)`, like without `id`
//! `liker:post:timestamp_ms`. When those are missing too (and for `spaces.event` and
//! `unknown`) it is the SHA-256 (hex) of the canonical JSON of the payload (object keys
//! sorted, no whitespace), so the same content gives the same id whatever its formatting. A
//! key that would break the rule (`[A-Za-z0-9._:-]`, at most 128 characters in all) is
//! replaced by its SHA-256 hex.
//!
//! ## xformat
//!
//! `aaa` for AAA bodies and AAA-shaped stream lines (`data.payload` is a v1.1 object), `xaa`
//! for X Activity API objects (a v2 object); an `unknown` envelope is `xaa` when the delivery
//! has XAA's `data` or `errors`.
//!
//! ## data
//!
//! `data.payload` is the one original event object (array item, `revoke` object,
//! `replay_job_status` object, XAA `payload`; the whole delivery for `unknown`). Its tokens
//! are byte-for-byte the input's (19-digit ids and numbers are never re-encoded); only when
//! it spans several lines is insignificant whitespace removed, so that every envelope is one
//! line of JSON. `data.includes` is `{"users","apps","user_has_blocked"}` built from AAA's
//! top-level values, or XAA's `includes`; absent when there is none or it is empty.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

mod lax;
mod normalize;

pub use normalize::{
    is_id_char, is_valid_id, normalize, NormalizeError, MAX_ID_LEN, MAX_OUTPUT_BYTES, MAX_TYPE_LEN,
};

/// The `type` values the relay produces from AAA and stream deliveries (XAA deliveries keep
/// their own `event_type`, which uses the same names).
pub mod taxonomy {
    pub const POST_CREATE: &str = "post.create";
    pub const POST_REPLY_CREATE: &str = "post.reply.create";
    pub const POST_QUOTE_CREATE: &str = "post.quote.create";
    pub const POST_REPOST_CREATE: &str = "post.repost.create";
    pub const POST_MENTION_CREATE: &str = "post.mention.create";
    pub const POST_DELETE: &str = "post.delete";
    pub const LIKE_CREATE: &str = "like.create";
    pub const FOLLOW_FOLLOW: &str = "follow.follow";
    pub const FOLLOW_UNFOLLOW: &str = "follow.unfollow";
    pub const BLOCK_BLOCK: &str = "block.block";
    pub const BLOCK_UNBLOCK: &str = "block.unblock";
    pub const MUTE_MUTE: &str = "mute.mute";
    pub const MUTE_UNMUTE: &str = "mute.unmute";
    pub const DM_SENT: &str = "dm.sent";
    pub const DM_RECEIVED: &str = "dm.received";
    pub const DM_INDICATE_TYPING: &str = "dm.indicate_typing";
    pub const DM_READ: &str = "dm.read";
    pub const OAUTH_REVOKE: &str = "oauth.revoke";
    pub const REPLAY_JOB_STATUS: &str = "replay.job_status";
    pub const SPACES_EVENT: &str = "spaces.event";
    /// Valid JSON the relay does not understand; `data.payload` is the whole delivery.
    pub const UNKNOWN: &str = "unknown";

    /// The 42 event types of the X Activity API, which are the relay's taxonomy.
    pub const XAA_TYPES: [&str; 42] = [
        POST_CREATE,
        POST_DELETE,
        POST_MENTION_CREATE,
        POST_REPLY_CREATE,
        POST_QUOTE_CREATE,
        POST_REPOST_CREATE,
        LIKE_CREATE,
        FOLLOW_FOLLOW,
        FOLLOW_UNFOLLOW,
        "profile.update.bio",
        "profile.update.profile_picture",
        "profile.update.banner_picture",
        "profile.update.screenname",
        "profile.update.handle",
        "profile.update.geo",
        "profile.update.url",
        "profile.update.verified_badge",
        "profile.update.affiliate_badge",
        "chat.received",
        "chat.sent",
        "chat.conversation.join",
        "chat.conversation.member_added",
        "chat.conversation.member_removed",
        "chat.conversation.admin_added",
        "chat.conversation.admin_removed",
        "chat.update.group_name",
        "chat.update.restrictions",
        DM_SENT,
        DM_RECEIVED,
        DM_READ,
        DM_INDICATE_TYPING,
        "news.new",
        "spaces.start",
        "spaces.end",
        MUTE_MUTE,
        MUTE_UNMUTE,
        BLOCK_BLOCK,
        BLOCK_UNBLOCK,
        "broadcast.start",
        "broadcast.end",
        "broadcast.chat",
        OAUTH_REVOKE,
    ];

    /// Types the relay produces besides [`XAA_TYPES`]: X's older alias of
    /// `chat.conversation.join`, and the relay's own.
    pub const OTHER_TYPES: [&str; 4] = [
        "chat.conversation_join",
        REPLAY_JOB_STATUS,
        SPACES_EVENT,
        UNKNOWN,
    ];

    /// The label that stands for every type outside the taxonomy in metrics.
    pub const OTHER_LABEL: &str = "other";

    /// `ty` as the taxonomy's own `&'static str`, or `None` for a type outside it (an XAA
    /// `event_type` X added, or one an attacker made up).
    pub fn known(ty: &str) -> Option<&'static str> {
        XAA_TYPES
            .iter()
            .chain(OTHER_TYPES.iter())
            .find(|t| **t == ty)
            .copied()
    }

    /// A bounded label for `ty`: itself when in the taxonomy, else [`OTHER_LABEL`]. Use it
    /// wherever a type names a metric series, so that input cannot mint new series.
    pub fn label(ty: &str) -> &'static str {
        known(ty).unwrap_or(OTHER_LABEL)
    }
}

/// CloudEvents `specversion`.
pub const SPECVERSION: &str = "1.0";
/// CloudEvents `datacontenttype` of every envelope.
pub const DATACONTENTTYPE: &str = "application/json";

/// How an event reached the relay (the `ingress` extension attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressKind {
    Webhook,
    Stream,
    Replay,
}

impl IngressKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IngressKind::Webhook => "webhook",
            IngressKind::Stream => "stream",
            IngressKind::Replay => "replay",
        }
    }
}

impl std::fmt::Display for IngressKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IngressKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webhook" => Ok(IngressKind::Webhook),
            "stream" => Ok(IngressKind::Stream),
            "replay" => Ok(IngressKind::Replay),
            other => Err(format!(
                "unknown ingress {other:?} (expected webhook, stream or replay)"
            )),
        }
    }
}

/// The input format an event came in (the `xformat` extension attribute): it says which
/// shape `data.payload` has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XFormat {
    /// Account Activity API bodies and the AAA-shaped stream lines: v1.1 payloads.
    Aaa,
    /// X Activity API objects: v2 payloads.
    Xaa,
}

impl XFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            XFormat::Aaa => "aaa",
            XFormat::Xaa => "xaa",
        }
    }
}

impl std::fmt::Display for XFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for XFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aaa" => Ok(XFormat::Aaa),
            "xaa" => Ok(XFormat::Xaa),
            other => Err(format!("unknown format {other:?} (expected aaa or xaa)")),
        }
    }
}

/// Which input formats an ingress accepts (`formats = ["aaa", "xaa"]` in its config).
/// Both by default; after X's cutover an operator keeps only `xaa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<XFormat>", into = "Vec<XFormat>")]
pub struct Formats {
    aaa: bool,
    xaa: bool,
}

impl Formats {
    /// AAA and XAA.
    pub const ALL: Formats = Formats {
        aaa: true,
        xaa: true,
    };
    /// XAA only.
    pub const XAA: Formats = Formats {
        aaa: false,
        xaa: true,
    };

    pub fn allows(self, f: XFormat) -> bool {
        match f {
            XFormat::Aaa => self.aaa,
            XFormat::Xaa => self.xaa,
        }
    }
}

impl Default for Formats {
    fn default() -> Self {
        Formats::ALL
    }
}

impl TryFrom<Vec<XFormat>> for Formats {
    type Error = String;
    fn try_from(v: Vec<XFormat>) -> Result<Self, Self::Error> {
        if v.is_empty() {
            return Err("formats must name at least one of \"aaa\", \"xaa\"".into());
        }
        Ok(Formats {
            aaa: v.contains(&XFormat::Aaa),
            xaa: v.contains(&XFormat::Xaa),
        })
    }
}

impl From<Formats> for Vec<XFormat> {
    fn from(f: Formats) -> Self {
        [XFormat::Aaa, XFormat::Xaa]
            .into_iter()
            .filter(|x| f.allows(*x))
            .collect()
    }
}

/// What the caller of [`normalize`] knows about a delivery.
#[derive(Clone, Debug)]
pub struct Context {
    pub ingress: IngressKind,
    /// The CloudEvents `source`, e.g. `/x/account-activity/webhook/prod-app`.
    pub source: String,
    /// When the relay received the delivery; `time` falls back to it.
    pub received_at: DateTime<Utc>,
    /// The formats the ingress accepts. [`normalize`] ignores it; the relay's pipeline
    /// keeps a delivery of any other format as a dead letter.
    pub formats: Formats,
}

/// The CloudEvents 1.0 envelope (`docs/spec/envelope.md`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    /// Deterministic deduplication key, at most 128 chars of `[A-Za-z0-9._:-]`.
    pub id: String,
    pub source: String,
    /// One value of the taxonomy (`post.create`, `like.create`, …, `unknown`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The subscribed user the event is for, `_` when none applies.
    pub subject: String,
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actorid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targetid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectid: Option<String>,
    pub ingress: IngressKind,
    /// The input format (`aaa` or `xaa`). Always set by [`normalize`]; absent only on
    /// records spooled by a relay older than the attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xformat: Option<XFormat>,
    pub data: EventData,
}

/// The envelope's `data`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventData {
    /// The one original event object, its bytes unchanged.
    pub payload: Box<RawValue>,
    /// AAA's `users`/`apps`/`user_has_blocked`, or XAA's `includes`; omitted when empty.
    /// Shared (not copied) by all envelopes of one delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<std::sync::Arc<RawValue>>,
}

impl Envelope {
    /// The envelope as compact JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every field is a string, a date or raw JSON.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an envelope from its JSON form (as written by [`Envelope::to_json`]).
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// An attribute by its routing-template name: `type`, `subject`, `actorid`, `targetid`,
    /// `objectid`, `ingress`, `xformat`, `source`, `id`; `time` is not offered (not routable).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        match name {
            "id" => Some(&self.id),
            "type" => Some(&self.event_type),
            "subject" => Some(&self.subject),
            "source" => Some(&self.source),
            "ingress" => Some(self.ingress.as_str()),
            "xformat" => self.xformat.map(XFormat::as_str),
            "actorid" => self.actorid.as_deref(),
            "targetid" => self.targetid.as_deref(),
            "objectid" => self.objectid.as_deref(),
            _ => None,
        }
    }
}

/// An authentic delivery the relay could not turn into envelopes: kept whole, with the
/// reason, and published to the dead-letter destination.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeadLetter {
    /// `deadletter:<sha256 hex of raw>`: the same bytes give the same id.
    pub id: String,
    pub reason: String,
    pub source: String,
    pub ingress: IngressKind,
    pub received_at: DateTime<Utc>,
    /// The raw bytes, base64 (standard alphabet, padded) in JSON.
    #[serde(with = "b64")]
    pub raw: Vec<u8>,
}

impl DeadLetter {
    pub fn new(raw: &[u8], reason: impl Into<String>, ctx: &Context) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(raw);
        let mut id = String::with_capacity(11 + 64);
        id.push_str("deadletter:");
        for b in digest {
            id.push_str(&format!("{b:02x}"));
        }
        DeadLetter {
            id,
            reason: reason.into(),
            source: ctx.source.clone(),
            ingress: ctx.ingress,
            received_at: ctx.received_at,
            raw: raw.to_vec(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(raw: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(raw))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
