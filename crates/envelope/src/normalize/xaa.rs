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
