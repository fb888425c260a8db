//! The generator's X Activity API objects: one builder per event type.

use super::*;

/// What an XAA builder makes: the payload, and the `filter` (when it is not the target
/// user's) and `includes` of its envelope.
struct Built {
    payload: Value,
    filter: Option<Value>,
    includes: Option<Value>,
}

impl Built {
    /// A payload with the user's filter and no includes.
    fn payload(payload: Value) -> Self {
        Self {
            payload,
            filter: None,
            includes: None,
        }
    }

    /// With this `filter`.
    fn filter(mut self, filter: Value) -> Self {
        self.filter = Some(filter);
        self
    }

    /// With these `includes`.
    fn includes(mut self, includes: Value) -> Self {
        self.includes = Some(includes);
        self
    }
}

/// Builds the payload of one event type (the type, the target user) with the generator.
type XaaBuilder = fn(&mut Gen, &Shared, &'static str, usize) -> Built;

/// The builder of an XAA event type (unknown types get the X Chat one).
fn builder(kind: &str) -> XaaBuilder {
    match kind {
        "post.create" | "post.mention.create" | "post.reply.create" => Gen::xaa_post,
        "post.quote.create" | "post.repost.create" => Gen::xaa_post,
        "post.delete" => Gen::xaa_post_delete,
        "like.create" => Gen::xaa_like,
        "follow.follow" | "follow.unfollow" => Gen::xaa_relation,
        "block.block" | "block.unblock" => Gen::xaa_relation,
        "mute.mute" | "mute.unmute" => Gen::xaa_relation,
        "dm.sent" | "dm.received" => Gen::xaa_dm,
        "dm.indicate_typing" | "dm.read" => Gen::xaa_dm_signal,
        "oauth.revoke" => Gen::xaa_revoke,
        k if k.starts_with("profile.update.") => Gen::xaa_profile_update,
        "spaces.start" | "spaces.end" => Gen::xaa_spaces,
        "news.new" => Gen::xaa_news,
        "broadcast.start" | "broadcast.end" => Gen::xaa_broadcast,
        "broadcast.chat" => Gen::xaa_broadcast_chat,
        _ => Gen::xaa_chat,
    }
}

/// The text and `referenced_tweets` of a post event type, around the words `body`, for
/// the user `sn` and their older post `oid`.
fn post_text(kind: &str, sn: &str, body: String, oid: u64) -> (String, Value) {
    match kind {
        "post.reply.create" => (
            format!("@{sn} {body}"),
            json!([{"type": "replied_to", "id": oid.to_string()}]),
        ),
        "post.quote.create" => (
            format!(
                "{body} https://t.co/{}",
                oid.to_string().chars().take(8).collect::<String>()
            ),
            json!([{"type": "quoted", "id": oid.to_string()}]),
        ),
        "post.repost.create" => (
            format!("RT @{sn}: {body}"),
            json!([{"type": "retweeted", "id": oid.to_string()}]),
        ),
        "post.mention.create" => (format!("{body} @{sn}"), json!([])),
        _ => (body, json!([])),
    }
}

impl Gen {
    fn tweet_v2(&mut self, author: usize, text: &str, id: u64, refs: Value) -> Value {
        let ms = snowflake_ms(id);
        let mut tw = json!({
            "id": id.to_string(),
            "text": text,
            "author_id": self.people[author].id.to_string(),
            "created_at": rfc(ms),
            "conversation_id": id.to_string(),
            "edit_history_tweet_ids": [id.to_string()],
            "edit_controls": {"edits_remaining": 5, "edits_remaining_str": "5", "is_edit_eligible": true, "editable_until": rfc(ms + 3_600_000)},
            "display_text_range": [0, char_len(text)],
            "lang": "en",
            "possibly_sensitive": false,
            "paid_partnership": false,
            "reply_settings": "everyone",
            "public_metrics": {"retweet_count": 0, "retweet_count_str": "0", "reply_count": 0, "reply_count_str": "0", "like_count": 0, "like_count_str": "0", "quote_count": 0, "quote_count_str": "0", "bookmark_count": 0, "bookmark_count_str": "0", "impression_count": 0, "impression_count_str": "0"},
        });
        if refs.as_array().is_some_and(|a| !a.is_empty()) {
            Self::set(&mut tw, "referenced_tweets", refs);
        }
        tw
    }

    fn event_uuid(&mut self, st: &Shared) -> String {
        let id = st.ids.next() as i64;
        // X's examples show signed 64-bit values, some negative.
        if self.rng.gen_bool(0.4) {
            (-id).to_string()
        } else {
            id.to_string()
        }
    }

    /// The `{"data":…}` envelope of one event of type `kind` for a target user.
    pub(super) fn xaa(&mut self, st: &Shared, kind: &'static str) -> Value {
        let t = self.target();
        let tid = self.people[t].id.to_string();
        let built = builder(kind)(self, st, kind, t);
        let mut data = json!({
            "event_uuid": self.event_uuid(st),
            "filter": built.filter.unwrap_or_else(|| json!({"user_id": tid})),
            "event_type": kind,
        });
        if self.rng.gen_bool(0.8) {
            Self::set(
                &mut data,
                "tag",
                json!(format!("{}-events", kind.split('.').next().unwrap_or(kind))),
            );
        }
        Self::set(&mut data, "payload", built.payload);
        if let Some(i) = built.includes {
            Self::set(&mut data, "includes", i);
        }
        json!({"data": data})
    }

    /// `post.create` (the user's post) and the mention, reply, quote and repost of the
    /// user by someone else, with the author and the post in `includes`.
    fn xaa_post(&mut self, st: &Shared, kind: &'static str, t: usize) -> Built {
        let tid = self.people[t].id.to_string();
        let p = self.other(t);
        let author = if kind == "post.create" { t } else { p };
        let oid = st.ids.next().saturating_sub(1 << 30);
        let sn = self.people[t].screen_name.clone();
        let body = self.words_between(4, 20);
        let (text, refs) = post_text(kind, &sn, body, oid);
        let id = st.ids.next();
        let mut tw = self.tweet_v2(author, &text, id, refs);
        if kind == "post.reply.create" {
            Self::set(&mut tw, "in_reply_to_user_id", json!(tid));
            Self::set(&mut tw, "conversation_id", json!(oid.to_string()));
        }
        if kind != "post.create" {
            let start = text.find(&format!("@{sn}")).unwrap_or(0);
            let start = char_len(&text[..start]);
            let end = start + 1 + char_len(&sn);
            Self::set(
                &mut tw,
                "entities",
                json!({"mentions": [{"start": start, "start_str": start.to_string(), "end": end, "end_str": end.to_string(), "username": sn, "id": tid}]}),
            );
        }
        let includes =
            json!({"users": [self.user_v2(author)["data"].clone()], "tweets": [tw.clone()]});
        Built::payload(tw).includes(includes)
    }

    /// `post.delete`: the user deletes an older post.
    fn xaa_post_delete(&mut self, st: &Shared, _: &'static str, t: usize) -> Built {
        let id = st.ids.next().saturating_sub(1 << 32);
        let includes = json!({"users": [self.user_v2(t)]});
        Built::payload(json!({"id": id.to_string(), "author_id": self.people[t].id.to_string()}))
            .includes(includes)
    }

    /// `like.create`, outbound (the user likes) or inbound (the user's post is liked).
    fn xaa_like(&mut self, st: &Shared, _: &'static str, t: usize) -> Built {
        let tid = self.people[t].id.to_string();
        let p = self.other(t);
        let outbound = self.rng.gen_bool(0.5);
        let filter =
            json!({"user_id": tid, "direction": if outbound { "outbound" } else { "inbound" }});
        let author = if outbound { p } else { t };
        let liked = st.ids.next().saturating_sub(1 << 31);
        let ms = snowflake_ms(st.ids.next());
        let hex: String = (0..16)
            .map(|_| format!("{:02x}", self.rng.gen::<u8>()))
            .collect();
        let includes = json!({"users": [self.user_v2(author)["data"].clone()]});
        Built::payload(json!({
            "id": hex, "created_at": rfc(ms), "timestamp_ms": ms.to_string(),
            "liked_tweet_author_id": self.people[author].id.to_string(),
            "liked_tweet_id": liked.to_string(),
        }))
        .filter(filter)
        .includes(includes)
    }

    /// `follow.*`, `block.*`, `mute.*`: a source and a target user.
    fn xaa_relation(&mut self, _: &Shared, kind: &'static str, t: usize) -> Built {
        let p = self.other(t);
        let (src, tgt) = if kind.starts_with("follow") && self.rng.gen_bool(0.5) {
            (p, t)
        } else {
            (t, p)
        };
        Built::payload(json!({"source": self.user_v2(src), "target": self.user_v2(tgt)}))
    }

    /// `dm.sent`, `dm.received`: a direct message with both users.
    fn xaa_dm(&mut self, st: &Shared, kind: &'static str, t: usize) -> Built {
        let p = self.other(t);
        let (s, r) = if kind == "dm.sent" { (t, p) } else { (p, t) };
        let id = st.ids.next();
        let text = self.words_between(2, 20);
        let mut users = Map::new();
        users.insert(self.people[s].id.to_string(), self.user_v2(s));
        users.insert(self.people[r].id.to_string(), self.user_v2(r));
        Built::payload(json!({
            "direct_message_events": [{
                "type": "message_create", "id": id.to_string(),
                "created_timestamp": snowflake_ms(id).to_string(),
                "message_create": {
                    "target": {"recipient_id": self.people[r].id.to_string()},
                    "sender_id": self.people[s].id.to_string(),
                    "message_data": {"text": text, "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []}},
                },
            }],
            "users": Value::Object(users),
        }))
    }

    /// `dm.indicate_typing`, `dm.read`: someone typing to the user, or reading.
    fn xaa_dm_signal(&mut self, st: &Shared, kind: &'static str, t: usize) -> Built {
        let p = self.other(t);
        let ms = snowflake_ms(st.ids.next_distinct_ms());
        let mut v = json!({
            "created_timestamp": ms.to_string(),
            "sender_id": self.people[p].id.to_string(),
            "target": {"recipient_id": self.people[t].id.to_string()},
        });
        if kind == "dm.read" {
            Self::set(&mut v, "last_read_event_id", json!(st.ids.next_str()));
        }
        Built::payload(v)
    }

    /// `oauth.revoke`: the user revokes the app (an empty filter).
    fn xaa_revoke(&mut self, st: &Shared, _: &'static str, t: usize) -> Built {
        let ms = snowflake_ms(st.ids.next_distinct_ms());
        let app_id = self.app_ids.first().cloned().unwrap_or_default();
        let dt = Utc
            .timestamp_millis_opt(ms as i64)
            .single()
            .unwrap_or_else(Utc::now)
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string();
        Built::payload(
            json!({"date_time": dt, "user_id": self.people[t].id.to_string(), "app_id": app_id}),
        )
        .filter(json!({}))
    }

    /// `profile.update.*`: the field's value before and after.
    fn xaa_profile_update(&mut self, _: &Shared, kind: &'static str, t: usize) -> Built {
        let (before, after) = self.profile_change(&kind["profile.update.".len()..], t);
        Built::payload(json!({"before": before, "after": after}))
    }

    /// The before and after of the user's profile `field` (`handle` for unknown ones).
    fn profile_change(&mut self, field: &str, t: usize) -> (Value, Value) {
        let tid = self.people[t].id.to_string();
        let sn = self.people[t].screen_name.clone();
        match field {
            "bio" => (json!(self.people[t].description), {
                let w = self.words(3);
                json!(format!("{} · {}", self.people[t].description, w))
            }),
            "profile_picture" => (
                json!(format!(
                    "https://pbs.twimg.com/profile_images/{tid}/old_normal.jpg"
                )),
                json!(format!(
                    "https://pbs.twimg.com/profile_images/{tid}/avatar_normal.jpg"
                )),
            ),
            "banner_picture" => (
                json!(format!(
                    "https://pbs.twimg.com/profile_banners/{tid}/1500000000"
                )),
                json!(format!(
                    "https://pbs.twimg.com/profile_banners/{tid}/{}",
                    crate::ids::now_ms() / 1000
                )),
            ),
            "screenname" => (
                json!(self.people[t].name),
                json!(format!("{} ✨", self.people[t].name)),
            ),
            "geo" => (
                json!(PLACES[0]),
                json!(PLACES[self.rng.gen_range(1..PLACES.len())]),
            ),
            "url" => (json!("https://t.co/oldlinkxx"), json!(self.tco())),
            "verified_badge" => (json!(false), json!(true)),
            "affiliate_badge" => (
                json!(null),
                json!({"description": "X", "url": "https://twitter.com/X", "badge_url": "https://pbs.twimg.com/profile_images/1/badge_normal.jpg"}),
            ),
            _ => (json!(sn), json!(format!("{sn}_new"))),
        }
    }

    /// `spaces.start`, `spaces.end`: the user's Space.
    fn xaa_spaces(&mut self, st: &Shared, kind: &'static str, t: usize) -> Built {
        let id = st.ids.next();
        Built::payload(json!({
            "user": self.user_v2(t),
            "broadcast_id": broadcast_id(id),
            "event_type": kind.replace('.', "_"),
        }))
    }

    /// `news.new`: a story about a keyword (filtered by the keyword, not a user).
    fn xaa_news(&mut self, st: &Shared, _: &'static str, _: usize) -> Built {
        let id = st.ids.next();
        let kw = ["OpenAI", "Rust", "Kafka", "SpaceX", "Climate"][self.rng.gen_range(0..5)];
        Built::payload(json!({
            "id": id.to_string(),
            "name": format!("{kw}: {}", self.words(5)),
            "summary": self.words(40),
            "hook": self.words(15),
            "category": "News",
            "updated_at": rfc(snowflake_ms(id)),
            "disclaimer": "This story is a summary of posts on X and may evolve over time. Grok can make mistakes, verify its outputs.",
            "contexts": {"entities": {"events": [], "organizations": [kw], "people": [], "places": [], "products": []}, "topics": ["Technology"], "finance": {"tickers": []}, "sports": {"teams": []}},
            "cluster_posts_results": [{"post_id": st.ids.next_str()}, {"post_id": st.ids.next_str()}],
        }))
        .filter(json!({"keyword": kw}))
    }

    /// `broadcast.start`, `broadcast.end`: the user's live broadcast (with its duration
    /// once ended).
    fn xaa_broadcast(&mut self, st: &Shared, kind: &'static str, t: usize) -> Built {
        let id = st.ids.next();
        let ms = snowflake_ms(id);
        let bid = broadcast_id(id);
        let ended = kind == "broadcast.end";
        let mut v = json!({
            "user": self.user_v2(t), "broadcast_id": bid,
            "event_timestamp_ms": ms, "event_timestamp_ms_str": ms.to_string(),
            "title": self.words(4),
            "broadcast_state": if ended { "Ended" } else { "Running" },
            "created_timestamp_ms": ms - 5_000, "created_timestamp_ms_str": (ms - 5_000).to_string(),
            "updated_timestamp_ms": ms, "updated_timestamp_ms_str": ms.to_string(),
            "language": "en",
            "thumbnail_url": format!("https://example.com/broadcasts/{bid}/thumb.jpg"),
            "available_for_replay": ended,
        });
        if ended {
            Self::set(&mut v, "duration_ms", json!(5_000));
            Self::set(&mut v, "duration_ms_str", json!("5000"));
        }
        Built::payload(v)
    }

    /// `broadcast.chat`: someone's chat message on a broadcast.
    fn xaa_broadcast_chat(&mut self, st: &Shared, _: &'static str, t: usize) -> Built {
        let id = st.ids.next();
        let bid = broadcast_id(id);
        let p = self.other(t);
        Built::payload(
            json!({"broadcast_id": bid, "message_id": st.ids.next_str(), "message": self.words(6), "author": self.user_v2(p)}),
        )
    }

    /// `chat.received`, `chat.sent`: an encrypted X Chat message.
    fn xaa_chat(&mut self, st: &Shared, kind: &'static str, t: usize) -> Built {
        let tid = self.people[t].id;
        let p = self.other(t);
        let (s, r) = if kind == "chat.sent" { (t, p) } else { (p, t) };
        let mut blob = [0u8; 48];
        self.rng.fill(&mut blob[..]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        let ms = snowflake_ms(st.ids.next());
        Built::payload(json!({
            "conversation_token": format!("eyJhbGciOiJIUzI1NiJ9.{}", b64.chars().take(32).collect::<String>()),
            "id": format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", self.rng.gen::<u32>(), self.rng.gen::<u16>(), self.rng.gen::<u16>() & 0xfff, self.rng.gen::<u16>() & 0xfff, self.rng.gen::<u64>() & 0xffff_ffff_ffff),
            "created_at_msec": ms.to_string(),
            "sender_id": self.people[s].id.to_string(),
            "conversation_id": format!("{}:{}", self.people[p].id, tid),
            "conversation_key_version": (ms - 86_400_000).to_string(),
            "encoded_event": b64,
            "message_event_signature": {"public_key_version": (ms - 1_000_000).to_string(), "signature": b64.chars().take(43).collect::<String>(), "signature_version": "7"},
            "recipient_id": self.people[r].id.to_string(),
        }))
    }
}
