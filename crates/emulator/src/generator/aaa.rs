//! The generator's AAA bodies (and, through `mirror`, the stream lines): one builder per
//! event kind.

use super::*;

/// Builds the AAA bodies of one kind (the kind, the target user) with the generator.
type AaaBuilder = fn(&mut Gen, &Shared, &str, usize) -> Vec<Value>;

/// The builder of an AAA kind (unknown kinds get the Spaces one).
fn builder(kind: &str) -> AaaBuilder {
    match kind {
        "post" => Gen::aaa_post,
        "reply" => Gen::aaa_reply,
        "repost" => Gen::aaa_repost,
        "quote" => Gen::aaa_quote,
        "mention" => Gen::aaa_mention,
        "longform" => Gen::aaa_longform,
        "favorite" => Gen::aaa_favorite,
        "follow" | "unfollow" => Gen::aaa_relation,
        "block" | "unblock" => Gen::aaa_relation,
        "mute" | "unmute" => Gen::aaa_relation,
        "dm_sent" | "dm_received" => Gen::aaa_dm,
        "dm_typing" | "dm_read" => Gen::aaa_dm_signal,
        "tweet_delete" => Gen::aaa_tweet_delete,
        "revoke" => Gen::aaa_revoke,
        _ => Gen::aaa_spaces,
    }
}

impl Gen {
    /// The AAA bodies of one event of `kind` for a target user.
    pub(super) fn aaa(&mut self, st: &Shared, kind: &str) -> Vec<Value> {
        let t = self.target();
        builder(kind)(self, st, kind, t)
    }

    /// The app generated DMs and revokes name: the first configured, or X's example one.
    fn first_app_id(&self) -> String {
        self.app_ids
            .first()
            .cloned()
            .unwrap_or_else(|| "13090192".into())
    }

    /// A `tweet_create_events` body for target user `t`.
    fn tweet_body(&self, t: usize, items: Value) -> Vec<Value> {
        vec![Self::aaa_body(
            Some(self.people[t].id),
            "tweet_create_events",
            items,
        )]
    }

    /// `post`: one post by the user, or a batch of two or three.
    fn aaa_post(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let n = if self.rng.gen_bool(self.batch_rate) {
            self.rng.gen_range(2..=3)
        } else {
            1
        };
        let items: Vec<Value> = (0..n)
            .map(|_| {
                let text = self.text(None, 20);
                let id = st.ids.next();
                self.tweet(t, text, id)
            })
            .collect();
        self.tweet_body(t, json!(items))
    }

    /// `reply`: someone replies to an older post of the user.
    fn aaa_reply(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let tid = self.people[t].id;
        let p = self.other(t);
        let (orig, _) = self.old_tweet(t);
        let text = self.text(Some((t, true)), 16);
        let prefix = char_len(&self.people[t].screen_name) + 2;
        let end = char_len(&text.text);
        let id = st.ids.next();
        let mut tw = self.tweet(p, text, id);
        Self::set(&mut tw, "in_reply_to_status_id", rounded_json(orig));
        Self::set(
            &mut tw,
            "in_reply_to_status_id_str",
            json!(orig.to_string()),
        );
        Self::set(&mut tw, "in_reply_to_user_id", rounded_json(tid));
        Self::set(&mut tw, "in_reply_to_user_id_str", json!(tid.to_string()));
        Self::set(
            &mut tw,
            "in_reply_to_screen_name",
            json!(self.people[t].screen_name),
        );
        Self::set(&mut tw, "display_text_range", json!([prefix, end]));
        self.tweet_body(t, json!([tw]))
    }

    /// `repost`: someone reposts an older post of the user.
    fn aaa_repost(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let tid = self.people[t].id;
        let p = self.other(t);
        let (_, orig) = self.old_tweet(t);
        let otext = orig["text"].as_str().unwrap_or_default().to_owned();
        let sn = self.people[t].screen_name.clone();
        let full = format!("RT @{sn}: {otext}");
        let text: String = full.chars().take(140).collect();
        let id = st.ids.next();
        let mut tw = self.tweet(
            p,
            Text {
                text,
                hashtags: vec![],
                urls: vec![],
                mentions: vec![json!({
                    "screen_name": sn, "name": self.people[t].name,
                    "id": rounded_json(tid), "id_str": tid.to_string(),
                    "indices": [3, 4 + char_len(&sn)],
                })],
            },
            id,
        );
        Self::set(&mut tw, "retweeted_status", orig);
        self.tweet_body(t, json!([tw]))
    }

    /// `quote`: someone quotes an older post of the user.
    fn aaa_quote(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let p = self.other(t);
        let (oid, orig) = self.old_tweet(t);
        let mut text = self.text(None, 12);
        let u = self.tco();
        text.text.push(' ');
        let start = char_len(&text.text);
        text.text.push_str(&u);
        text.urls.push(json!({
            "url": u,
            "expanded_url": format!("https://x.com/{}/status/{oid}", self.people[t].screen_name),
            "display_url": format!("x.com/{}/st…", self.people[t].screen_name),
            "indices": [start, char_len(&text.text)],
        }));
        let id = st.ids.next();
        let mut tw = self.tweet(p, text, id);
        Self::set(&mut tw, "is_quote_status", json!(true));
        Self::set(&mut tw, "quoted_status_id", rounded_json(oid));
        Self::set(&mut tw, "quoted_status_id_str", json!(oid.to_string()));
        Self::set(&mut tw, "quoted_status", orig);
        self.tweet_body(t, json!([tw]))
    }

    /// `mention`: someone's post mentions the user (with `user_has_blocked`).
    fn aaa_mention(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let p = self.other(t);
        let text = self.text(Some((t, false)), 16);
        let id = st.ids.next();
        let tw = self.tweet(p, text, id);
        let mut b = Self::aaa_body(Some(self.people[t].id), "tweet_create_events", json!([tw]));
        if let Some(o) = b.as_object_mut() {
            // X puts it right after for_user_id.
            let items = o.remove("tweet_create_events").unwrap_or(Value::Null);
            o.insert("user_has_blocked".into(), json!("false"));
            o.insert("tweet_create_events".into(), items);
        }
        vec![b]
    }

    /// `longform`: a post by the user over 140 characters, truncated with
    /// `extended_tweet`.
    fn aaa_longform(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let id = st.ids.next();
        let mut full = String::new();
        let paras = self.rng.gen_range(3..12);
        for _ in 0..paras {
            let n = self.rng.gen_range(15..40);
            full.push_str(&self.words(n));
            full.push_str(".\n\n");
        }
        let mut full = full.trim_end().to_owned();
        let m = self.other(t);
        let msn = self.people[m].screen_name.clone();
        full.push_str("\n@");
        let mstart = char_len(&full) - 1;
        full.push_str(&msn);
        let flen = char_len(&full);
        let link = self.tco();
        let head: String = full.chars().take(116).collect();
        let text = format!("{head} {link}");
        let mut tw = self.tweet(
            t,
            Text {
                text: text.clone(),
                hashtags: vec![],
                mentions: vec![],
                urls: vec![json!({
                    "url": link,
                    "expanded_url": format!("https://twitter.com/i/web/status/{id}"),
                    "display_url": format!("twitter.com/i/web/status/{}…", id.to_string().chars().take(7).collect::<String>()),
                    "indices": [117, char_len(&text)],
                })],
            },
            id,
        );
        Self::set(&mut tw, "truncated", json!(true));
        Self::set(&mut tw, "display_text_range", json!([0, 140]));
        Self::set(
            &mut tw,
            "extended_tweet",
            json!({
                "full_text": full,
                "display_text_range": [0, flen],
                "entities": {"hashtags": [], "urls": [], "symbols": [], "user_mentions": [{
                    "screen_name": msn, "name": self.people[m].name,
                    "id": rounded_json(self.people[m].id), "id_str": self.people[m].id.to_string(),
                    "indices": [mstart, flen],
                }]},
            }),
        );
        self.tweet_body(t, json!([tw]))
    }

    /// `favorite`: someone likes the user's post, or the user likes someone's.
    fn aaa_favorite(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let p = self.other(t);
        let (liker, author) = if self.rng.gen_bool(0.6) {
            (p, t)
        } else {
            (t, p)
        };
        let (_, fav) = self.old_tweet(author);
        let ms = snowflake_ms(st.ids.next());
        let hex: String = (0..16)
            .map(|_| format!("{:02x}", self.rng.gen::<u8>()))
            .collect();
        let item = json!({
            "id": hex,
            "created_at": twitter_date(ms),
            "timestamp_ms": ms,
            "favorited_status": fav,
            "user": self.user_v11(liker),
        });
        vec![Self::aaa_body(
            Some(self.people[t].id),
            "favorite_events",
            json!([item]),
        )]
    }

    /// `follow`, `unfollow`, `block`, `unblock`, `mute`, `unmute`: a source and a target
    /// user; the undoing kinds sometimes come under their own key.
    fn aaa_relation(&mut self, st: &Shared, kind: &str, t: usize) -> Vec<Value> {
        let p = self.other(t);
        let ms = snowflake_ms(st.ids.next_distinct_ms());
        let family = kind.trim_start_matches("un");
        // Follows come from others; blocks and mutes are the user's own acts.
        let (src, tgt) = if family == "follow" && self.rng.gen_bool(0.6) {
            (p, t)
        } else {
            (t, p)
        };
        let key = if kind.starts_with("un") && self.rng.gen_bool(0.2) {
            format!("{kind}_events")
        } else {
            format!("{family}_events")
        };
        let item = json!({
            "type": kind,
            "created_timestamp": ms.to_string(),
            "target": self.user_v11(tgt),
            "source": self.user_v11(src),
        });
        vec![Self::aaa_body(Some(self.people[t].id), &key, json!([item]))]
    }

    /// `dm_sent`, `dm_received`: a direct message with its users and app, once per
    /// subscribed side.
    fn aaa_dm(&mut self, st: &Shared, kind: &str, t: usize) -> Vec<Value> {
        let p = self.other(t);
        let (sender, recipient) = if kind == "dm_sent" { (t, p) } else { (p, t) };
        let id = st.ids.next();
        let text = self.words_between(2, 25);
        let app_id = self.first_app_id();
        let item = json!({
            "type": "message_create",
            "id": id.to_string(),
            "created_timestamp": snowflake_ms(id).to_string(),
            "message_create": {
                "target": {"recipient_id": self.people[recipient].id.to_string()},
                "sender_id": self.people[sender].id.to_string(),
                "source_app_id": app_id,
                "message_data": {"text": text, "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []}},
            },
        });
        let mut users = Map::new();
        users.insert(self.people[sender].id.to_string(), self.user_dm(sender));
        users.insert(
            self.people[recipient].id.to_string(),
            self.user_dm(recipient),
        );
        let apps = json!({app_id.clone(): {"id": app_id, "name": "EmulatorApp", "url": "https://example.com/app"}});
        let mk = |for_user: u64| {
            json!({
                "for_user_id": for_user.to_string(),
                "direct_message_events": [item.clone()],
                "apps": apps.clone(),
                "users": Value::Object(users.clone()),
            })
        };
        let mut out = vec![mk(self.people[t].id)];
        // Both sides subscribed: one delivery per user.
        if self.targets.contains(&p) {
            out.push(mk(self.people[p].id));
        }
        out
    }

    /// `dm_typing`, `dm_read`: someone typing to the user, or reading their messages.
    fn aaa_dm_signal(&mut self, st: &Shared, kind: &str, t: usize) -> Vec<Value> {
        let tid = self.people[t].id;
        let p = self.other(t);
        let ms = snowflake_ms(st.ids.next_distinct_ms());
        let mut item = json!({
            "created_timestamp": ms.to_string(),
            "sender_id": self.people[p].id.to_string(),
            "target": {"recipient_id": tid.to_string()},
        });
        let key = if kind == "dm_read" {
            Self::set(&mut item, "last_read_event_id", json!(st.ids.next_str()));
            "direct_message_mark_read_events"
        } else {
            "direct_message_indicate_typing_events"
        };
        let mut users = Map::new();
        users.insert(self.people[p].id.to_string(), self.user_dm(p));
        let mut b = Self::aaa_body(Some(tid), key, json!([item]));
        Self::set(&mut b, "users", Value::Object(users));
        vec![b]
    }

    /// `tweet_delete`: the user deletes an older post.
    fn aaa_tweet_delete(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let tid = self.people[t].id;
        let (oid, _) = self.old_tweet(t);
        let ms = snowflake_ms(st.ids.next());
        let item = json!({
            "status": {"id": oid.to_string(), "user_id": tid.to_string()},
            "timestamp_ms": ms.to_string(),
        });
        vec![Self::aaa_body(
            Some(tid),
            "tweet_delete_events",
            json!([item]),
        )]
    }

    /// `revoke`: the user revokes the app (a `user_event` without `for_user_id`).
    fn aaa_revoke(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let ms = snowflake_ms(st.ids.next_distinct_ms());
        let app_id = self.first_app_id();
        let dt = Utc
            .timestamp_millis_opt(ms as i64)
            .single()
            .unwrap_or_else(Utc::now)
            .format("%Y-%m-%dT%H:%M:%S%.3f+00:00")
            .to_string();
        vec![json!({"user_event": {"revoke": {
            "date_time": dt,
            "target": {"app_id": app_id},
            "source": {"user_id": self.people[t].id.to_string()},
        }}})]
    }

    /// `spaces`: `spaces_events`, announced by X, not yet delivered; shape unknown.
    fn aaa_spaces(&mut self, st: &Shared, _: &str, t: usize) -> Vec<Value> {
        let tid = self.people[t].id;
        let id = st.ids.next();
        let item = json!({
            "id": broadcast_id(id),
            "state": if self.rng.gen_bool(0.5) { "live" } else { "ended" },
            "creator_id": tid.to_string(),
            "title": self.words(5),
            "created_at": rfc(snowflake_ms(id)),
        });
        vec![Self::aaa_body(Some(tid), "spaces_events", json!([item]))]
    }
}
