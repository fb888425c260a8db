//! AAA webhook bodies and activity-stream lines: one envelope per event of every
//! `*_events` array, the post types with XAA's meaning.

use super::*;

/// The type (and target) of an AAA tweet for the subscribed `user`, with XAA's meaning:
/// everything the user authors is `post.create` (their replies, quotes and reposts too);
/// someone else's post is a repost, quote or reply *of the user* when it reposts, quotes or
/// replies to the user (a referenced post or user X left out counts as the user's: X sends
/// someone else's repost, quote or reply to a user only when it concerns them), and
/// otherwise a mention. When the subscribed user or the author is unknown, only the
/// tweet's own structure is left to go by.
pub(super) fn classify_tweet<'o>(
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

pub(super) struct Aaa<'c> {
    pub(super) ctx: &'c Context,
    pub(super) subject: &'c Subject,
    pub(super) stream_time: Option<DateTime<Utc>>,
    /// Shared by every envelope of the delivery, never copied per item.
    pub(super) includes: Option<Arc<RawValue>>,
}

impl Aaa<'_> {
    /// Envelopes for one event key; `false` when some of it was not understood.
    pub(super) fn key(&self, key: EventKey, raw: &RawValue, out: &mut Vec<Envelope>) -> bool {
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
            EventKey::TweetCreate => self.tweet_create(&o, user, &mut d),
            EventKey::TweetDelete => self.tweet_delete(&o, &mut d),
            EventKey::Favorite => self.favorite(&o, &mut d),
            EventKey::Follow
            | EventKey::Unfollow
            | EventKey::Block
            | EventKey::Unblock
            | EventKey::Mute
            | EventKey::Unmute => {
                if !self.relation(key, &o, &mut d) {
                    return false;
                }
            }
            EventKey::DirectMessage => self.direct_message(&o, user, &mut d),
            EventKey::DmTyping | EventKey::DmRead => self.dm_signal(key, &o, &mut d),
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

    /// `tweet_create_events`: the post, typed and targeted by [`classify_tweet`].
    fn tweet_create<'a>(&self, o: &'a Obj<'_>, user: Option<&'a str>, d: &mut Draft<'a>) {
        let actor = tweet_author(o);
        let object = tweet_id(o);
        let (ty, target) = classify_tweet(o, user, actor);
        d.ty = ty;
        d.actor = actor;
        d.target = target;
        d.object = object;
        d.key = object.map_or(IdKey::Canonical, |id| IdKey::Text(id.into()));
        d.time = self.time(obj_time(o).or_else(|| snowflake_time(object)));
    }

    /// `tweet_delete_events`: the deleted post and its author.
    fn tweet_delete<'a>(&self, o: &'a Obj<'_>, d: &mut Draft<'a>) {
        let st = o.status.as_deref();
        let object = st.and_then(tweet_id);
        d.ty = t::POST_DELETE;
        d.actor = st.and_then(|s| s.user_id.id().or(s.user_id_str.id()));
        d.object = object;
        d.key = object.map_or(IdKey::Canonical, |id| IdKey::Text(id.into()));
        d.time = self.time(obj_time(o));
    }

    /// `favorite_events`: the liker, the liked post and its author; keyed by the like's id
    /// or, without one, by liker, post and time.
    fn favorite<'a>(&self, o: &'a Obj<'_>, d: &mut Draft<'a>) {
        let fav = o.favorited_status.as_deref();
        let actor = user_ref(o.user.as_deref());
        let object = fav.and_then(tweet_id);
        d.ty = t::LIKE_CREATE;
        d.actor = actor;
        d.object = object;
        d.target = fav.and_then(tweet_author);
        let ms = millis_text(o.timestamp_ms.as_ref());
        d.key = match o.id.as_ref().and_then(Lax::as_str) {
            Some(id) if !id.is_empty() => IdKey::Text(id.into()),
            _ => owned_key(fields_key(&[actor, object, ms.as_deref()])),
        };
        d.time = self.time(obj_time(o));
    }

    /// Follow, block and mute events (and their undoing), by the event key and the item's
    /// `type`; `false` when the `type` is neither word of the key.
    fn relation<'a>(&self, key: EventKey, o: &'a Obj<'_>, d: &mut Draft<'a>) -> bool {
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
        let ms = millis_text(o.created_timestamp.as_ref());
        d.actor = actor;
        d.target = target;
        d.key = owned_key(fields_key(&[actor, target, ms.as_deref()]));
        d.time = self.time(obj_time(o));
        true
    }

    /// `direct_message_events`: sent when the subscribed user is the sender, else
    /// received; keyed by the message id or, without one, by sender, recipient and time.
    fn direct_message<'a>(&self, o: &'a Obj<'_>, user: Option<&str>, d: &mut Draft<'a>) {
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
        let ms = millis_text(o.created_timestamp.as_ref());
        d.key = match o.id.as_ref().and_then(Lax::as_str) {
            Some(id) if !id.is_empty() => IdKey::Text(id.into()),
            _ => owned_key(fields_key(&[sender, recipient, ms.as_deref()])),
        };
        d.time = self.time(obj_time(o).or_else(|| snowflake_time(object)));
    }

    /// Typing indicators and read receipts: sender and recipient (and, for a read
    /// receipt, the last message read), keyed by them and the time.
    fn dm_signal<'a>(&self, key: EventKey, o: &'a Obj<'_>, d: &mut Draft<'a>) {
        let sender = o.sender_id.id();
        let recipient = o.target.as_deref().and_then(|tg| tg.recipient_id.id());
        let ms = millis_text(o.created_timestamp.as_ref());
        d.actor = sender;
        d.target = recipient;
        if key == EventKey::DmRead {
            d.ty = t::DM_READ;
            d.object = o.last_read_event_id.id();
        } else {
            d.ty = t::DM_INDICATE_TYPING;
        }
        d.key = owned_key(fields_key(&[sender, recipient, ms.as_deref()]));
        d.time = self.time(obj_time(o));
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
pub(super) fn owned_key(k: IdKey<'_>) -> IdKey<'static> {
    match k {
        IdKey::Text(s) => IdKey::Text(Cow::Owned(s.into_owned())),
        IdKey::Canonical => IdKey::Canonical,
    }
}

/// A millisecond timestamp field as text (for keys).
fn millis_text(l: Option<&Lax<'_>>) -> Option<String> {
    l.and_then(Lax::millis).map(|n| n.to_string())
}
