//! Normalization of the three input formats (AAA webhook body, activity-stream line,
//! X Activity API object) into envelopes. See the crate documentation for the mapping.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::lax::{valid_attr_id, EventKey, Lax, LaxOpt, Obj, RawEntries, Top, TopObj};
use crate::taxonomy as t;
use crate::{Context, Envelope, EventData, XFormat, DATACONTENTTYPE, SPECVERSION};

/// Why a delivery gave no envelopes.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    /// Not JSON (or not UTF-8, or truncated): the caller dead-letters the raw bytes.
    #[error("body is not JSON: {reason}")]
    NotJson { reason: String },
    /// An X Activity API `{"errors":[...]}` object: counted and logged by the caller.
    #[error("X reported {count} error(s): {summary}")]
    XaaErrors { count: usize, summary: String },
    /// The envelopes would together exceed [`MAX_OUTPUT_BYTES`] (a batch whose shared
    /// `includes` would be repeated in every envelope): the caller dead-letters the body.
    #[error("{envelopes} envelopes of about {bytes} bytes in all exceed the bound of {MAX_OUTPUT_BYTES} bytes per delivery")]
    TooLarge { envelopes: usize, bytes: usize },
}

/// Most bytes the envelopes of one delivery may take together (their `data` counted: the
/// payload and the shared `includes`, which each envelope carries when serialized). A body
/// within the webhook's 1 MiB limit that is a batch of many items with a large `includes`
/// would otherwise grow to items x includes.
pub const MAX_OUTPUT_BYTES: usize = 32 << 20;

/// Longest envelope `id`.
pub const MAX_ID_LEN: usize = 128;
/// Longest `subject` taken from the input (X user ids have at most 20 digits).
const MAX_SUBJECT_LEN: usize = 20;
/// Longest XAA `event_type` accepted as a `type` (longer ones give `unknown`).
pub const MAX_TYPE_LEN: usize = 40;
/// `(id >> 22)` below this is not a plausible Snowflake (it would predate 2011).
const MIN_SNOWFLAKE_MS: u64 = 5_000_000_000;
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;

/// Is `c` allowed in an envelope `id` (`[A-Za-z0-9._:-]`)?
pub fn is_id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-')
}

/// Does `id` follow the envelope id rule: 1 to 128 characters of `[A-Za-z0-9._:-]`?
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(is_id_char)
}

/// One delivery to envelopes, one per event, in delivery order.
///
/// `Ok` always holds at least one envelope: valid JSON that is not understood (entirely or
/// in part) adds exactly one `unknown` envelope carrying the whole delivery.
pub fn normalize(body: &[u8], ctx: &Context) -> Result<Vec<Envelope>, NormalizeError> {
    let text = std::str::from_utf8(body).map_err(|e| NormalizeError::NotJson {
        reason: format!("not UTF-8: {e}"),
    })?;
    let top: Top<'_> = serde_json::from_str(text).map_err(|e| NormalizeError::NotJson {
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    let mut need_unknown = false;
    let mut hint = Subject::none();
    let mut stream_time = None;
    // What an `unknown` envelope is: XAA when the delivery has XAA's `data` or `errors`.
    let mut format = XFormat::Aaa;
    match top {
        Top::Other => need_unknown = true,
        Top::Object(top) => {
            stream_time = top.created_at.as_ref().and_then(lax_time);
            hint = Subject::from_lax(top.for_user_id.as_ref());
            if !top.events.is_empty() {
                let aaa = Aaa {
                    ctx,
                    subject: &hint,
                    stream_time,
                    includes: aaa_includes(&top),
                };
                need_unknown |= top.unrecognized_structured
                    || top.data.is_some()
                    || top.errors.is_some()
                    || top.includes.is_some();
                for (key, raw) in &top.events {
                    need_unknown |= !aaa.key(*key, raw, &mut out);
                }
            } else if let Some(data) = top.data {
                format = XFormat::Xaa;
                need_unknown |= top.unrecognized_structured;
                if let Err(filter_subject) = xaa(data, top.includes, ctx, &mut out) {
                    need_unknown = true;
                    if hint.user().is_none() {
                        hint = filter_subject;
                    }
                }
            } else if let Some(errors) = top.errors {
                format = XFormat::Xaa;
                match xaa_errors(errors) {
                    Some(e) => return Err(e),
                    None => need_unknown = true,
                }
            } else {
                need_unknown = true;
            }
        }
    }
    if need_unknown || out.is_empty() {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| NormalizeError::NotJson {
            reason: e.to_string(),
        })?;
        out.push(
            Draft {
                format,
                ty: t::UNKNOWN,
                subject: &hint,
                key: IdKey::Canonical,
                time: stream_time.unwrap_or(ctx.received_at),
                actor: None,
                target: None,
                object: None,
                payload: raw,
                includes: None,
            }
            .finish(ctx),
        );
    }
    let bytes = out.iter().fold(0usize, |n, e| {
        n.saturating_add(e.data.payload.get().len())
            .saturating_add(e.data.includes.as_ref().map_or(0, |i| i.get().len()))
    });
    if bytes > MAX_OUTPUT_BYTES {
        return Err(NormalizeError::TooLarge {
            envelopes: out.len(),
            bytes,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// subject, id, time

/// The `subject` and, when the input's user id could not be used as it is, its original
/// form (hashed into the `id` so that distinct users never share ids).
#[derive(Debug)]
struct Subject {
    attr: String,
    raw: Option<String>,
}

fn valid_subject(s: &str) -> bool {
    s != "_"
        && !s.is_empty()
        && s.len() <= MAX_SUBJECT_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Subject {
    fn none() -> Subject {
        Subject {
            attr: "_".to_owned(),
            raw: None,
        }
    }

    fn from_lax(l: Option<&Lax<'_>>) -> Subject {
        match l {
            None | Some(Lax::Null) => Subject::none(),
            Some(Lax::Str(s)) if valid_subject(s) => Subject {
                attr: s.to_string(),
                raw: None,
            },
            Some(other) => Subject {
                attr: "_".to_owned(),
                raw: Some(other.repr()),
            },
        }
    }

    /// The subscribed user, when known and usable.
    fn user(&self) -> Option<&str> {
        (self.raw.is_none() && self.attr != "_").then_some(self.attr.as_str())
    }
}

fn valid_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TYPE_LEN
        && s.split('.').all(|seg| {
            !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// `<subject>:<type>:<key>`, the key hashed when it does not fit the id rule.
fn build_id(subject: &Subject, ty: &str, key: &str) -> String {
    let hashed_with_subject;
    let key = match &subject.raw {
        Some(raw) => {
            let mut b = Vec::with_capacity(raw.len() + 1 + key.len());
            b.extend_from_slice(raw.as_bytes());
            b.push(0);
            b.extend_from_slice(key.as_bytes());
            hashed_with_subject = sha256_hex(&b);
            hashed_with_subject.as_str()
        }
        None => key,
    };
    let head = subject.attr.len() + ty.len() + 2;
    let mut id = String::with_capacity(head + key.len().min(64));
    id.push_str(&subject.attr);
    id.push(':');
    id.push_str(ty);
    id.push(':');
    if !key.is_empty() && head + key.len() <= MAX_ID_LEN && key.bytes().all(is_id_char) {
        id.push_str(key);
    } else {
        id.push_str(&sha256_hex(key.as_bytes()));
    }
    id
}

/// SHA-256 (hex) of the canonical form of a JSON value: object keys sorted, no whitespace.
fn canonical_hash(raw: &str) -> String {
    let mut buf = Vec::with_capacity(raw.len());
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v) => write_canonical(&v, &mut buf),
        Err(_) => buf.extend_from_slice(raw.as_bytes()),
    }
    sha256_hex(&buf)
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_json_str(s, out),
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn sane(dt: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (1970..=9999).contains(&dt.year()).then_some(dt)
}

fn time_from_ms(ms: i64) -> Option<DateTime<Utc>> {
    if ms <= 0 {
        return None;
    }
    DateTime::from_timestamp_millis(ms).and_then(sane)
}

fn time_from_text(s: &str) -> Option<DateTime<Utc>> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().and_then(time_from_ms);
    }
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%a %b %d %H:%M:%S %z %Y"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
        .and_then(sane)
}

fn lax_time(l: &Lax<'_>) -> Option<DateTime<Utc>> {
    match l {
        Lax::Str(s) => time_from_text(s),
        other => other.millis().and_then(time_from_ms),
    }
}

/// The event's own time fields, most precise first: the millisecond fields
/// (`timestamp_ms`, `created_timestamp`, ...) before the text times, which are often whole
/// seconds (AAA's `created_at`) and in XAA's like the liked post's, not the like's.
fn obj_time(o: &Obj<'_>) -> Option<DateTime<Utc>> {
    [
        &o.timestamp_ms,
        &o.created_timestamp,
        &o.created_at_msec,
        &o.event_timestamp_ms_str,
        &o.event_timestamp_ms,
        &o.created_at,
        &o.date_time,
        &o.updated_at,
    ]
    .into_iter()
    .flatten()
    .find_map(lax_time)
}

/// The creation time encoded in a Snowflake id, when the id is a plausible Snowflake.
fn snowflake_time(id: Option<&str>) -> Option<DateTime<Utc>> {
    let n: u64 = id?.parse().ok()?;
    let since = n >> 22;
    if since < MIN_SNOWFLAKE_MS {
        return None;
    }
    time_from_ms(i64::try_from(since).ok()?.checked_add(SNOWFLAKE_EPOCH_MS)?)
}

// ---------------------------------------------------------------------------------------
// payload bytes

/// The value as an owned raw value; when it spans several lines, insignificant whitespace
/// is removed (every token stays byte-for-byte) so that an envelope is always one line.
fn compact(raw: &RawValue) -> Box<RawValue> {
    let s = raw.get();
    if !s.bytes().any(|b| b == b'\n' || b == b'\r') {
        return raw.to_owned();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut in_str = false;
    let mut esc = false;
    for &b in s.as_bytes() {
        if in_str {
            out.push(b);
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else {
            match b {
                b' ' | b'\n' | b'\r' | b'\t' => {}
                b'"' => {
                    in_str = true;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
    }
    String::from_utf8(out)
        .ok()
        .and_then(|s| RawValue::from_string(s).ok())
        .unwrap_or_else(|| raw.to_owned())
}

/// `null`, `{}` or `[]` (whitespace aside).
fn is_empty_json(raw: &RawValue) -> bool {
    let mut it = raw.get().bytes().filter(|b| !b.is_ascii_whitespace());
    matches!(
        (it.next(), it.next(), it.next()),
        (Some(b'{'), Some(b'}'), None) | (Some(b'['), Some(b']'), None) | (Some(b'n'), _, _)
    )
}

#[derive(Serialize)]
struct AaaIncludes<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apps: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_has_blocked: Option<&'a RawValue>,
}

fn aaa_includes(top: &TopObj<'_>) -> Option<Arc<RawValue>> {
    let part = |r: Option<&RawValue>| r.filter(|r| !is_empty_json(r)).map(compact);
    let users = part(top.users);
    let apps = part(top.apps);
    let blocked = part(top.user_has_blocked);
    if users.is_none() && apps.is_none() && blocked.is_none() {
        return None;
    }
    serde_json::value::to_raw_value(&AaaIncludes {
        users: users.as_deref(),
        apps: apps.as_deref(),
        user_has_blocked: blocked.as_deref(),
    })
    .ok()
    .map(Arc::from)
}

// ---------------------------------------------------------------------------------------
// envelope assembly

enum IdKey<'k> {
    /// X's own id or identifying fields.
    Text(Cow<'k, str>),
    /// SHA-256 of the canonical payload.
    Canonical,
}

/// `Text` of the fields joined by `:` when all are present, else `Canonical`.
fn fields_key<'k>(fields: &[Option<&'k str>]) -> IdKey<'k> {
    if fields.iter().all(Option::is_some) {
        IdKey::Text(Cow::Owned(
            fields
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join(":"),
        ))
    } else {
        IdKey::Canonical
    }
}

struct Draft<'a> {
    format: XFormat,
    ty: &'a str,
    subject: &'a Subject,
    key: IdKey<'a>,
    time: DateTime<Utc>,
    actor: Option<&'a str>,
    target: Option<&'a str>,
    object: Option<&'a str>,
    payload: &'a RawValue,
    includes: Option<Arc<RawValue>>,
}

impl Draft<'_> {
    fn finish(self, ctx: &Context) -> Envelope {
        let key = match self.key {
            IdKey::Text(k) => k,
            IdKey::Canonical => Cow::Owned(canonical_hash(self.payload.get())),
        };
        let own = |s: Option<&str>| s.filter(|s| valid_attr_id(s)).map(str::to_owned);
        Envelope {
            specversion: SPECVERSION.to_owned(),
            id: build_id(self.subject, self.ty, &key),
            source: ctx.source.clone(),
            event_type: self.ty.to_owned(),
            subject: self.subject.attr.clone(),
            // At most microseconds: SDKs that parse `time` (Python's datetime, Java's
            // Instant in some) keep 6 digits, and 9 from the receive clock would not
            // round-trip through them.
            time: self.time.trunc_subsecs(6),
            datacontenttype: DATACONTENTTYPE.to_owned(),
            actorid: own(self.actor),
            targetid: own(self.target),
            objectid: own(self.object),
            ingress: ctx.ingress,
            xformat: Some(self.format),
            data: EventData {
                payload: compact(self.payload),
                includes: self.includes,
            },
        }
    }
}

/// A user object's string id: `id_str`, a string `id`, or XAA's `data.id`.
fn user_ref<'o>(u: Option<&'o Obj<'_>>) -> Option<&'o str> {
    let u = u?;
    u.id_str
        .id()
        .or(u.id.id())
        .or_else(|| u.data.as_deref().and_then(|d| d.id.id()))
}

fn tweet_author<'o>(tw: &'o Obj<'_>) -> Option<&'o str> {
    user_ref(tw.user.as_deref()).or(tw.author_id.id())
}

fn tweet_id<'o>(tw: &'o Obj<'_>) -> Option<&'o str> {
    tw.id_str.id().or(tw.id.id())
}

fn is_set(l: &Option<Lax<'_>>) -> bool {
    l.as_ref().is_some_and(Lax::is_set)
}

// ---------------------------------------------------------------------------------------
// AAA and stream

/// The type (and target) of an AAA tweet for the subscribed `user`, with XAA's meaning:
/// everything the user authors is `post.create` (their replies, quotes and reposts too);
/// someone else's post is a repost, quote or reply *of the user* when it reposts, quotes or
/// replies to the user (a referenced post or user X left out counts as the user's: X sends
/// someone else's repost, quote or reply to a user only when it concerns them), and
/// otherwise a mention. When the subscribed user or the author is unknown, only the
/// tweet's own structure is left to go by.
fn classify_tweet<'o>(
    o: &'o Obj<'_>,
    user: Option<&'o str>,
    actor: Option<&'o str>,
) -> (&'static str, Option<&'o str>) {
    let reposted = o.retweeted_status.as_deref();
    let quoted = o.quoted_status.as_deref();
    let is_quote = quoted.is_some() || o.is_quote_status.as_ref().is_some_and(Lax::is_true);
    let is_reply = is_set(&o.in_reply_to_status_id_str) || is_set(&o.in_reply_to_status_id);
    let replied_to = o
        .in_reply_to_user_id_str
        .id()
        .or(o.in_reply_to_user_id.id());
    let (Some(u), Some(a)) = (user, actor) else {
        return if let Some(rs) = reposted {
            (t::POST_REPOST_CREATE, tweet_author(rs))
        } else if is_quote {
            (t::POST_QUOTE_CREATE, quoted.and_then(tweet_author))
        } else if is_reply {
            (t::POST_REPLY_CREATE, replied_to)
        } else {
            (t::POST_CREATE, None)
        };
    };
    let the_users = |author: Option<&str>| author.is_none_or(|x| x == u);
    if a == u {
        (t::POST_CREATE, None)
    } else if reposted.is_some() && the_users(reposted.and_then(tweet_author)) {
        (t::POST_REPOST_CREATE, Some(u))
    } else if is_quote && the_users(quoted.and_then(tweet_author)) {
        (t::POST_QUOTE_CREATE, Some(u))
    } else if is_reply && the_users(replied_to) {
        (t::POST_REPLY_CREATE, Some(u))
    } else {
        (t::POST_MENTION_CREATE, Some(u))
    }
}

struct Aaa<'c> {
    ctx: &'c Context,
    subject: &'c Subject,
    stream_time: Option<DateTime<Utc>>,
    /// Shared by every envelope of the delivery, never copied per item.
    includes: Option<Arc<RawValue>>,
}

impl Aaa<'_> {
    /// Envelopes for one event key; `false` when some of it was not understood.
    fn key(&self, key: EventKey, raw: &RawValue, out: &mut Vec<Envelope>) -> bool {
        match key {
            EventKey::UserEvent => self.user_event(raw, out),
            EventKey::ReplayJobStatus => self.replay(raw, out),
            EventKey::Spaces if raw.get().starts_with('{') => self.item(key, raw, out),
            _ => match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                Ok(items) => {
                    let mut ok = true;
                    for item in items {
                        ok &= self.item(key, item, out);
                    }
                    ok
                }
                Err(_) => false,
            },
        }
    }

    fn time(&self, own: Option<DateTime<Utc>>) -> DateTime<Utc> {
        own.or(self.stream_time).unwrap_or(self.ctx.received_at)
    }

    /// One array item; `false` when it is not an object or its `type` is not understood.
    fn item(&self, key: EventKey, raw: &RawValue, out: &mut Vec<Envelope>) -> bool {
        let Ok(o) = serde_json::from_str::<Obj<'_>>(raw.get()) else {
            return false;
        };
        if !o.present {
            return false;
        }
        let user = self.subject.user();
        let mut d = Draft {
            format: XFormat::Aaa,
            ty: t::UNKNOWN,
            subject: self.subject,
            key: IdKey::Canonical,
            time: self.ctx.received_at,
            actor: None,
            target: None,
            object: None,
            payload: raw,
            includes: self.includes.clone(),
        };
        match key {
            EventKey::TweetCreate => {
                let actor = tweet_author(&o);
                let object = tweet_id(&o);
                let (ty, target) = classify_tweet(&o, user, actor);
                d.ty = ty;
                d.actor = actor;
                d.target = target;
                d.object = object;
                d.key = object.map_or(IdKey::Canonical, |id| IdKey::Text(id.into()));
                d.time = self.time(obj_time(&o).or_else(|| snowflake_time(object)));
            }
            EventKey::TweetDelete => {
                let st = o.status.as_deref();
                let object = st.and_then(tweet_id);
                d.ty = t::POST_DELETE;
                d.actor = st.and_then(|s| s.user_id.id().or(s.user_id_str.id()));
                d.object = object;
                d.key = object.map_or(IdKey::Canonical, |id| IdKey::Text(id.into()));
                d.time = self.time(obj_time(&o));
            }
            EventKey::Favorite => {
                let fav = o.favorited_status.as_deref();
                let actor = user_ref(o.user.as_deref());
                let object = fav.and_then(tweet_id);
                d.ty = t::LIKE_CREATE;
                d.actor = actor;
                d.object = object;
                d.target = fav.and_then(tweet_author);
                let ms = o
                    .timestamp_ms
                    .as_ref()
                    .and_then(Lax::millis)
                    .map(|n| n.to_string());
                d.key = match o.id.as_ref().and_then(Lax::as_str) {
                    Some(id) if !id.is_empty() => IdKey::Text(id.into()),
                    _ => match fields_key(&[actor, object, ms.as_deref()]) {
                        IdKey::Text(k) => IdKey::Text(Cow::Owned(k.into_owned())),
                        IdKey::Canonical => IdKey::Canonical,
                    },
                };
                d.time = self.time(obj_time(&o));
            }
            EventKey::Follow
            | EventKey::Unfollow
            | EventKey::Block
            | EventKey::Unblock
            | EventKey::Mute
            | EventKey::Unmute => {
                let (on_word, on, off_word, off) = match key {
                    EventKey::Follow | EventKey::Unfollow => {
                        ("follow", t::FOLLOW_FOLLOW, "unfollow", t::FOLLOW_UNFOLLOW)
                    }
                    EventKey::Block | EventKey::Unblock => {
                        ("block", t::BLOCK_BLOCK, "unblock", t::BLOCK_UNBLOCK)
                    }
                    _ => ("mute", t::MUTE_MUTE, "unmute", t::MUTE_UNMUTE),
                };
                let default = if matches!(
                    key,
                    EventKey::Unfollow | EventKey::Unblock | EventKey::Unmute
                ) {
                    off
                } else {
                    on
                };
                d.ty = match &o.kind {
                    None | Some(Lax::Null) => default,
                    Some(Lax::Str(s)) if s == on_word => on,
                    Some(Lax::Str(s)) if s == off_word => off,
                    Some(_) => return false,
                };
                let actor = user_ref(o.source.as_deref());
                let target = user_ref(o.target.as_deref());
                let ms = o
                    .created_timestamp
                    .as_ref()
                    .and_then(Lax::millis)
                    .map(|n| n.to_string());
                d.actor = actor;
                d.target = target;
                d.key = owned_key(fields_key(&[actor, target, ms.as_deref()]));
                d.time = self.time(obj_time(&o));
            }
            EventKey::DirectMessage => {
                let mc = o.message_create.as_deref();
                let sender = mc.and_then(|m| m.sender_id.id()).or(o.sender_id.id());
                let recipient = mc
                    .and_then(|m| m.target.as_deref())
                    .or(o.target.as_deref())
                    .and_then(|tg| tg.recipient_id.id());
                let object = o.id.id();
                d.ty = match (user, sender) {
                    (Some(u), Some(s)) if u == s => t::DM_SENT,
                    _ => t::DM_RECEIVED,
                };
                d.actor = sender;
                d.target = recipient;
                d.object = object;
                let ms = o
                    .created_timestamp
                    .as_ref()
                    .and_then(Lax::millis)
                    .map(|n| n.to_string());
                d.key = match o.id.as_ref().and_then(Lax::as_str) {
                    Some(id) if !id.is_empty() => IdKey::Text(id.into()),
                    _ => owned_key(fields_key(&[sender, recipient, ms.as_deref()])),
                };
                d.time = self.time(obj_time(&o).or_else(|| snowflake_time(object)));
            }
            EventKey::DmTyping | EventKey::DmRead => {
                let sender = o.sender_id.id();
                let recipient = o.target.as_deref().and_then(|tg| tg.recipient_id.id());
                let ms = o
                    .created_timestamp
                    .as_ref()
                    .and_then(Lax::millis)
                    .map(|n| n.to_string());
                d.actor = sender;
                d.target = recipient;
                if key == EventKey::DmRead {
                    d.ty = t::DM_READ;
                    d.object = o.last_read_event_id.id();
                } else {
                    d.ty = t::DM_INDICATE_TYPING;
                }
                d.key = owned_key(fields_key(&[sender, recipient, ms.as_deref()]));
                d.time = self.time(obj_time(&o));
            }
            EventKey::Spaces => {
                d.ty = t::SPACES_EVENT;
                d.time = self.time(obj_time(&o));
            }
            // Handled by `key`; not arrays.
            EventKey::UserEvent | EventKey::ReplayJobStatus => return false,
        }
        out.push(d.finish(self.ctx));
        true
    }

    fn user_event(&self, raw: &RawValue, out: &mut Vec<Envelope>) -> bool {
        let Ok(RawEntries(Some(entries))) = serde_json::from_str::<RawEntries<'_>>(raw.get())
        else {
            return false;
        };
        let mut ok = !entries.is_empty();
        for (k, v) in entries {
            if k == "revoke" {
                ok &= self.revoke(v, out);
            } else {
                ok = false;
            }
        }
        ok
    }

    fn revoke(&self, raw: &RawValue, out: &mut Vec<Envelope>) -> bool {
        let Ok(o) = serde_json::from_str::<Obj<'_>>(raw.get()) else {
            return false;
        };
        if !o.present {
            return false;
        }
        let source_user = o.source.as_deref().and_then(|s| s.user_id.as_ref());
        let revoker = Subject::from_lax(source_user);
        let subject = if revoker.user().is_some() || revoker.raw.is_some() {
            &revoker
        } else {
            self.subject
        };
        let own_time = obj_time(&o);
        let app = o.target.as_deref().and_then(|tg| tg.app_id.id());
        let ms = own_time.map(|t| t.timestamp_millis().to_string());
        let d = Draft {
            format: XFormat::Aaa,
            ty: t::OAUTH_REVOKE,
            subject,
            key: owned_key(fields_key(&[app, ms.as_deref()])),
            time: self.time(own_time),
            actor: subject.user(),
            target: app,
            object: None,
            payload: raw,
            includes: self.includes.clone(),
        };
        out.push(d.finish(self.ctx));
        true
    }

    fn replay(&self, raw: &RawValue, out: &mut Vec<Envelope>) -> bool {
        let Ok(o) = serde_json::from_str::<Obj<'_>>(raw.get()) else {
            return false;
        };
        if !o.present {
            return false;
        }
        let none = Subject::none();
        let job = o.job_id.as_ref().and_then(Lax::as_str);
        let state = o.job_state.as_ref().and_then(Lax::as_str);
        let key = match (job, state) {
            (Some(j), Some(s)) => IdKey::Text(Cow::Owned(format!("{j}:{s}"))),
            _ => IdKey::Canonical,
        };
        let d = Draft {
            format: XFormat::Aaa,
            ty: t::REPLAY_JOB_STATUS,
            subject: &none,
            key,
            time: self.time(obj_time(&o)),
            actor: None,
            target: None,
            object: o.job_id.id(),
            payload: raw,
            includes: None,
        };
        out.push(d.finish(self.ctx));
        true
    }
}

/// Detaches a key from the lifetime of the strings it was built from.
fn owned_key(k: IdKey<'_>) -> IdKey<'static> {
    match k {
        IdKey::Text(s) => IdKey::Text(Cow::Owned(s.into_owned())),
        IdKey::Canonical => IdKey::Canonical,
    }
}

// ---------------------------------------------------------------------------------------
// X Activity API

/// One XAA `data` object to one envelope; `Err(subject of the filter)` when not understood.
fn xaa(
    data: &RawValue,
    top_includes: Option<&RawValue>,
    ctx: &Context,
    out: &mut Vec<Envelope>,
) -> Result<(), Subject> {
    let Ok(d) = serde_json::from_str::<Obj<'_>>(data.get()) else {
        return Err(Subject::none());
    };
    let filter = d.filter.as_deref();
    let filter_user = filter.and_then(|f| f.user_id.as_ref());
    let hint = Subject::from_lax(filter_user);
    let Some(ty) = d.event_type.as_ref().and_then(Lax::as_str) else {
        return Err(hint);
    };
    if !valid_type(ty) {
        return Err(hint);
    }
    let Some(payload) = d.payload else {
        return Err(hint);
    };
    let Ok(p) = serde_json::from_str::<Obj<'_>>(payload.get()) else {
        return Err(hint);
    };
    let revoker;
    let subject = if ty == t::OAUTH_REVOKE && p.user_id.is_some() {
        revoker = Subject::from_lax(p.user_id.as_ref());
        &revoker
    } else {
        &hint
    };
    let user = subject.user();
    let family = ty.split('.').next().unwrap_or_default();
    let dm = p.direct_message_events.as_deref();
    let (actor, target, object) = match family {
        "post" => {
            let target = match ty {
                t::POST_REPLY_CREATE => p.in_reply_to_user_id.id().or(user),
                t::POST_MENTION_CREATE | t::POST_QUOTE_CREATE | t::POST_REPOST_CREATE => user,
                _ => None,
            };
            (p.author_id.id(), target, tweet_id(&p))
        }
        "like" => {
            let direction = filter
                .and_then(|f| f.direction.as_ref())
                .and_then(Lax::as_str);
            let author = p.liked_tweet_author_id.id();
            // Outbound: the user liked someone's post. Inbound: someone liked the user's
            // (the liker is not in the payload). Without a direction, the author tells.
            let inbound = match direction {
                Some("inbound") => true,
                Some("outbound") => false,
                _ => user.is_some() && author == user,
            };
            if inbound {
                (None, author.or(user), p.liked_tweet_id.id())
            } else {
                (user, author, p.liked_tweet_id.id())
            }
        }
        "follow" => (
            user_ref(p.source.as_deref()),
            user_ref(p.target.as_deref()),
            None,
        ),
        // The filter user is the one muting or blocking.
        "block" | "mute" => (
            user_ref(p.source.as_deref()).or(user),
            user_ref(p.target.as_deref()),
            None,
        ),
        "dm" => {
            let m = dm.unwrap_or(&p);
            let mc = m.message_create.as_deref();
            let sender = mc.and_then(|c| c.sender_id.id()).or(m.sender_id.id());
            let recipient = mc
                .and_then(|c| c.target.as_deref())
                .or(m.target.as_deref())
                .and_then(|tg| tg.recipient_id.id());
            let object = if ty == t::DM_READ {
                m.last_read_event_id.id()
            } else {
                m.id.id()
            };
            (sender, recipient, object)
        }
        "chat" => (p.sender_id.id(), None, p.id.id()),
        "oauth" => (p.user_id.id().or(user), p.app_id.id(), None),
        "profile" => (user, None, None),
        "spaces" | "broadcast" => (
            user_ref(p.user.as_deref()).or(user_ref(p.author.as_deref())),
            None,
            p.message_id.id().or(p.broadcast_id.id()),
        ),
        "news" => (None, None, p.id.id()),
        _ => (None, None, None),
    };
    let time = obj_time(&p)
        .or_else(|| dm.and_then(obj_time))
        .or_else(|| {
            // A Snowflake dates the post/message itself: right for its creation, not for
            // a deletion.
            (matches!(family, "post" | "dm" | "broadcast") && ty != t::POST_DELETE)
                .then(|| snowflake_time(object))
                .flatten()
        })
        .unwrap_or(ctx.received_at);
    // The X object id both formats carry, so that an event X delivers once per format
    // during the cutover gets one id: the post (also the deleted one), the like, the DM.
    let shared = match ty {
        t::POST_CREATE
        | t::POST_REPLY_CREATE
        | t::POST_QUOTE_CREATE
        | t::POST_REPOST_CREATE
        | t::POST_MENTION_CREATE
        | t::POST_DELETE => tweet_id(&p),
        t::LIKE_CREATE => {
            p.id.as_ref()
                .and_then(Lax::as_str)
                .filter(|s| !s.is_empty())
        }
        t::DM_SENT | t::DM_RECEIVED => dm.unwrap_or(&p).id.as_ref().and_then(Lax::as_str),
        _ => None,
    };
    let uuid_num;
    let key = match (&d.event_uuid, shared.filter(|s| !s.is_empty())) {
        (_, Some(k)) => IdKey::Text(Cow::Borrowed(k)),
        (Some(Lax::Str(s)), _) if !s.is_empty() => IdKey::Text(Cow::Borrowed(s.as_ref())),
        (Some(Lax::U64(n)), _) => {
            uuid_num = n.to_string();
            IdKey::Text(Cow::Borrowed(uuid_num.as_str()))
        }
        (Some(Lax::I64(n)), _) => {
            uuid_num = n.to_string();
            IdKey::Text(Cow::Borrowed(uuid_num.as_str()))
        }
        _ => IdKey::Canonical,
    };
    let includes = d
        .includes
        .or(top_includes)
        .filter(|r| !is_empty_json(r))
        .map(|r| Arc::from(compact(r)));
    out.push(
        Draft {
            format: XFormat::Xaa,
            ty,
            subject,
            key,
            time,
            actor,
            target,
            object,
            payload,
            includes,
        }
        .finish(ctx),
    );
    Ok(())
}

/// `Some(XaaErrors)` when `errors` is an array.
fn xaa_errors(raw: &RawValue) -> Option<NormalizeError> {
    const MAX_SUMMARY: usize = 300;
    let items: Vec<Obj<'_>> = serde_json::from_str(raw.get()).ok()?;
    let count = items.len();
    let mut parts: Vec<String> = items
        .iter()
        .take(3)
        .map(|e| {
            let texts: Vec<&str> = [&e.title, &e.detail, &e.message]
                .into_iter()
                .flatten()
                .filter_map(Lax::as_str)
                .filter(|s| !s.is_empty())
                .collect();
            if texts.is_empty() {
                "(no title or detail)".to_owned()
            } else {
                texts.join(": ")
            }
        })
        .collect();
    if count > 3 {
        parts.push(format!("and {} more", count - 3));
    }
    let mut summary: String = if parts.is_empty() {
        "empty errors array".to_owned()
    } else {
        parts.join("; ")
    }
    .chars()
    .map(|c| if c.is_control() { ' ' } else { c })
    .collect();
    if summary.len() > MAX_SUMMARY {
        let mut cut = MAX_SUMMARY;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push('…');
    }
    Some(NormalizeError::XaaErrors { count, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_keeps_clean_keys_and_hashes_others() {
        let s = Subject::from_lax(Some(&Lax::Str("42".into())));
        assert_eq!(build_id(&s, "post.create", "123"), "42:post.create:123");
        let id = build_id(&s, "replay.job_status", "1:Terminé");
        assert!(is_valid_id(&id), "{id}");
        assert!(id.starts_with("42:replay.job_status:"));
        let long = "x".repeat(200);
        let id = build_id(&s, "post.create", &long);
        assert!(is_valid_id(&id), "{id}");
    }

    #[test]
    fn odd_subjects_hash_into_the_id() {
        let a = Subject::from_lax(Some(&Lax::Str("a.b".into())));
        let b = Subject::from_lax(Some(&Lax::Str("a>b".into())));
        assert_eq!(a.attr, "_");
        assert_ne!(
            build_id(&a, "post.create", "1"),
            build_id(&b, "post.create", "1")
        );
    }

    #[test]
    fn times_parse_in_every_format() {
        let want = "2025-05-19T14:01:46Z";
        for s in [
            "Mon May 19 14:01:46 +0000 2025",
            "2025-05-19T14:01:46Z",
            "2025-05-19T14:01:46+00:00",
            "1747663306000",
        ] {
            let t =
                time_from_text(s).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            assert_eq!(t.as_deref(), Some(want), "{s}");
        }
        assert_eq!(
            snowflake_time(Some("1924465506158878979")).map(|t| t.timestamp_millis()),
            Some(1747663306165)
        );
        assert_eq!(snowflake_time(Some("1234567890")), None);
        assert_eq!(time_from_text("0"), None);
        assert_eq!(time_from_text("not a time"), None);
    }

    #[test]
    fn compact_removes_only_insignificant_whitespace() {
        let raw: Box<RawValue> = serde_json::from_str(
            "{\n  \"a b\": \"x \\\" \\n y\",\n  \"n\": 1924465506158878979\n}",
        )
        .unwrap();
        assert_eq!(
            compact(&raw).get(),
            "{\"a b\":\"x \\\" \\n y\",\"n\":1924465506158878979}"
        );
    }

    #[test]
    fn canonical_hash_ignores_key_order_and_whitespace() {
        assert_eq!(
            canonical_hash(r#"{"a":1,"b":[true,null]}"#),
            canonical_hash("{ \"b\" : [ true , null ] ,\n \"a\" : 1 }")
        );
        assert_ne!(canonical_hash(r#"{"a":1}"#), canonical_hash(r#"{"a":2}"#));
    }
}
