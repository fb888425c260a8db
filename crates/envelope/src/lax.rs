//! Lenient, borrowing readers for the few fields normalization needs.
//!
//! Every reader here accepts ANY valid JSON value in any slot: a field of an unexpected type
//! becomes "absent" instead of failing the whole parse, unknown keys are skipped without
//! allocation, strings without escapes are borrowed from the input, and large values are
//! only captured as `&RawValue` (their bytes, unparsed). So deserializing these types from
//! text that is valid JSON cannot fail except on serde_json's nesting-depth limit.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

/// A map key, borrowed when it has no escapes.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Drains a map without looking at it.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Drains a sequence without looking at it.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Any JSON value in a scalar slot; objects and arrays are skipped and remembered only as
/// [`Lax::Structured`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lax<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
    Structured,
}

impl<'de> Deserialize<'de> for Lax<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lax<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lax::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lax::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lax::Str(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Lax::U64(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Lax::I64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Lax::F64(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Lax::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lax::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lax::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(Lax::Structured)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(Lax::Structured)
            }
        }
        d.deserialize_any(V)
    }
}

/// Is `s` usable as an `actorid`/`targetid`/`objectid`: 1 to 64 of `[A-Za-z0-9_-]`.
pub(crate) fn valid_attr_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Lax<'_> {
    /// The string, when this is a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Lax::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A STRING id usable as an attribute (numbers are never used: X rounds them).
    pub(crate) fn id(&self) -> Option<&str> {
        self.as_str().filter(|s| valid_attr_id(s))
    }

    /// Milliseconds since the epoch from a digit string or an integer.
    pub(crate) fn millis(&self) -> Option<i64> {
        match self {
            Lax::Str(s)
                if !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse().ok()
            }
            Lax::U64(n) => i64::try_from(*n).ok(),
            Lax::I64(n) => Some(*n),
            _ => None,
        }
    }

    /// `true` or `"true"`.
    pub(crate) fn is_true(&self) -> bool {
        match self {
            Lax::Bool(b) => *b,
            Lax::Str(s) => s == "true",
            _ => false,
        }
    }

    /// Present and meaningful: not null, not an empty string, not `false`.
    pub(crate) fn is_set(&self) -> bool {
        match self {
            Lax::Null | Lax::Bool(false) => false,
            Lax::Str(s) => !s.is_empty(),
            _ => true,
        }
    }

    /// A textual form, used only to hash values that cannot be used as they are.
    pub(crate) fn repr(&self) -> String {
        match self {
            Lax::Str(s) => format!("s{s}"),
            Lax::U64(n) => format!("n{n}"),
            Lax::I64(n) => format!("n{n}"),
            Lax::F64(n) => format!("f{n}"),
            Lax::Bool(b) => format!("b{b}"),
            Lax::Null => "null".to_owned(),
            Lax::Structured => "structured".to_owned(),
        }
    }
}

/// Helper trait to read an optional field as a string id.
pub(crate) trait LaxOpt {
    fn id(&self) -> Option<&str>;
}

impl LaxOpt for Option<Lax<'_>> {
    fn id(&self) -> Option<&str> {
        self.as_ref().and_then(|l| l.id())
    }
}

macro_rules! lax_obj {
    (
        scalars { $($s:ident = $sk:literal,)* }
        nested { $($n:ident = $nk:literal,)* }
        first { $($f:ident = $fk:literal,)* }
        raw { $($r:ident = $rk:literal,)* }
    ) => {
        /// The union of every field normalization reads from an event object (AAA item,
        /// stream item, XAA `data` or `payload`), nested objects included. Absent, null
        /// or mistyped fields are `None`.
        #[derive(Default, Debug)]
        pub(crate) struct Obj<'a> {
            /// The value was a JSON object.
            pub(crate) present: bool,
            $(pub(crate) $s: Option<Lax<'a>>,)*
            $(pub(crate) $n: Option<Box<Obj<'a>>>,)*
            $(pub(crate) $f: Option<Box<Obj<'a>>>,)*
            $(pub(crate) $r: Option<&'a RawValue>,)*
        }

        /// Reads an object `depth` levels below the value being parsed.
        struct ObjVisitor(u8);

        impl ObjVisitor {
            fn fill<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Obj<'de>, A::Error> {
                let below = self.0.saturating_add(1);
                let mut o = Obj { present: true, ..Obj::default() };
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.0.as_ref() {
                        $($sk => o.$s = Some(map.next_value()?),)*
                        $($nk => o.$n = map.next_value_seed(NestedSeed(below))?,)*
                        $($fk => o.$f = map.next_value_seed(FirstSeed(below))?,)*
                        $($rk => o.$r = Some(map.next_value()?),)*
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(o)
            }
        }
    };
}

lax_obj! {
    scalars {
        id = "id",
        id_str = "id_str",
        kind = "type",
        created_at = "created_at",
        timestamp_ms = "timestamp_ms",
        created_timestamp = "created_timestamp",
        date_time = "date_time",
        created_at_msec = "created_at_msec",
        event_timestamp_ms = "event_timestamp_ms",
        event_timestamp_ms_str = "event_timestamp_ms_str",
        updated_at = "updated_at",
        author_id = "author_id",
        is_quote_status = "is_quote_status",
        in_reply_to_status_id = "in_reply_to_status_id",
        in_reply_to_status_id_str = "in_reply_to_status_id_str",
        in_reply_to_user_id = "in_reply_to_user_id",
        in_reply_to_user_id_str = "in_reply_to_user_id_str",
        sender_id = "sender_id",
        recipient_id = "recipient_id",
        last_read_event_id = "last_read_event_id",
        user_id = "user_id",
        user_id_str = "user_id_str",
        app_id = "app_id",
        liked_tweet_id = "liked_tweet_id",
        liked_tweet_author_id = "liked_tweet_author_id",
        message_id = "message_id",
        broadcast_id = "broadcast_id",
        job_id = "job_id",
        job_state = "job_state",
        direction = "direction",
        event_uuid = "event_uuid",
        event_type = "event_type",
        title = "title",
        detail = "detail",
        message = "message",
    }
    nested {
        user = "user",
        author = "author",
        retweeted_status = "retweeted_status",
        quoted_status = "quoted_status",
        favorited_status = "favorited_status",
        source = "source",
        target = "target",
        status = "status",
        message_create = "message_create",
        data = "data",
        filter = "filter",
    }
    first {
        direct_message_events = "direct_message_events",
    }
    raw {
        payload = "payload",
        includes = "includes",
    }
}

impl<'de> Visitor<'de> for ObjVisitor {
    type Value = Obj<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.fill(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Obj::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Obj::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Obj::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Obj::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Obj::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Obj::default())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Obj::default())
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Obj::default())
    }
}

impl<'de> Deserialize<'de> for Obj<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(0))
    }
}

/// Nested objects deeper than this are skipped unread: normalization never needs more than
/// a few levels, and unbounded recursion would risk the stack on hostile input.
const MAX_OBJ_DEPTH: u8 = 6;

/// A nested object slot: `Some` only when the value is an object.
struct NestedSeed(u8);

impl<'de> DeserializeSeed<'de> for NestedSeed {
    type Value = Option<Box<Obj<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.0 > MAX_OBJ_DEPTH {
            IgnoredAny::deserialize(d)?;
            return Ok(None);
        }
        let o = d.deserialize_any(ObjVisitor(self.0))?;
        Ok(if o.present { Some(Box::new(o)) } else { None })
    }
}

/// An array slot of which only the first element (when an object) is read.
struct FirstSeed(u8);

impl<'de> DeserializeSeed<'de> for FirstSeed {
    type Value = Option<Box<Obj<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V(u8);
        impl<'de> Visitor<'de> for V {
            type Value = Option<Box<Obj<'de>>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element_seed(NestedSeed(self.0))?.flatten();
                drain_seq(seq)?;
                Ok(first)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(None)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        if self.0 > MAX_OBJ_DEPTH {
            IgnoredAny::deserialize(d)?;
            return Ok(None);
        }
        d.deserialize_any(V(self.0))
    }
}

/// The AAA / stream event keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKey {
    TweetCreate,
    TweetDelete,
    Favorite,
    Follow,
    Unfollow,
    Block,
    Unblock,
    Mute,
    Unmute,
    DirectMessage,
    DmTyping,
    DmRead,
    Spaces,
    UserEvent,
    ReplayJobStatus,
}

impl EventKey {
    fn from_key(k: &str) -> Option<EventKey> {
        Some(match k {
            "tweet_create_events" => EventKey::TweetCreate,
            "tweet_delete_events" => EventKey::TweetDelete,
            "favorite_events" => EventKey::Favorite,
            "follow_events" => EventKey::Follow,
            "unfollow_events" => EventKey::Unfollow,
            "block_events" => EventKey::Block,
            "unblock_events" => EventKey::Unblock,
            "mute_events" => EventKey::Mute,
            "unmute_events" => EventKey::Unmute,
            "direct_message_events" => EventKey::DirectMessage,
            "direct_message_indicate_typing_events" => EventKey::DmTyping,
            "direct_message_mark_read_events" => EventKey::DmRead,
            "spaces_events" => EventKey::Spaces,
            "user_event" => EventKey::UserEvent,
            "replay_job_status" => EventKey::ReplayJobStatus,
            _ => return None,
        })
    }
}

/// The top level of a delivery.
pub(crate) enum Top<'a> {
    Object(Box<TopObj<'a>>),
    /// Valid JSON that is not an object.
    Other,
}

/// The top-level object of a delivery, keys sorted into what normalization needs.
#[derive(Default)]
pub(crate) struct TopObj<'a> {
    pub(crate) for_user_id: Option<Lax<'a>>,
    /// The stream format's own `created_at`.
    pub(crate) created_at: Option<Lax<'a>>,
    pub(crate) users: Option<&'a RawValue>,
    pub(crate) apps: Option<&'a RawValue>,
    pub(crate) user_has_blocked: Option<&'a RawValue>,
    pub(crate) data: Option<&'a RawValue>,
    pub(crate) includes: Option<&'a RawValue>,
    pub(crate) errors: Option<&'a RawValue>,
    /// Known event keys in document order.
    pub(crate) events: Vec<(EventKey, &'a RawValue)>,
    /// Some key none of the above names holds an object or an array (it may carry events).
    pub(crate) unrecognized_structured: bool,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut t = TopObj::default();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    let k = k.0.as_ref();
                    match k {
                        "for_user_id" => t.for_user_id = Some(map.next_value()?),
                        "created_at" => t.created_at = Some(map.next_value()?),
                        "event_type" | "meta" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        "users" => t.users = Some(map.next_value()?),
                        "apps" => t.apps = Some(map.next_value()?),
                        "user_has_blocked" => t.user_has_blocked = Some(map.next_value()?),
                        "data" => t.data = Some(map.next_value()?),
                        "includes" => t.includes = Some(map.next_value()?),
                        "errors" => t.errors = Some(map.next_value()?),
                        other => {
                            let v: &'de RawValue = map.next_value()?;
                            if let Some(key) = EventKey::from_key(other) {
                                t.events.push((key, v));
                            } else if matches!(v.get().as_bytes().first(), Some(b'{' | b'[')) {
                                t.unrecognized_structured = true;
                            }
                        }
                    }
                }
                Ok(Top::Object(Box::new(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(Top::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Top::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Top::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Top::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Top::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Top::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Top::Other)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Top::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The entries of an object as raw values (for `user_event`), `None` if not an object.
pub(crate) struct RawEntries<'a>(pub(crate) Option<Vec<(Cow<'a, str>, &'a RawValue)>>);

impl<'de> Deserialize<'de> for RawEntries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEntries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    v.push((k.0, map.next_value()?));
                }
                Ok(RawEntries(Some(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(RawEntries(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RawEntries(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RawEntries(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawEntries(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RawEntries(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawEntries(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(RawEntries(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(RawEntries(None))
            }
        }
        d.deserialize_any(V)
    }
}
