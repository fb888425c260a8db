//! `relay-envelope`: the one event format activity-relay publishes.
//!
//! * [`Envelope`]: a CloudEvents 1.0 event (JSON format) as specified in
//!   `shared/spec/envelope.md`; `data.payload` keeps the original event object's bytes.
//! * [`normalize`]: one delivery (AAA webhook body, activity-stream line or X Activity API
//!   object) to envelopes, one per event. Pure: no I/O, no panics on any input.
//! * [`DeadLetter`]: what the relay stores for an authentic body it cannot parse.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

mod lax;
mod normalize;

pub use normalize::{is_id_char, is_valid_id, normalize, NormalizeError, MAX_ID_LEN, MAX_TYPE_LEN};

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

/// What the caller of [`normalize`] knows about a delivery.
#[derive(Clone, Debug)]
pub struct Context {
    pub ingress: IngressKind,
    /// The CloudEvents `source`, e.g. `/x/account-activity/webhook/prod-app`.
    pub source: String,
    /// When the relay received the delivery; `time` falls back to it.
    pub received_at: DateTime<Utc>,
}

/// The CloudEvents 1.0 envelope (`shared/spec/envelope.md`).
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
    pub data: EventData,
}

/// The envelope's `data`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventData {
    /// The one original event object, its bytes unchanged.
    pub payload: Box<RawValue>,
    /// AAA's `users`/`apps`/`user_has_blocked`, or XAA's `includes`; omitted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Box<RawValue>>,
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
    /// `objectid`, `ingress`, `source`, `id`, `time` is not offered (not routable).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        match name {
            "id" => Some(&self.id),
            "type" => Some(&self.event_type),
            "subject" => Some(&self.subject),
            "source" => Some(&self.source),
            "ingress" => Some(self.ingress.as_str()),
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
