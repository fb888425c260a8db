//! X Activity API objects (`{"data": …}`) and their in-band `errors`.

use super::*;

/// One XAA `data` object to one envelope; `Err(subject of the filter)` when not understood.
pub(super) fn xaa(
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
    let (actor, target, object) = roles(ty, family, &p, dm, filter, user);
    let time = xaa_time(ty, family, &p, dm, object).unwrap_or(ctx.received_at);
    let key = xaa_key(d.event_uuid.as_ref(), shared_id(ty, &p, dm));
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

/// An event's actor, target and object ids.
type Roles<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// The actor, target and object of an XAA event of type `ty` (of `family`), from its
/// payload `p`, the DM event inside it, the filter and the filter's user.
fn roles<'a, 'd>(
    ty: &str,
    family: &str,
    p: &'a Obj<'d>,
    dm: Option<&'a Obj<'d>>,
    filter: Option<&'a Obj<'d>>,
    user: Option<&'a str>,
) -> Roles<'a> {
    match family {
        "post" => {
            let target = match ty {
                t::POST_REPLY_CREATE => p.in_reply_to_user_id.id().or(user),
                t::POST_MENTION_CREATE | t::POST_QUOTE_CREATE | t::POST_REPOST_CREATE => user,
                _ => None,
            };
            (p.author_id.id(), target, tweet_id(p))
        }
        "like" => like_roles(p, filter, user),
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
        "dm" => dm_roles(ty, dm.unwrap_or(p)),
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
    }
}

/// The roles of a like: the liker, the liked post's author and the post, by the filter's
/// direction (or, without one, by whether the author is the filter's user).
fn like_roles<'a>(p: &'a Obj<'_>, filter: Option<&'a Obj<'_>>, user: Option<&'a str>) -> Roles<'a> {
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

/// The roles of a DM event `m`: sender, recipient, and the message (for `dm.read`, the
/// last one read).
fn dm_roles<'a>(ty: &str, m: &'a Obj<'_>) -> Roles<'a> {
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

/// The event's own time: the payload's, the DM event's, or the Snowflake of its object.
fn xaa_time<'d>(
    ty: &str,
    family: &str,
    p: &Obj<'d>,
    dm: Option<&Obj<'d>>,
    object: Option<&str>,
) -> Option<DateTime<Utc>> {
    obj_time(p).or_else(|| dm.and_then(obj_time)).or_else(|| {
        // A Snowflake dates the post/message itself: right for its creation, not for
        // a deletion.
        (matches!(family, "post" | "dm" | "broadcast") && ty != t::POST_DELETE)
            .then(|| snowflake_time(object))
            .flatten()
    })
}

/// The X object id both formats carry, so that an event X delivers once per format
/// during the cutover gets one id: the post (also the deleted one), the like, the DM.
fn shared_id<'a, 'd>(ty: &str, p: &'a Obj<'d>, dm: Option<&'a Obj<'d>>) -> Option<&'a str> {
    match ty {
        t::POST_CREATE
        | t::POST_REPLY_CREATE
        | t::POST_QUOTE_CREATE
        | t::POST_REPOST_CREATE
        | t::POST_MENTION_CREATE
        | t::POST_DELETE => tweet_id(p),
        t::LIKE_CREATE => {
            p.id.as_ref()
                .and_then(Lax::as_str)
                .filter(|s| !s.is_empty())
        }
        t::DM_SENT | t::DM_RECEIVED => dm.unwrap_or(p).id.as_ref().and_then(Lax::as_str),
        _ => None,
    }
}

/// The id key: the shared object id, else the `event_uuid`, else the canonical payload.
fn xaa_key<'a>(event_uuid: Option<&'a Lax<'_>>, shared: Option<&'a str>) -> IdKey<'a> {
    match (event_uuid, shared.filter(|s| !s.is_empty())) {
        (_, Some(k)) => IdKey::Text(Cow::Borrowed(k)),
        (Some(Lax::Str(s)), _) if !s.is_empty() => IdKey::Text(Cow::Borrowed(s.as_ref())),
        (Some(Lax::U64(n)), _) => IdKey::Text(Cow::Owned(n.to_string())),
        (Some(Lax::I64(n)), _) => IdKey::Text(Cow::Owned(n.to_string())),
        _ => IdKey::Canonical,
    }
}

/// `Some(XaaErrors)` when `errors` is an array.
pub(super) fn xaa_errors(raw: &RawValue) -> Option<NormalizeError> {
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
