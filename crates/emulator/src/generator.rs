//! The event generator: a population of users and a mix of every event type in the three
//! formats (AAA webhook bodies, stream lines, XAA envelopes), modelled on X's payloads.
//!
//! Kinds (the keys of `GeneratorConfig::mix`):
//! * AAA and stream: `post`, `reply`, `repost`, `quote`, `mention`, `longform`,
//!   `favorite`, `follow`, `unfollow`, `block`, `unblock`, `mute`, `unmute`, `dm_sent`,
//!   `dm_received`, `dm_typing`, `dm_read`, `tweet_delete`, `revoke`, `spaces`;
//! * XAA: the XAA event types (`post.create`, `like.create`, `profile.update.bio`, …).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::config::{Cutover, GeneratorConfig, UserConfig};
use crate::events::Format;
use crate::ids::{rounded_json, snowflake_ms, TWEPOCH_MS};
use crate::state::{EmitOptions, Emitted, Shared};

mod aaa;
mod words;
mod xaa;
use words::{FIRST, LAST, PLACES, SOURCE, TAGS, WORDS};

/// AAA / stream kinds.
pub const AAA_KINDS: &[&str] = &[
    "post",
    "reply",
    "repost",
    "quote",
    "mention",
    "longform",
    "favorite",
    "follow",
    "unfollow",
    "block",
    "unblock",
    "mute",
    "unmute",
    "dm_sent",
    "dm_received",
    "dm_typing",
    "dm_read",
    "tweet_delete",
    "revoke",
    "spaces",
];

/// XAA event types.
pub const XAA_KINDS: &[&str] = &[
    "post.create",
    "post.delete",
    "post.mention.create",
    "post.reply.create",
    "post.quote.create",
    "post.repost.create",
    "like.create",
    "follow.follow",
    "follow.unfollow",
    "block.block",
    "block.unblock",
    "mute.mute",
    "mute.unmute",
    "dm.sent",
    "dm.received",
    "dm.indicate_typing",
    "dm.read",
    "oauth.revoke",
    "profile.update.bio",
    "profile.update.profile_picture",
    "profile.update.banner_picture",
    "profile.update.screenname",
    "profile.update.geo",
    "profile.update.url",
    "profile.update.verified_badge",
    "profile.update.affiliate_badge",
    "profile.update.handle",
    "spaces.start",
    "spaces.end",
    "news.new",
    "broadcast.start",
    "broadcast.end",
    "broadcast.chat",
    "chat.received",
    "chat.sent",
];

/// Default weight of a kind: posts and likes dominate, as on X.
fn default_weight(kind: &str) -> f64 {
    match kind {
        "post" | "post.create" => 10.0,
        "favorite" | "like.create" => 10.0,
        "reply" | "mention" | "post.reply.create" | "post.mention.create" => 5.0,
        "repost" | "quote" | "post.repost.create" | "post.quote.create" => 3.0,
        "follow" | "follow.follow" | "dm_sent" | "dm_received" | "dm.sent" | "dm.received" => 3.0,
        "longform" | "dm_typing" | "dm_read" | "dm.indicate_typing" | "dm.read" => 2.0,
        "revoke" | "oauth.revoke" | "spaces" => 0.2,
        _ => 1.0,
    }
}

pub use crate::state::GeneratorRun;

pub(crate) fn start(st: &Arc<Shared>, cfg: GeneratorConfig) {
    stop(st);
    let cancel = st.cancel.child_token();
    let emitted = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    st.replace_generator(Some(GeneratorRun {
        cancel: cancel.clone(),
        cfg: cfg.clone(),
        emitted: Arc::clone(&emitted),
        done: Arc::clone(&done),
    }));
    let st = Arc::clone(st);
    tokio::spawn(async move {
        let rate = if cfg.rate.is_finite() && cfg.rate > 0.0 {
            cfg.rate
        } else {
            1.0
        };
        tracing::info!(rate, count = ?cfg.count, duration = ?cfg.duration_secs, "generator started");
        let mut g = Gen::new(&st, &cfg);
        let period = Duration::from_secs_f64((1.0 / rate).max(0.000_01));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let t0 = tokio::time::Instant::now();
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if cfg.count.is_some_and(|c| n >= c)
                || cfg
                    .duration_secs
                    .is_some_and(|d| t0.elapsed().as_secs_f64() >= d)
            {
                break;
            }
            g.emit_one(&st);
            n += 1;
            emitted.store(n, Ordering::Relaxed);
        }
        done.store(true, Ordering::Relaxed);
        tracing::info!(events = n, "generator finished");
    });
}

pub(crate) fn stop(st: &Shared) {
    if let Some(g) = st.replace_generator(None) {
        g.cancel.cancel();
    }
}

pub(crate) fn status(st: &Shared) -> Value {
    st.with_generator(|g| match g {
        Some(g) => json!({
            "running": !g.cancel.is_cancelled() && !g.done.load(Ordering::Relaxed),
            "emitted": g.emitted.load(Ordering::Relaxed),
            "settings": g.cfg,
        }),
        None => json!({"running": false}),
    })
}

/// Generates `count` logical events now.
pub(crate) fn generate_now(st: &Arc<Shared>, cfg: &GeneratorConfig, count: u64) -> Vec<Emitted> {
    let mut g = Gen::new(st, cfg);
    let mut out = Vec::new();
    for _ in 0..count {
        out.extend(g.emit_one(st));
    }
    out
}

#[derive(Debug, Clone)]
struct Person {
    id: u64,
    screen_name: String,
    name: String,
    location: Option<String>,
    description: String,
    followers: u64,
    friends: u64,
    statuses: u64,
    created_ms: u64,
    verified: bool,
}

impl Person {
    /// A configured user (id 0 when its id is not a number), with counts drawn from `rng`.
    fn configured(u: &UserConfig, rng: &mut StdRng) -> Self {
        let id = u.user_id.parse::<u64>().unwrap_or(0);
        let created_ms = if id > (1u64 << 40) {
            snowflake_ms(id)
        } else {
            1_300_000_000_000 + id % 200_000_000_000
        };
        Person {
            id,
            screen_name: if u.screen_name.is_empty() {
                format!("user{}", u.user_id)
            } else {
                u.screen_name.clone()
            },
            name: if u.name.is_empty() {
                u.user_id.clone()
            } else {
                u.name.clone()
            },
            location: None,
            description: "Building things with the X API".into(),
            followers: rng.gen_range(10..600_000),
            friends: rng.gen_range(10..2_000),
            statuses: rng.gen_range(10..50_000),
            created_ms,
            verified: false,
        }
    }

    /// A made-up person, the `i`th of the population.
    fn random(rng: &mut StdRng, i: usize) -> Self {
        let first = FIRST[rng.gen_range(0..FIRST.len())];
        let last = LAST[rng.gen_range(0..LAST.len())];
        // Old accounts have short ids; accounts since 2016 have Snowflake ids.
        let (id, created_ms) = if rng.gen_bool(0.4) {
            let id = rng.gen_range(10_000_000u64..4_000_000_000);
            (id, 1_200_000_000_000 + id * 50)
        } else {
            let ms =
                rng.gen_range(1_460_000_000_000u64..crate::ids::now_ms().max(1_460_000_000_001));
            (
                ((ms - TWEPOCH_MS) << 22) | rng.gen_range(0..(1u64 << 22)),
                ms,
            )
        };
        Person {
            id,
            screen_name: format!(
                "{}{}_{}",
                first.to_lowercase(),
                last.chars().take(3).collect::<String>().to_lowercase(),
                i
            ),
            name: format!("{first} {last}"),
            location: if rng.gen_bool(0.7) {
                Some(PLACES[rng.gen_range(0..PLACES.len())].to_owned())
            } else {
                None
            },
            description: format!(
                "{} · {} · opinions my own",
                ["engineer", "designer", "founder", "writer", "researcher"][rng.gen_range(0..5)],
                PLACES[rng.gen_range(0..PLACES.len())]
            ),
            followers: rng.gen_range(0..100_000),
            friends: rng.gen_range(0..5_000),
            statuses: rng.gen_range(0..100_000),
            created_ms,
            verified: rng.gen_bool(0.1),
        }
    }
}

/// The indices in `people` of the target users: `cfg.target_users`, else the
/// `configured` users (at least one).
fn target_indices(people: &[Person], configured: usize, cfg: &GeneratorConfig) -> Vec<usize> {
    let targets: Vec<usize> = if cfg.target_users.is_empty() {
        (0..configured.max(1)).collect()
    } else {
        cfg.target_users
            .iter()
            .filter_map(|t| people.iter().position(|p| p.id.to_string() == *t))
            .collect()
    };
    if targets.is_empty() {
        vec![0]
    } else {
        targets
    }
}

/// The (format, kind) pairs with a positive weight, and their weights (`post` alone when
/// none has one).
fn plan(cfg: &GeneratorConfig) -> (Vec<(Format, &'static str)>, Vec<f64>) {
    let fmt_weight = |f: Format| -> f64 {
        if cfg.cutover != Cutover::Mix {
            // The cutover phases derive XAA from AAA events (twins); stream lines are
            // the AAA ones too.
            return if f == Format::Aaa { 1.0 } else { 0.0 };
        }
        if cfg.formats.is_empty() {
            1.0
        } else {
            finite_weight(cfg.formats.get(f.as_str()).copied())
        }
    };
    let kind_weight = |k: &str| -> f64 {
        if cfg.mix.is_empty() {
            default_weight(k)
        } else {
            finite_weight(cfg.mix.get(k).copied())
        }
    };
    let mut plan = Vec::new();
    let mut weights = Vec::new();
    for f in Format::ALL {
        let kinds = if f == Format::Xaa {
            XAA_KINDS
        } else {
            AAA_KINDS
        };
        for k in kinds {
            let w = fmt_weight(f) * kind_weight(k) / kinds.len() as f64;
            if w > 0.0 {
                plan.push((f, *k));
                weights.push(w);
            }
        }
    }
    if plan.is_empty() {
        plan.push((Format::Aaa, "post"));
        weights.push(1.0);
    }
    (plan, weights)
}

fn twitter_date(ms: u64) -> String {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_else(Utc::now)
        .format("%a %b %d %H:%M:%S +0000 %Y")
        .to_string()
}

fn rfc(ms: u64) -> String {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_else(Utc::now)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// After a generated revoke, the user authorizes the app again, so a long run keeps its
/// subscriptions.
fn resubscribe(st: &Shared, e: &Emitted) {
    let Some(user) = e.for_user_id.as_deref() else {
        return;
    };
    for wid in &e.unsubscribed {
        let app = st.with_db(|db| {
            db.webhooks
                .iter()
                .find(|w| &w.id == wid)
                .map(|w| w.app.clone())
        });
        if let Some(app) = app {
            if let Err(err) = st.subscribe(&app, wid, user) {
                tracing::debug!(error = %err, "re-subscription after revoke");
            }
        }
    }
}

fn probability(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn finite_weight(w: Option<f64>) -> f64 {
    match w {
        Some(w) if w.is_finite() && w > 0.0 => w,
        _ => 0.0,
    }
}

/// A Spaces / broadcast id like X's (`1mGPaZaAdNqJN`): `1` and 12 base-62 digits.
fn broadcast_id(id: u64) -> String {
    const C: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = id;
    let mut out = vec![b'A'; 12];
    for slot in out.iter_mut().rev() {
        *slot = C[(n % 62) as usize];
        n /= 62;
    }
    format!("1{}", String::from_utf8_lossy(&out))
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

struct Text {
    text: String,
    hashtags: Vec<Value>,
    mentions: Vec<Value>,
    urls: Vec<Value>,
}

struct Gen {
    rng: StdRng,
    people: Vec<Person>,
    targets: Vec<usize>,
    app_ids: Vec<String>,
    plan: Vec<(Format, &'static str)>,
    weights: Vec<f64>,
    cycle: bool,
    next: usize,
    duplicate_rate: f64,
    batch_rate: f64,
    cutover: Cutover,
    /// Source of the `event_uuid`s of XAA twins.
    uuids: u64,
}

impl Gen {
    /// A generator for `cfg`: the configured users and made-up people up to the
    /// population, the target users and the weighted plan of (format, kind).
    fn new(st: &Shared, cfg: &GeneratorConfig) -> Self {
        let mut rng = match cfg.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        let mut people: Vec<Person> = st
            .cfg
            .users
            .iter()
            .map(|u| Person::configured(u, &mut rng))
            .filter(|p| p.id != 0)
            .collect();
        let configured = people.len();
        while people.len() < cfg.population.max(configured + 2) {
            let i = people.len();
            people.push(Person::random(&mut rng, i));
        }
        let targets = target_indices(&people, configured, cfg);
        let (plan, weights) = plan(cfg);
        Self {
            rng,
            people,
            targets,
            app_ids: st.cfg.apps.iter().map(|a| a.app_id.clone()).collect(),
            plan,
            weights,
            cycle: cfg.cycle,
            next: 0,
            duplicate_rate: probability(cfg.duplicate_rate),
            batch_rate: probability(cfg.batch_rate),
            cutover: cfg.cutover,
            uuids: 0,
        }
    }

    /// The bodies X sends for one AAA body in the current cutover phase.
    fn in_cutover_phase(&mut self, aaa: Value) -> Vec<Value> {
        let twins = |g: &mut Self, b: &Value| {
            let seed: u64 = g.rng.gen();
            crate::twin::xaa_twins(b, &mut || {
                g.uuids += 1;
                // Negative and positive, as X's event_uuids are.
                (seed.wrapping_add(g.uuids.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64) >> 1
            })
        };
        match self.cutover {
            Cutover::Mix | Cutover::Aaa => vec![aaa],
            Cutover::Both => {
                let mut out = twins(self, &aaa);
                out.insert(0, aaa);
                out
            }
            // Without an XAA shape (replay status, spaces) X sends nothing.
            Cutover::Xaa => twins(self, &aaa),
        }
    }

    fn pick(&mut self) -> (Format, &'static str) {
        if self.cycle {
            let p = self.plan[self.next % self.plan.len()];
            self.next += 1;
            return p;
        }
        let total: f64 = self.weights.iter().sum();
        let mut x = self.rng.gen_range(0.0..total.max(f64::MIN_POSITIVE));
        for (i, w) in self.weights.iter().enumerate() {
            if x < *w {
                return self.plan[i];
            }
            x -= w;
        }
        self.plan[self.plan.len() - 1]
    }

    /// Emits one logical event (one or more bodies, plus duplicates).
    fn emit_one(&mut self, st: &Arc<Shared>) -> Vec<Emitted> {
        let (format, kind) = self.pick();
        let mut bodies = self.build(st, format, kind);
        if self.cutover != Cutover::Mix {
            bodies = bodies
                .into_iter()
                .flat_map(|b| self.in_cutover_phase(b))
                .collect();
        }
        let mut out = Vec::new();
        for b in bodies {
            let e = st.emit_value(
                b.clone(),
                EmitOptions {
                    origin: Some("generator".into()),
                    ..EmitOptions::default()
                },
            );
            let seq = e.seq;
            resubscribe(st, &e);
            out.push(e);
            if self.rng.gen_bool(self.duplicate_rate) {
                let d = st.emit_value(
                    b,
                    EmitOptions {
                        origin: Some("generator".into()),
                        duplicate_of: Some(seq),
                        ..EmitOptions::default()
                    },
                );
                resubscribe(st, &d);
                out.push(d);
            }
        }
        out
    }

    fn target(&mut self) -> usize {
        self.targets[self.rng.gen_range(0..self.targets.len())]
    }

    /// Someone other than `not`; sometimes another target user (so DMs between two
    /// subscribed users happen).
    fn other(&mut self, not: usize) -> usize {
        if self.targets.len() > 1 && self.rng.gen_bool(0.3) {
            let cands: Vec<usize> = self.targets.iter().copied().filter(|t| *t != not).collect();
            if !cands.is_empty() {
                return cands[self.rng.gen_range(0..cands.len())];
            }
        }
        loop {
            let i = self.rng.gen_range(0..self.people.len());
            if i != not {
                return i;
            }
        }
    }

    fn user_v11(&self, i: usize) -> Value {
        let p = &self.people[i];
        json!({
            "id": rounded_json(p.id),
            "id_str": p.id.to_string(),
            "name": p.name,
            "screen_name": p.screen_name,
            "location": p.location,
            "url": null,
            "description": p.description,
            "protected": false,
            "verified": p.verified,
            "followers_count": p.followers,
            "friends_count": p.friends,
            "listed_count": p.followers / 200,
            "favourites_count": p.statuses / 3,
            "statuses_count": p.statuses,
            "created_at": twitter_date(p.created_ms),
            "profile_image_url_https": format!("https://pbs.twimg.com/profile_images/{}/avatar_normal.jpg", p.id),
            "default_profile": true,
            "default_profile_image": false,
        })
    }

    fn user_dm(&self, i: usize) -> Value {
        let p = &self.people[i];
        json!({
            "id": p.id.to_string(),
            "created_timestamp": p.created_ms.to_string(),
            "name": p.name,
            "screen_name": p.screen_name,
            "location": p.location,
            "description": p.description,
            "protected": false,
            "verified": p.verified,
            "followers_count": p.followers,
            "friends_count": p.friends,
            "statuses_count": p.statuses,
            "profile_image_url_https": format!("https://pbs.twimg.com/profile_images/{}/avatar_normal.jpg", p.id),
        })
    }

    fn user_v2(&self, i: usize) -> Value {
        let p = &self.people[i];
        let m = |n: u64| json!(n);
        json!({"data": {
            "id": p.id.to_string(),
            "name": p.name,
            "username": p.screen_name,
            "description": p.description,
            "location": p.location,
            "protected": false,
            "verified": p.verified,
            "verified_type": if p.verified { "blue" } else { "none" },
            "is_identity_verified": false,
            "created_at": rfc(p.created_ms),
            "profile_image_url": format!("https://pbs.twimg.com/profile_images/{}/avatar_normal.jpg", p.id),
            "public_metrics": {
                "followers_count": m(p.followers), "followers_count_str": p.followers.to_string(),
                "following_count": m(p.friends), "following_count_str": p.friends.to_string(),
                "tweet_count": m(p.statuses), "tweet_count_str": p.statuses.to_string(),
                "listed_count": m(p.followers / 200), "listed_count_str": (p.followers / 200).to_string(),
                "like_count": m(p.statuses / 3), "like_count_str": (p.statuses / 3).to_string(),
                "media_count": m(p.statuses / 20), "media_count_str": (p.statuses / 20).to_string(),
            },
        }})
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| WORDS[self.rng.gen_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn words_between(&mut self, lo: usize, hi: usize) -> String {
        let n = self.rng.gen_range(lo..hi);
        self.words(n)
    }

    fn tco(&mut self) -> String {
        const C: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let s: String = (0..10)
            .map(|_| C[self.rng.gen_range(0..C.len())] as char)
            .collect();
        format!("https://t.co/{s}")
    }

    /// A post text with entities; `mention` is put first (replies) or inside.
    fn text(&mut self, mention: Option<(usize, bool)>, max_words: usize) -> Text {
        let mut t = Text {
            text: String::new(),
            hashtags: vec![],
            mentions: vec![],
            urls: vec![],
        };
        let push_mention = |t: &mut Text, p: &Person| {
            let start = char_len(&t.text);
            t.text.push('@');
            t.text.push_str(&p.screen_name);
            t.mentions.push(json!({
                "screen_name": p.screen_name, "name": p.name,
                "id": rounded_json(p.id), "id_str": p.id.to_string(),
                "indices": [start, char_len(&t.text)],
            }));
        };
        if let Some((i, true)) = mention {
            let p = self.people[i].clone();
            push_mention(&mut t, &p);
            t.text.push(' ');
        }
        let n = self.rng.gen_range(3..max_words.max(4));
        let w = self.words(n);
        t.text.push_str(&w);
        if let Some((i, false)) = mention {
            let p = self.people[i].clone();
            t.text.push_str(" cc ");
            push_mention(&mut t, &p);
        }
        if self.rng.gen_bool(0.3) {
            let tag = TAGS[self.rng.gen_range(0..TAGS.len())];
            t.text.push(' ');
            let start = char_len(&t.text);
            t.text.push('#');
            t.text.push_str(tag);
            t.hashtags
                .push(json!({"text": tag, "indices": [start, char_len(&t.text)]}));
        }
        if self.rng.gen_bool(0.2) {
            let u = self.tco();
            t.text.push(' ');
            let start = char_len(&t.text);
            t.text.push_str(&u);
            t.urls.push(json!({
                "url": u, "expanded_url": "https://example.com/blog/post",
                "display_url": "example.com/blog/post", "indices": [start, char_len(&t.text)],
            }));
        }
        t
    }

    fn tweet(&mut self, author: usize, text: Text, id: u64) -> Value {
        let ms = snowflake_ms(id);
        json!({
            "created_at": twitter_date(ms),
            "id": rounded_json(id),
            "id_str": id.to_string(),
            "text": text.text,
            "source": SOURCE,
            "truncated": false,
            "in_reply_to_status_id": null,
            "in_reply_to_status_id_str": null,
            "in_reply_to_user_id": null,
            "in_reply_to_user_id_str": null,
            "in_reply_to_screen_name": null,
            "user": self.user_v11(author),
            "geo": null,
            "coordinates": null,
            "place": null,
            "contributors": null,
            "is_quote_status": false,
            "quote_count": 0,
            "reply_count": 0,
            "retweet_count": 0,
            "favorite_count": 0,
            "entities": {"hashtags": text.hashtags, "urls": text.urls, "user_mentions": text.mentions, "symbols": []},
            "favorited": false,
            "retweeted": false,
            "filter_level": "low",
            "lang": "en",
            "timestamp_ms": ms.to_string(),
        })
    }

    /// An older post (already existing on X) by `author`.
    fn old_tweet(&mut self, author: usize) -> (u64, Value) {
        let back = self.rng.gen_range(60_000u64..86_400_000);
        let ms = crate::ids::now_ms()
            .saturating_sub(back)
            .max(TWEPOCH_MS + 1);
        let id = ((ms - TWEPOCH_MS) << 22) | self.rng.gen_range(0..(1u64 << 22));
        let text = self.text(None, 14);
        (id, self.tweet(author, text, id))
    }

    fn set(v: &mut Value, k: &str, x: Value) {
        if let Some(o) = v.as_object_mut() {
            o.insert(k.to_owned(), x);
        }
    }

    fn aaa_body(for_user: Option<u64>, key: &str, items: Value) -> Value {
        let mut m = Map::new();
        if let Some(u) = for_user {
            m.insert("for_user_id".into(), json!(u.to_string()));
        }
        m.insert(key.into(), items);
        Value::Object(m)
    }

    fn build(&mut self, st: &Shared, format: Format, kind: &'static str) -> Vec<Value> {
        if format == Format::Xaa {
            return vec![self.xaa(st, kind)];
        }
        let bodies = self.aaa(st, kind);
        let bodies = self.mirror(bodies);
        if format == Format::Aaa {
            return bodies;
        }
        bodies
            .into_iter()
            .map(|b| crate::events::to_stream(&b, &rfc(crate::ids::now_ms())))
            .collect()
    }

    /// X sends an event to every subscribed user it concerns: adds a copy of the body for
    /// each other target user a post, like or follow concerns (DMs do this themselves).
    fn mirror(&self, bodies: Vec<Value>) -> Vec<Value> {
        let targets: Vec<String> = self
            .targets
            .iter()
            .map(|t| self.people[*t].id.to_string())
            .collect();
        let mut out = Vec::new();
        for b in bodies {
            let for_user = b
                .get("for_user_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let mut concerned: Vec<String> = Vec::new();
            let mut add = |v: Option<&Value>| {
                if let Some(id) = v.and_then(Value::as_str) {
                    if !concerned.iter().any(|c| c == id) {
                        concerned.push(id.to_owned());
                    }
                }
            };
            if let Some(items) = b.get("tweet_create_events").and_then(Value::as_array) {
                for t in items {
                    add(t.pointer("/user/id_str"));
                    add(t.get("in_reply_to_user_id_str"));
                    add(t.pointer("/retweeted_status/user/id_str"));
                    add(t.pointer("/quoted_status/user/id_str"));
                    if let Some(m) = t
                        .pointer("/entities/user_mentions")
                        .and_then(Value::as_array)
                    {
                        m.iter().for_each(|m| add(m.get("id_str")));
                    }
                }
            }
            if let Some(items) = b.get("favorite_events").and_then(Value::as_array) {
                for f in items {
                    add(f.pointer("/user/id_str"));
                    add(f.pointer("/favorited_status/user/id_str"));
                }
            }
            for key in ["follow_events", "unfollow_events"] {
                if let Some(items) = b.get(key).and_then(Value::as_array) {
                    for f in items {
                        add(f.pointer("/source/id_str"));
                        add(f.pointer("/target/id_str"));
                    }
                }
            }
            let copies: Vec<Value> = concerned
                .iter()
                .filter(|c| Some(c.as_str()) != for_user.as_deref() && targets.contains(c))
                .map(|c| {
                    let mut copy = b.clone();
                    Self::set(&mut copy, "for_user_id", json!(c));
                    copy
                })
                .collect();
            out.push(b);
            out.extend(copies);
        }
        out
    }
}

/// Every (format, kind) the generator knows.
pub fn all_kinds() -> Vec<(Format, &'static str)> {
    let mut v = Vec::new();
    for f in Format::ALL {
        let kinds = if f == Format::Xaa {
            XAA_KINDS
        } else {
            AAA_KINDS
        };
        v.extend(kinds.iter().map(|k| (f, *k)));
    }
    v
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Gen>();
    let _: Option<DateTime<Utc>> = None;
}
