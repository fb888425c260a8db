//! The generator's X Activity API objects: one builder per event type.

use super::*;

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

    pub(super) fn xaa(&mut self, st: &Shared, kind: &'static str) -> Value {
        let t = self.target();
        let tid = self.people[t].id.to_string();
        let mut filter = json!({"user_id": tid});
        let mut includes: Option<Value> = None;
        let payload = match kind {
            "post.create"
            | "post.mention.create"
            | "post.reply.create"
            | "post.quote.create"
            | "post.repost.create" => {
                let p = self.other(t);
                let author = if kind == "post.create" { t } else { p };
                let oid = st.ids.next().saturating_sub(1 << 30);
                let sn = self.people[t].screen_name.clone();
                let body = self.words_between(4, 20);
                let (text, refs) = match kind {
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
                };
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
                includes = Some(
                    json!({"users": [self.user_v2(author)["data"].clone()], "tweets": [tw.clone()]}),
                );
                tw
            }
            "post.delete" => {
                let id = st.ids.next().saturating_sub(1 << 32);
                includes = Some(json!({"users": [self.user_v2(t)]}));
                json!({"id": id.to_string(), "author_id": tid})
            }
            "like.create" => {
                let p = self.other(t);
                let outbound = self.rng.gen_bool(0.5);
                filter = json!({"user_id": tid, "direction": if outbound { "outbound" } else { "inbound" }});
                let author = if outbound { p } else { t };
                let liked = st.ids.next().saturating_sub(1 << 31);
                let ms = snowflake_ms(st.ids.next());
                let hex: String = (0..16)
                    .map(|_| format!("{:02x}", self.rng.gen::<u8>()))
                    .collect();
                includes = Some(json!({"users": [self.user_v2(author)["data"].clone()]}));
                json!({
                    "id": hex, "created_at": rfc(ms), "timestamp_ms": ms.to_string(),
                    "liked_tweet_author_id": self.people[author].id.to_string(),
                    "liked_tweet_id": liked.to_string(),
                })
            }
            "follow.follow" | "follow.unfollow" | "block.block" | "block.unblock" | "mute.mute"
            | "mute.unmute" => {
                let p = self.other(t);
                let (src, tgt) = if kind.starts_with("follow") && self.rng.gen_bool(0.5) {
                    (p, t)
                } else {
                    (t, p)
                };
                json!({"source": self.user_v2(src), "target": self.user_v2(tgt)})
            }
            "dm.sent" | "dm.received" => {
                let p = self.other(t);
                let (s, r) = if kind == "dm.sent" { (t, p) } else { (p, t) };
                let id = st.ids.next();
                let text = self.words_between(2, 20);
                let mut users = Map::new();
                users.insert(self.people[s].id.to_string(), self.user_v2(s));
                users.insert(self.people[r].id.to_string(), self.user_v2(r));
                json!({
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
                })
            }
            "dm.indicate_typing" | "dm.read" => {
                let p = self.other(t);
                let ms = snowflake_ms(st.ids.next_distinct_ms());
                let mut v = json!({
                    "created_timestamp": ms.to_string(),
                    "sender_id": self.people[p].id.to_string(),
                    "target": {"recipient_id": tid},
                });
                if kind == "dm.read" {
                    Self::set(&mut v, "last_read_event_id", json!(st.ids.next_str()));
                }
                v
            }
            "oauth.revoke" => {
                filter = json!({});
                let ms = snowflake_ms(st.ids.next_distinct_ms());
                let app_id = self.app_ids.first().cloned().unwrap_or_default();
                let dt = Utc
                    .timestamp_millis_opt(ms as i64)
                    .single()
                    .unwrap_or_else(Utc::now)
                    .format("%Y-%m-%dT%H:%M:%S+00:00")
                    .to_string();
                json!({"date_time": dt, "user_id": tid, "app_id": app_id})
            }
            k if k.starts_with("profile.update.") => {
                let sn = self.people[t].screen_name.clone();
                let (before, after) = match &k["profile.update.".len()..] {
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
                };
                json!({"before": before, "after": after})
            }
            "spaces.start" | "spaces.end" => {
                let id = st.ids.next();
                json!({
                    "user": self.user_v2(t),
                    "broadcast_id": broadcast_id(id),
                    "event_type": kind.replace('.', "_"),
                })
            }
            "news.new" => {
                let id = st.ids.next();
                let kw = ["OpenAI", "Rust", "Kafka", "SpaceX", "Climate"][self.rng.gen_range(0..5)];
                filter = json!({"keyword": kw});
                json!({
                    "id": id.to_string(),
                    "name": format!("{kw}: {}", self.words(5)),
                    "summary": self.words(40),
                    "hook": self.words(15),
                    "category": "News",
                    "updated_at": rfc(snowflake_ms(id)),
                    "disclaimer": "This story is a summary of posts on X and may evolve over time. Grok can make mistakes, verify its outputs.",
                    "contexts": {"entities": {"events": [], "organizations": [kw], "people": [], "places": [], "products": []}, "topics": ["Technology"], "finance": {"tickers": []}, "sports": {"teams": []}},
                    "cluster_posts_results": [{"post_id": st.ids.next_str()}, {"post_id": st.ids.next_str()}],
                })
            }
            "broadcast.start" | "broadcast.end" | "broadcast.chat" => {
                let id = st.ids.next();
                let ms = snowflake_ms(id);
                let bid = broadcast_id(id);
                if kind == "broadcast.chat" {
                    let p = self.other(t);
                    json!({"broadcast_id": bid, "message_id": st.ids.next_str(), "message": self.words(6), "author": self.user_v2(p)})
                } else {
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
                    v
                }
            }
            _ => {
                // chat.received / chat.sent (encrypted X Chat).
                let p = self.other(t);
                let (s, r) = if kind == "chat.sent" { (t, p) } else { (p, t) };
                let mut blob = [0u8; 48];
                self.rng.fill(&mut blob[..]);
                let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
                let ms = snowflake_ms(st.ids.next());
                json!({
                    "conversation_token": format!("eyJhbGciOiJIUzI1NiJ9.{}", b64.chars().take(32).collect::<String>()),
                    "id": format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", self.rng.gen::<u32>(), self.rng.gen::<u16>(), self.rng.gen::<u16>() & 0xfff, self.rng.gen::<u16>() & 0xfff, self.rng.gen::<u64>() & 0xffff_ffff_ffff),
                    "created_at_msec": ms.to_string(),
                    "sender_id": self.people[s].id.to_string(),
                    "conversation_id": format!("{}:{}", self.people[p].id, tid),
                    "conversation_key_version": (ms - 86_400_000).to_string(),
                    "encoded_event": b64,
                    "message_event_signature": {"public_key_version": (ms - 1_000_000).to_string(), "signature": b64.chars().take(43).collect::<String>(), "signature_version": "7"},
                    "recipient_id": self.people[r].id.to_string(),
                })
            }
        };
        let mut data = json!({
            "event_uuid": self.event_uuid(st),
            "filter": filter,
            "event_type": kind,
        });
        if self.rng.gen_bool(0.8) {
            Self::set(
                &mut data,
                "tag",
                json!(format!("{}-events", kind.split('.').next().unwrap_or(kind))),
            );
        }
        Self::set(&mut data, "payload", payload);
        if let Some(i) = includes {
            Self::set(&mut data, "includes", i);
        }
        json!({"data": data})
    }
}
