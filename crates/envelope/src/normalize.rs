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

mod aaa;
mod xaa;
use aaa::*;
use xaa::*;

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
