//! `activity-relay x migrate`: moves a webhook's Account Activity (AAA) users to X Activity
//! API (XAA) subscriptions delivering to the same webhook.
//!
//! One AAA user needs about 17 user-filtered XAA subscriptions ([`PER_USER_TYPES`]) plus one
//! `oauth.revoke` per app. At X's 500 subscription calls per 15 minutes, 5,000 users take
//! about 42 hours, and the tier caps the total: the command plans (`--dry-run`), paces
//! itself by the rate limit, shows progress and an ETA, survives being killed (a state
//! file, and every subscription it creates is tagged `<prefix>:<user>:<type>`, so the next
//! run finds even those it created but had not recorded), reports per user what it created
//! and what needs a user token it does not have, and `--rollback` deletes what it created.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{NewActivitySubscription, XClient};
use crate::error::XapiError;
use crate::scopes::{required_scope, UserTokens};

/// The subscriptions one AAA user needs in XAA: six post types, like, two follow, two
/// block, two mute, four DM (`docs/spec/x-activity.md` §1c).
pub const PER_USER_TYPES: [&str; 17] = [
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
    "dm.read",
    "dm.indicate_typing",
];

/// X's access tiers and their caps on XAA subscriptions per app.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tier {
    /// 1,500 subscriptions.
    SelfServe,
    /// 75,000 subscriptions.
    #[default]
    Enterprise,
    /// 150,000 subscriptions.
    Partner,
}

impl Tier {
    pub fn cap(self) -> u64 {
        match self {
            Tier::SelfServe => 1_500,
            Tier::Enterprise => 75_000,
            Tier::Partner => 150_000,
        }
    }
}

/// `x migrate …`
#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// The AAA webhook whose users move; the XAA subscriptions deliver to it too.
    #[arg(long)]
    pub webhook_id: String,
    /// Deliver the XAA subscriptions to another webhook.
    #[arg(long)]
    pub target_webhook_id: Option<String>,
    /// Read the user ids from this file (one per line) instead of the AAA webhook's list
    /// (after AAA's end of life).
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// JSON file of user id → OAuth 2.0 access token (`{"id": {"access_token", "scopes"}}`
    /// or `{"id": "token"}`), for the private types.
    #[arg(long, value_name = "FILE")]
    pub user_tokens: Option<PathBuf>,
    /// The state file [default: x-migrate-<webhook id>.json].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Print the plan and create nothing.
    #[arg(long, conflicts_with = "rollback")]
    pub dry_run: bool,
    /// Delete every subscription this migration created (its tag prefix).
    #[arg(long)]
    pub rollback: bool,
    /// The app's access tier (its cap on subscriptions).
    #[arg(long, value_enum, default_value_t = Tier::Enterprise)]
    pub tier: Tier,
    /// Override the tier's cap.
    #[arg(long)]
    pub cap: Option<u64>,
    /// Subscription calls per rate-limit window (X: 500 per 15 minutes).
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// The rate-limit window in seconds.
    #[arg(long, default_value_t = 900)]
    pub rate_window_secs: u64,
    /// The event types per user [default: the 17 of AAA's coverage].
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Do not create the app's `oauth.revoke` subscription.
    #[arg(long)]
    pub no_revoke: bool,
    /// The tag prefix that marks this migration's subscriptions.
    #[arg(long, default_value = "relay-migrate")]
    pub tag_prefix: String,
    /// Write the per-user report (JSON) here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// One subscription of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    user: Option<String>,
    event_type: String,
    tag: String,
}

/// What was done, kept between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    webhook_id: String,
    tag_prefix: String,
    /// tag → subscription id, of the subscriptions this migration created.
    created: BTreeMap<String, String>,
}

impl State {
    fn load(path: &Path) -> Result<Option<State>, XapiError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| file_err("state file", path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(file_err("state file", path, e)),
        }
    }

    /// Temp file, fsync, rename: a kill leaves the old or the new state, never half.
    fn store(&self, path: &Path) -> Result<(), XapiError> {
        let tmp = path.with_extension("json.tmp");
        let io = |e: std::io::Error| file_err("state file", path, e);
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Per user: what the run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UserReport {
    pub user_id: String,
    pub created: usize,
    pub existing: usize,
    /// Private types not created: no token of the user, or a scope missing.
    pub needs_token: Vec<NeedsToken>,
    pub failed: Vec<Failed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NeedsToken {
    pub event_type: String,
    pub scope: &'static str,
    /// `no_token` or `missing_scope`.
    pub why: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub event_type: String,
    pub error: String,
}

/// The plan, as `--dry-run` prints it.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub webhook_id: String,
    pub target_webhook_id: String,
    pub users: usize,
    pub per_user: usize,
    pub revoke: bool,
    pub planned: usize,
    pub existing: usize,
    pub to_create: usize,
    pub needs_token: usize,
    pub users_needing_tokens: usize,
    pub app_total_now: usize,
    pub app_total_after: usize,
    pub cap: u64,
    pub over_cap_by: u64,
    pub rate: u32,
    pub rate_window_secs: u64,
    pub windows: u64,
    pub estimated_secs: u64,
}

/// The outcome of a run.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub plan: Plan,
    pub created: usize,
    pub failed: usize,
    pub deleted: usize,
    pub elapsed_secs: f64,
    pub users: Vec<UserReport>,
}

fn tag_of(prefix: &str, user: Option<&str>, event_type: &str) -> String {
    format!("{prefix}:{}:{event_type}", user.unwrap_or("app"))
}

fn read_users(path: &Path) -> Result<Vec<String>, XapiError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err("users file", path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() || id.starts_with('#') {
            continue;
        }
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(XapiError::InvalidArgument(format!(
                "users file {} line {}: {id:?} is not an X user id",
                path.display(),
                n + 1
            )));
        }
        out.push(id.to_string());
    }
    Ok(out)
}

fn fmt_secs(s: u64) -> String {
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// Paces calls: at most `rate` per `window`, and X's own `x-rate-limit-remaining` = 0 waits
/// for its reset.
struct Pacer {
    rate: u32,
    window: Duration,
    started: Instant,
    used: u32,
}

impl Pacer {
    fn new(rate: u32, window: Duration) -> Self {
        Pacer {
            rate: rate.max(1),
            window,
            started: Instant::now(),
            used: 0,
        }
    }

    async fn before_call(&mut self, client: &XClient) {
        if self.started.elapsed() >= self.window {
            self.started = Instant::now();
            self.used = 0;
        }
        if self.used >= self.rate {
            let wait = self.window.saturating_sub(self.started.elapsed());
            tracing::info!(
                wait_secs = wait.as_secs_f64(),
                "rate limit window used up; waiting"
            );
            tokio::time::sleep(wait).await;
            self.started = Instant::now();
            self.used = 0;
        }
        if let Some(rl) = client.rate_limit() {
            if rl.remaining == Some(0) {
                if let Some(reset) = rl.reset {
                    let now = chrono::Utc::now().timestamp();
                    let wait =
                        (reset.timestamp() - now).clamp(0, self.window.as_secs() as i64 + 1) as u64;
                    if wait > 0 {
                        tracing::info!(
                            wait_secs = wait,
                            "X's rate limit used up; waiting for its reset"
                        );
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                }
            }
        }
        self.used += 1;
    }
}

/// Runs `x migrate`.
pub async fn run(
    client: &XClient,
    args: &MigrateArgs,
    json_out: bool,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn Write + Send),
) -> Result<(), XapiError> {
    let mut m = Migration::open(client, args)?;
    let prefix = format!("{}:", args.tag_prefix);
    let existing_all = client.list_all_activity_subscriptions(Some(1000)).await?;
    let ours: HashMap<String, String> = existing_all
        .iter()
        .filter_map(|s| {
            let tag = s.tag.as_ref()?;
            tag.starts_with(&prefix)
                .then(|| (tag.clone(), s.id.clone()))
        })
        .collect();

    if args.rollback {
        return m.rollback(&ours, &prefix, json_out, out, progress).await;
    }

    let inputs = m.inputs().await?;
    let items = m.items(&inputs);
    let sorted = m.sort(items, &ours, &inputs);
    let plan = m.plan(&inputs, &sorted, existing_all.len());
    let Sorted {
        todo, mut reports, ..
    } = sorted;
    if args.dry_run {
        if json_out {
            return crate::json_out::write_json(
                out,
                &json!({"plan": plan, "users": reports.values().collect::<Vec<_>>()}),
            );
        }
        return print_plan(out, &plan);
    }
    if plan.over_cap_by > 0 {
        return Err(XapiError::InvalidArgument(format!(
            "the plan needs {} subscriptions for the app, {} over the cap of {} ({:?} tier, or --cap): migrate fewer users (--users) or types (--types)",
            plan.app_total_after, plan.over_cap_by, plan.cap, args.tier
        )));
    }
    m.store()?;

    let tally = m
        .create_all(&todo, &inputs, &mut reports, plan.rate, progress)
        .await?;
    m.store()?;
    m.finish(plan, tally, reports, json_out, out)
}

/// One run of the migration: the client, the arguments, when it started, and the state
/// file it keeps up to date.
struct Migration<'a> {
    client: &'a XClient,
    args: &'a MigrateArgs,
    started: Instant,
    state_path: PathBuf,
    state: State,
}

/// What the migration works on, read once: its users (each once), their tokens, the
/// types per user and the webhook the subscriptions deliver to.
struct Inputs {
    users: Vec<String>,
    tokens: UserTokens,
    types: Vec<String>,
    target: String,
}

/// The plan's subscriptions sorted: those to create, how many exist (by tag) and how many
/// need a user token; and the per-user reports so far.
struct Sorted {
    todo: Vec<Item>,
    existing: usize,
    needs_token: usize,
    reports: BTreeMap<String, UserReport>,
}

/// Counts of the create loop, and when progress was last shown.
struct Tally {
    created: usize,
    failed: usize,
    last_progress: Instant,
}

impl<'a> Migration<'a> {
    /// Loads the state file (or starts a new state), refusing one of another webhook or
    /// tag prefix, and checks the tag prefix.
    fn open(client: &'a XClient, args: &'a MigrateArgs) -> Result<Self, XapiError> {
        let started = Instant::now();
        let state_path = args
            .state
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("x-migrate-{}.json", args.webhook_id)));
        let state = match State::load(&state_path)? {
            Some(s) => {
                if s.webhook_id != args.webhook_id || s.tag_prefix != args.tag_prefix {
                    return Err(XapiError::InvalidArgument(format!(
                        "state file {} belongs to webhook {} (prefix {}); use another --state",
                        state_path.display(),
                        s.webhook_id,
                        s.tag_prefix
                    )));
                }
                s
            }
            None => State {
                version: 1,
                webhook_id: args.webhook_id.clone(),
                tag_prefix: args.tag_prefix.clone(),
                created: BTreeMap::new(),
            },
        };
        if args.tag_prefix.is_empty() || args.tag_prefix.contains(':') {
            return Err(XapiError::InvalidArgument(
                "--tag-prefix must be non-empty and without ':'".into(),
            ));
        }
        Ok(Migration {
            client,
            args,
            started,
            state_path,
            state,
        })
    }

    /// Writes the state file.
    fn store(&self) -> Result<(), XapiError> {
        self.state.store(&self.state_path)
    }

    /// `--rollback`: deletes the subscriptions tagged with the prefix, in bulk and paced,
    /// dropping them from the state, and reports how many went.
    async fn rollback(
        &mut self,
        ours: &HashMap<String, String>,
        prefix: &str,
        json_out: bool,
        out: &mut (dyn Write + Send),
        progress: &mut (dyn Write + Send),
    ) -> Result<(), XapiError> {
        let (client, args) = (self.client, self.args);
        let mut ids: BTreeSet<String> = ours.values().cloned().collect();
        // Recorded but not listed: already gone, nothing to do; listed: delete.
        ids.retain(|id| !id.is_empty());
        let ids: Vec<String> = ids.into_iter().collect();
        let mut deleted = 0usize;
        let mut pacer = Pacer::new(args.rate, Duration::from_secs(args.rate_window_secs));
        for chunk in ids.chunks(crate::client::BULK_DELETE_MAX) {
            pacer.before_call(client).await;
            let r = client.delete_activity_subscriptions(chunk).await?;
            deleted += r.deleted.len();
            for f in &r.failed {
                tracing::warn!(id = ?f.subscription_id, reason = ?f.reason, "not deleted");
            }
            let gone: BTreeSet<&String> = r.deleted.iter().collect();
            self.state.created.retain(|_, id| !gone.contains(id));
            self.store()?;
            writeln!(progress, "rollback: {deleted}/{} deleted", ids.len())?;
        }
        let outcome = Outcome {
            deleted,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            ..Outcome::default()
        };
        if json_out {
            return crate::json_out::write_json(out, &outcome);
        }
        writeln!(
            out,
            "rollback: {deleted} of {} subscription(s) tagged {}* deleted",
            ids.len(),
            prefix
        )?;
        Ok(())
    }

    /// Reads the users (`--users` or the AAA webhook's list, each once), the user tokens,
    /// the types and the target webhook.
    async fn inputs(&self) -> Result<Inputs, XapiError> {
        let args = self.args;
        let users = match &args.users {
            Some(p) => read_users(p)?,
            None => {
                self.client
                    .list_subscriptions(&args.webhook_id)
                    .await?
                    .user_ids
            }
        };
        let users: Vec<String> = {
            let mut seen = BTreeSet::new();
            users
                .into_iter()
                .filter(|u| seen.insert(u.clone()))
                .collect()
        };
        let tokens = match &args.user_tokens {
            Some(p) => UserTokens::load(p)?,
            None => UserTokens::default(),
        };
        let types: Vec<String> = if args.types.is_empty() {
            PER_USER_TYPES.iter().map(|s| s.to_string()).collect()
        } else {
            args.types.clone()
        };
        let target = args
            .target_webhook_id
            .clone()
            .unwrap_or_else(|| args.webhook_id.clone());
        Ok(Inputs {
            users,
            tokens,
            types,
            target,
        })
    }

    /// Every subscription of the plan: the app's `oauth.revoke` (unless `--no-revoke`),
    /// then each user's types.
    fn items(&self, inputs: &Inputs) -> Vec<Item> {
        let prefix = &self.args.tag_prefix;
        let mut items = Vec::new();
        if !self.args.no_revoke {
            items.push(Item {
                user: None,
                event_type: "oauth.revoke".into(),
                tag: tag_of(prefix, None, "oauth.revoke"),
            });
        }
        for u in &inputs.users {
            for t in &inputs.types {
                items.push(Item {
                    user: Some(u.clone()),
                    event_type: t.clone(),
                    tag: tag_of(prefix, Some(u), t),
                });
            }
        }
        items
    }

    /// Sorts the items into those that exist (recorded in the state), those that need a
    /// user token it lacks (reported per user) and those to create.
    fn sort(
        &mut self,
        items: Vec<Item>,
        ours: &HashMap<String, String>,
        inputs: &Inputs,
    ) -> Sorted {
        let mut reports: BTreeMap<String, UserReport> = inputs
            .users
            .iter()
            .map(|u| {
                (
                    u.clone(),
                    UserReport {
                        user_id: u.clone(),
                        ..UserReport::default()
                    },
                )
            })
            .collect();
        let mut todo = Vec::new();
        let mut existing = 0usize;
        let mut needs_token = 0usize;
        for it in items {
            if let Some(id) = ours.get(&it.tag) {
                existing += 1;
                self.state
                    .created
                    .entry(it.tag.clone())
                    .or_insert(id.clone());
                if let Some(r) = it.user.as_ref().and_then(|u| reports.get_mut(u)) {
                    r.existing += 1;
                }
                continue;
            }
            if let (Some(scope), Some(u)) = (required_scope(&it.event_type), &it.user) {
                let why = match inputs.tokens.get(u) {
                    None => Some("no_token"),
                    Some(t) if t.allows(&it.event_type).is_err() => Some("missing_scope"),
                    Some(_) => None,
                };
                if let Some(why) = why {
                    needs_token += 1;
                    if let Some(r) = reports.get_mut(u) {
                        r.needs_token.push(NeedsToken {
                            event_type: it.event_type.clone(),
                            scope,
                            why,
                        });
                    }
                    continue;
                }
            }
            todo.push(it);
        }
        Sorted {
            todo,
            existing,
            needs_token,
            reports,
        }
    }

    /// The plan: counts, the app's total against the cap, and the time the rate limit
    /// makes it take.
    fn plan(&self, inputs: &Inputs, sorted: &Sorted, app_total_now: usize) -> Plan {
        let args = self.args;
        let Sorted {
            todo,
            existing,
            needs_token,
            reports,
        } = sorted;
        let (existing, needs_token) = (*existing, *needs_token);
        let cap = args.cap.unwrap_or_else(|| args.tier.cap());
        let after = app_total_now + todo.len();
        let rate = args.rate.max(1);
        let windows = (todo.len() as u64).div_ceil(u64::from(rate));
        Plan {
            webhook_id: args.webhook_id.clone(),
            target_webhook_id: inputs.target.clone(),
            users: inputs.users.len(),
            per_user: inputs.types.len(),
            revoke: !args.no_revoke,
            planned: existing + todo.len() + needs_token,
            existing,
            to_create: todo.len(),
            needs_token,
            users_needing_tokens: reports
                .values()
                .filter(|r| !r.needs_token.is_empty())
                .count(),
            app_total_now,
            app_total_after: after,
            cap,
            over_cap_by: (after as u64).saturating_sub(cap),
            rate,
            rate_window_secs: args.rate_window_secs,
            windows,
            // The last window need not be waited out.
            estimated_secs: windows.saturating_sub(1) * args.rate_window_secs,
        }
    }

    /// Creates the subscriptions of `todo` at `rate` per window, storing the state every 20
    /// and showing progress every 2 seconds and at the end.
    async fn create_all(
        &mut self,
        todo: &[Item],
        inputs: &Inputs,
        reports: &mut BTreeMap<String, UserReport>,
        rate: u32,
        progress: &mut (dyn Write + Send),
    ) -> Result<Tally, XapiError> {
        let mut pacer = Pacer::new(rate, Duration::from_secs(self.args.rate_window_secs));
        let mut tally = Tally {
            created: 0,
            failed: 0,
            last_progress: Instant::now(),
        };
        let total = todo.len();
        for (i, it) in todo.iter().enumerate() {
            self.create_one(it, inputs, reports, &mut pacer, &mut tally)
                .await?;
            if (i + 1) % 20 == 0 {
                self.store()?;
            }
            if tally.last_progress.elapsed() >= Duration::from_secs(2) || i + 1 == total {
                tally.last_progress = Instant::now();
                self.show_progress(progress, i + 1, total, rate, &tally)?;
            }
        }
        Ok(tally)
    }

    /// Creates one subscription (as its user when there is a token) and records what
    /// happened; an error that must stop the run is returned after storing the state.
    async fn create_one(
        &mut self,
        it: &Item,
        inputs: &Inputs,
        reports: &mut BTreeMap<String, UserReport>,
        pacer: &mut Pacer,
        tally: &mut Tally,
    ) -> Result<(), XapiError> {
        let filter = match &it.user {
            Some(u) => json!({"user_id": u}),
            None => json!({}),
        };
        let new = NewActivitySubscription::Filtered {
            event_type: it.event_type.clone(),
            filter,
            tag: Some(it.tag.clone()),
            webhook_id: Some(inputs.target.clone()),
        };
        let token = it.user.as_ref().and_then(|u| inputs.tokens.get(u));
        pacer.before_call(self.client).await;
        match self
            .client
            .create_activity_subscription_as(&new, token)
            .await
        {
            Ok(sub) => {
                tally.created += 1;
                self.state.created.insert(it.tag.clone(), sub.id);
                if let Some(r) = it.user.as_ref().and_then(|u| reports.get_mut(u)) {
                    r.created += 1;
                }
            }
            Err(e) if e.reason() == Some("DuplicateSubscriptionFailed") => {
                // An identical subscription exists without this migration's tag: the user
                // is covered; nothing of it is ours to roll back.
                if let Some(r) = it.user.as_ref().and_then(|u| reports.get_mut(u)) {
                    r.existing += 1;
                }
            }
            Err(e) if e.reason() == Some("SubscriptionLimitExceeded") => {
                self.store()?;
                return Err(e);
            }
            Err(
                e @ (XapiError::Refused { .. }
                | XapiError::UserTokenRequired { .. }
                | XapiError::MissingScope { .. }),
            ) => {
                tally.failed += 1;
                if let Some(r) = it.user.as_ref().and_then(|u| reports.get_mut(u)) {
                    r.failed.push(Failed {
                        event_type: it.event_type.clone(),
                        error: e.to_string(),
                    });
                }
            }
            Err(e) => {
                // Network, rate limit beyond the wait, a bad answer: stop; the next run
                // resumes from the state file and the tags.
                self.store()?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes one progress line: done of total, the counts, the pace and the ETA.
    fn show_progress(
        &self,
        progress: &mut (dyn Write + Send),
        done: usize,
        total: usize,
        rate: u32,
        tally: &Tally,
    ) -> Result<(), XapiError> {
        let Tally {
            created, failed, ..
        } = tally;
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let per_sec = done as f64 / elapsed;
        let left = (total - done) as u64;
        // The slower of the pace so far and what the rate limit allows.
        let paced = left.div_ceil(u64::from(rate)).saturating_sub(1) * self.args.rate_window_secs;
        let observed = (left as f64 / per_sec) as u64;
        writeln!(
            progress,
            "migrate: {done}/{total} ({:.0}%), {created} created, {failed} failed, {per_sec:.1}/s, ETA {}",
            done as f64 * 100.0 / total.max(1) as f64,
            fmt_secs(observed.max(paced))
        )?;
        Ok(())
    }

    /// Writes the `--report` file and the outcome: as JSON, or the plan, the totals and
    /// the users that need a token or had failures.
    fn finish(
        &self,
        plan: Plan,
        tally: Tally,
        reports: BTreeMap<String, UserReport>,
        json_out: bool,
        out: &mut (dyn Write + Send),
    ) -> Result<(), XapiError> {
        let outcome = Outcome {
            plan,
            created: tally.created,
            failed: tally.failed,
            deleted: 0,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            users: reports.into_values().collect(),
        };
        if let Some(p) = &self.args.report {
            let text = serde_json::to_vec_pretty(&outcome.users).unwrap_or_default();
            std::fs::write(p, text).map_err(|e| file_err("report file", p, e))?;
        }
        if json_out {
            return crate::json_out::write_json(out, &outcome);
        }
        print_outcome(out, &outcome)
    }
}

/// Prints the outcome: the plan, the totals, and up to 20 users that need a token or had
/// failures.
fn print_outcome(out: &mut (dyn Write + Send), outcome: &Outcome) -> Result<(), XapiError> {
    print_plan(out, &outcome.plan)?;
    writeln!(
        out,
        "done in {}: {} created, {} existing, {} failed, {} need a user token",
        fmt_secs(outcome.elapsed_secs as u64),
        outcome.created,
        outcome.plan.existing,
        outcome.failed,
        outcome.plan.needs_token
    )?;
    let needing: Vec<&UserReport> = outcome
        .users
        .iter()
        .filter(|r| !r.needs_token.is_empty() || !r.failed.is_empty())
        .collect();
    for r in needing.iter().take(20) {
        let types: Vec<String> = r
            .needs_token
            .iter()
            .map(|n| format!("{} ({}: {})", n.event_type, n.why, n.scope))
            .collect();
        writeln!(
            out,
            "  user {}: {} created; needs a token for: {}{}",
            r.user_id,
            r.created,
            if types.is_empty() {
                "-".to_string()
            } else {
                types.join(", ")
            },
            if r.failed.is_empty() {
                String::new()
            } else {
                format!("; {} failed", r.failed.len())
            }
        )?;
    }
    if needing.len() > 20 {
        writeln!(
            out,
            "  … {} more users (see --report or --json)",
            needing.len() - 20
        )?;
    }
    Ok(())
}

fn print_plan(out: &mut (dyn Write + Send), p: &Plan) -> Result<(), XapiError> {
    writeln!(
        out,
        "users: {} of AAA webhook {} -> XAA subscriptions delivering to webhook {}",
        p.users, p.webhook_id, p.target_webhook_id
    )?;
    writeln!(
        out,
        "subscriptions: {} per user{} = {} planned; {} exist (by tag), {} to create, {} need a user token ({} users)",
        p.per_user,
        if p.revoke { " + 1 oauth.revoke for the app" } else { "" },
        p.planned,
        p.existing,
        p.to_create,
        p.needs_token,
        p.users_needing_tokens
    )?;
    writeln!(
        out,
        "cap: the app has {} subscriptions, {} after; cap {}{}",
        p.app_total_now,
        p.app_total_after,
        p.cap,
        if p.over_cap_by > 0 {
            format!(": OVER by {}", p.over_cap_by)
        } else {
            ": fits".to_string()
        }
    )?;
    writeln!(
        out,
        "time: {} calls at {} per {}s = {} window(s), about {}",
        p.to_create,
        p.rate,
        p.rate_window_secs,
        p.windows,
        fmt_secs(p.estimated_secs)
    )?;
    Ok(())
}

/// A file of the command that cannot be read, parsed or written.
pub(crate) fn file_err(
    what: &'static str,
    path: &std::path::Path,
    e: impl std::error::Error + Send + Sync + 'static,
) -> XapiError {
    XapiError::File {
        what,
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seventeen_per_user_and_tier_caps() {
        assert_eq!(PER_USER_TYPES.len(), 17);
        let private = PER_USER_TYPES
            .iter()
            .filter(|t| required_scope(t).is_some())
            .count();
        assert_eq!(
            private, 13,
            "six post minus two public, like, block, mute, DM"
        );
        assert_eq!(Tier::SelfServe.cap(), 1_500);
        assert_eq!(Tier::Enterprise.cap(), 75_000);
        // X's own figure: 5,000 users at 500 per 15 minutes is about 42 hours.
        let calls = 5_000u64 * 17 + 1;
        let hours = calls.div_ceil(500) * 15 / 60;
        assert!((42..=43).contains(&hours), "{hours}");
        assert!(calls > Tier::Enterprise.cap());
    }

    #[test]
    fn users_file_and_tags() {
        let dir = std::env::temp_dir().join(format!("xmig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("users.txt");
        std::fs::write(&p, "# users\n1\n\n22\n").unwrap();
        assert_eq!(read_users(&p).unwrap(), vec!["1", "22"]);
        std::fs::write(&p, "1\nabc\n").unwrap();
        let e = read_users(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert_eq!(tag_of("m", Some("1"), "post.create"), "m:1:post.create");
        assert_eq!(tag_of("m", None, "oauth.revoke"), "m:app:oauth.revoke");
        assert_eq!(fmt_secs(3 * 3600 + 120), "3h02m");
        assert_eq!(fmt_secs(61), "1m01s");
        std::fs::remove_dir_all(&dir).ok();
    }
}
