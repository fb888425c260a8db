//! The `activity-relay x …` commands: manage X's webhooks, subscriptions and replays with
//! the credentials the relay already has. Tables by default, `--json` for scripts.

use std::io::Write;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use relay_secret::Secret;
use serde_json::{json, Value};

use crate::client::{
    AccessToken, ActivitySubscriptionUpdate, ClientOptions, NewActivitySubscription, XClient,
    DEFAULT_BASE_URL,
};
use crate::error::XapiError;
use crate::replay::{self, ReplayRules};

mod output;
use crate::json_out::write_json;
use output::{activity_table, table, webhook_table};

/// `activity-relay x`: manage X webhooks, subscriptions and replays. `Debug` hides the
/// secrets (they are [`Secret`]s).
#[derive(Args, Clone, Debug)]
pub struct XArgs {
    #[command(subcommand)]
    pub command: XCommand,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    // Read by `activity-relay` before calling `run`, which ignores it.
    /// The relay's configuration file: the base URL and the app's credentials come from its
    /// `[recovery]` section; flags and environment variables override them.
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<std::path::PathBuf>,

    /// X API base URL [default: https://api.x.com].
    #[arg(long, env = "X_API_BASE_URL", global = true)]
    pub base_url: Option<String>,

    /// App-only Bearer token.
    #[arg(long, env = "X_BEARER_TOKEN", hide_env_values = true, global = true)]
    pub bearer_token: Option<Secret>,

    /// App consumer key (API key), for OAuth 1.0a user-context calls.
    #[arg(long, env = "X_CONSUMER_KEY", hide_env_values = true, global = true)]
    pub consumer_key: Option<String>,

    /// App consumer secret (API key secret).
    #[arg(long, env = "X_CONSUMER_SECRET", hide_env_values = true, global = true)]
    pub consumer_secret: Option<Secret>,

    /// The user's access token (`subscriptions add` / `check`).
    #[arg(long, env = "X_ACCESS_TOKEN", hide_env_values = true, global = true)]
    pub access_token: Option<String>,

    /// The user's access token secret.
    #[arg(
        long,
        env = "X_ACCESS_TOKEN_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub access_token_secret: Option<Secret>,

    /// On HTTP 429, wait for `x-rate-limit-reset` and retry (at most --max-rate-limit-wait).
    #[arg(long, global = true)]
    pub retry_rate_limited: bool,

    /// Longest wait for a rate-limit reset, in seconds.
    #[arg(long, default_value_t = 900, global = true)]
    pub max_rate_limit_wait: u64,
}

/// The `x` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum XCommand {
    /// Webhooks of the app (Bearer).
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Account Activity API subscriptions of users to a webhook.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCommand),
    /// Activity stream / X Activity API (XAA) subscriptions (Bearer).
    #[command(subcommand)]
    ActivitySubscriptions(ActivityCommand),
    /// Ask X to re-deliver a past window (every date rule is checked before calling).
    Replay(ReplayArgs),
    /// Move a webhook's AAA users to XAA subscriptions: plan (--dry-run), paced creation,
    /// resume, per-user report, --rollback.
    Migrate(crate::migrate::MigrateArgs),
}

/// `x webhooks …`
#[derive(Subcommand, Debug, Clone)]
pub enum WebhooksCommand {
    /// List the app's webhooks.
    List,
    /// Register a webhook URL (X runs a CRC check at once).
    Create {
        /// The public HTTPS URL X will POST to.
        #[arg(long)]
        url: String,
    },
    /// Re-run the CRC check of a webhook (re-enables an invalid one once it passes).
    Validate {
        /// Webhook id.
        id: String,
    },
    /// Delete a webhook.
    Delete {
        /// Webhook id.
        id: String,
    },
}

/// `x subscriptions …`
#[derive(Subcommand, Debug, Clone)]
pub enum SubscriptionsCommand {
    /// Subscribe the user of X_ACCESS_TOKEN to a webhook (OAuth 1.0a).
    Add {
        /// Webhook id.
        #[arg(long)]
        webhook_id: String,
    },
    /// Is the user of X_ACCESS_TOKEN subscribed? (OAuth 1.0a)
    Check {
        /// Webhook id.
        #[arg(long)]
        webhook_id: String,
    },
    /// List the users subscribed to a webhook.
    List {
        /// Webhook id.
        #[arg(long)]
        webhook_id: String,
    },
    /// Count the app's subscriptions.
    Count,
    /// Unsubscribe a user from a webhook.
    Remove {
        /// Webhook id.
        #[arg(long)]
        webhook_id: String,
        /// The user to unsubscribe.
        #[arg(long)]
        user_id: String,
    },
}

/// `x activity-subscriptions …`
#[derive(Subcommand, Debug, Clone)]
pub enum ActivityCommand {
    /// Create a subscription: `--user-id U --event-types a,b` (activity stream) or
    /// `--event-type T` with `--filter JSON` or `--user-id U` (XAA).
    Create {
        /// The user (stream shape, or XAA filter `{"user_id": …}`).
        #[arg(long)]
        user_id: Option<String>,
        /// Activity-stream event keys, comma-separated (e.g. tweet_create_events,favorite_events).
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["event_type", "filter"])]
        event_types: Vec<String>,
        /// XAA event type (e.g. post.create).
        #[arg(long)]
        event_type: Option<String>,
        /// XAA filter as a JSON object (e.g. '{"keyword":"rust"}').
        #[arg(long, conflicts_with = "user_id")]
        filter: Option<String>,
        /// Tag echoed on every event.
        #[arg(long)]
        tag: Option<String>,
        /// Webhook to deliver to (otherwise: the stream).
        #[arg(long)]
        webhook_id: Option<String>,
        /// OAuth 2.0 access token of the filtered user: private types (mentions, replies,
        /// quotes, reposts, likes, DMs, XChat, mutes, blocks, broadcast chat) need it.
        #[arg(long, env = "X_USER_ACCESS_TOKEN", hide_env_values = true)]
        user_token: Option<Secret>,
        /// The scopes granted to --user-token (comma-separated), checked before calling.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List subscriptions (every page, unless --pagination-token asks for one page).
    List {
        /// Page size.
        #[arg(long)]
        max_results: Option<u32>,
        /// Fetch only the page this token names.
        #[arg(long)]
        pagination_token: Option<String>,
    },
    /// Change the tag and/or delivery webhook of a subscription.
    Update {
        /// Subscription id.
        id: String,
        /// New tag.
        #[arg(long)]
        tag: Option<String>,
        /// New webhook id.
        #[arg(long)]
        webhook_id: Option<String>,
    },
    /// Delete subscriptions (several ids: bulk deletes of at most 100 per call).
    Delete {
        /// Subscription ids (space- or comma-separated).
        #[arg(required = true, num_args = 1.., value_delimiter = ',')]
        ids: Vec<String>,
    },
}

/// Which replay endpoint to call.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayApi {
    /// `POST /2/account_activity/replay/webhooks/:id/subscriptions/all`.
    #[default]
    Aaa,
    /// `POST /2/webhooks/replay` (newer product).
    Webhooks,
}

/// `x replay …`
#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Webhook id.
    #[arg(long)]
    pub webhook_id: String,
    /// Start, inclusive: yyyymmddhhmm (UTC) or RFC 3339.
    #[arg(long)]
    pub from: String,
    /// End, exclusive: yyyymmddhhmm (UTC) or RFC 3339.
    #[arg(long)]
    pub to: String,
    /// Which replay endpoint.
    #[arg(long, value_enum, default_value_t = ReplayApi::Aaa)]
    pub api: ReplayApi,
    /// Longest window allowed, in minutes.
    #[arg(long, default_value_t = 120)]
    pub max_window_minutes: u32,
}

/// Runs one `x` command, writing its result to `out`.
pub async fn run(args: XArgs, out: &mut (dyn Write + Send)) -> Result<(), XapiError> {
    let mut options = ClientOptions {
        // A migration runs for hours at X's rate limit: it waits out a 429.
        retry_rate_limited: args.retry_rate_limited || matches!(args.command, XCommand::Migrate(_)),
        max_rate_limit_wait: Duration::from_secs(args.max_rate_limit_wait),
        ..ClientOptions::default()
    };
    if let XCommand::Replay(r) = &args.command {
        options.replay_rules = ReplayRules {
            max_window: chrono::Duration::minutes(i64::from(r.max_window_minutes)),
            ..ReplayRules::default()
        };
    }
    let base_url = match args.base_url.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_BASE_URL,
        Some(b) => b,
    };
    let mut client = XClient::with_options(base_url, options)?;
    if let Some(t) = args
        .bearer_token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
    {
        client = client.bearer_token(t.clone());
    }
    if let (Some(k), Some(s)) = (&args.consumer_key, &args.consumer_secret) {
        if !k.is_empty() && !s.expose().is_empty() {
            client = client.consumer(k, s.clone());
        }
    }
    let json = args.json;
    let user = || -> Result<AccessToken, XapiError> {
        match (&args.access_token, &args.access_token_secret) {
            (Some(token), Some(secret)) if !token.is_empty() && !secret.expose().is_empty() => {
                Ok(AccessToken {
                    token: token.clone(),
                    secret: secret.clone(),
                })
            }
            _ => Err(XapiError::MissingCredential(
                "user access token and secret (X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET)",
            )),
        }
    };
    let result = match &args.command {
        XCommand::Webhooks(cmd) => webhooks(&client, cmd, json, out).await,
        XCommand::Subscriptions(cmd) => subscriptions(&client, cmd, json, &user, out).await,
        XCommand::ActivitySubscriptions(cmd) => activity(&client, cmd, json, out).await,
        XCommand::Replay(r) => replay_cmd(&client, r, json, out).await,
        XCommand::Migrate(m) => {
            crate::migrate::run(&client, m, json, out, &mut std::io::stderr()).await
        }
    };
    if let Some(rl) = client.rate_limit() {
        tracing::debug!(rate_limit = %rl, "X rate limit after the call");
    }
    result
}

async fn webhooks(
    client: &XClient,
    cmd: &WebhooksCommand,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), XapiError> {
    match cmd {
        WebhooksCommand::List => {
            let list = client.list_webhooks().await?;
            if json {
                return write_json(out, &list);
            }
            webhook_table(out, &list)
        }
        WebhooksCommand::Create { url } => {
            let w = client.create_webhook(url).await?;
            if json {
                return write_json(out, &w);
            }
            webhook_table(out, std::slice::from_ref(&w))
        }
        WebhooksCommand::Validate { id } => {
            let valid = client.validate_webhook(id).await?;
            if json {
                return write_json(out, &json!({"webhook_id": id, "valid": valid}));
            }
            let verdict = if valid {
                "valid (CRC passed)"
            } else {
                "invalid"
            };
            writeln!(out, "webhook {id}: {verdict}")?;
            Ok(())
        }
        WebhooksCommand::Delete { id } => {
            let deleted = client.delete_webhook(id).await?;
            if json {
                return write_json(out, &json!({"webhook_id": id, "deleted": deleted}));
            }
            writeln!(out, "webhook {id} deleted")?;
            Ok(())
        }
    }
}

async fn subscriptions(
    client: &XClient,
    cmd: &SubscriptionsCommand,
    json: bool,
    user: &dyn Fn() -> Result<AccessToken, XapiError>,
    out: &mut (dyn Write + Send),
) -> Result<(), XapiError> {
    match cmd {
        SubscriptionsCommand::Add { webhook_id } => {
            let user = user()?;
            let subscribed = client.subscribe_user(webhook_id, &user).await?;
            if json {
                return write_json(
                    out,
                    &json!({"webhook_id": webhook_id, "subscribed": subscribed}),
                );
            }
            writeln!(out, "user subscribed to webhook {webhook_id}")?;
            Ok(())
        }
        SubscriptionsCommand::Check { webhook_id } => {
            let user = user()?;
            let subscribed = client.check_user(webhook_id, &user).await?;
            if json {
                return write_json(
                    out,
                    &json!({"webhook_id": webhook_id, "subscribed": subscribed}),
                );
            }
            let not = if subscribed { "" } else { "not " };
            writeln!(out, "user is {not}subscribed to webhook {webhook_id}")?;
            Ok(())
        }
        SubscriptionsCommand::List { webhook_id } => {
            let subs = client.list_subscriptions(webhook_id).await?;
            if json {
                return write_json(out, &subs);
            }
            writeln!(
                out,
                "webhook {} ({}): {} subscription(s)",
                subs.webhook_id,
                subs.webhook_url.as_deref().unwrap_or("-"),
                subs.user_ids.len()
            )?;
            let rows = subs.user_ids.iter().map(|u| vec![u.clone()]).collect();
            table(out, &["USER_ID"], rows)
        }
        SubscriptionsCommand::Count => {
            let c = client.subscription_count().await?;
            if json {
                return write_json(out, &c);
            }
            let n = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            table(
                out,
                &["ACCOUNT", "PROVISIONED", "SUBSCRIPTIONS", "WITH_DMS"],
                vec![vec![
                    c.account_name.clone().unwrap_or_else(|| "-".into()),
                    n(c.provisioned_count),
                    c.subscriptions_count_all.to_string(),
                    n(c.subscriptions_count_direct_messages),
                ]],
            )
        }
        SubscriptionsCommand::Remove {
            webhook_id,
            user_id,
        } => {
            let still = client.unsubscribe_user(webhook_id, user_id).await?;
            if json {
                return write_json(
                    out,
                    &json!({"webhook_id": webhook_id, "user_id": user_id, "subscribed": still}),
                );
            }
            writeln!(out, "user {user_id} unsubscribed from webhook {webhook_id}")?;
            Ok(())
        }
    }
}

fn new_subscription(cmd: &ActivityCommand) -> Result<NewActivitySubscription, XapiError> {
    let ActivityCommand::Create {
        user_id,
        event_types,
        event_type,
        filter,
        tag,
        webhook_id,
        ..
    } = cmd
    else {
        return Err(XapiError::InvalidArgument("not a create command".into()));
    };
    let event_types: Vec<String> = event_types
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(event_type) = event_type {
        let filter = match (filter, user_id) {
            (Some(f), _) => {
                let v: Value = serde_json::from_str(f).map_err(|e| {
                    XapiError::InvalidArgument(format!("--filter is not JSON: {e}"))
                })?;
                if v.as_object().is_none_or(|o| o.is_empty()) {
                    return Err(XapiError::InvalidArgument(
                        "--filter must be a non-empty JSON object".into(),
                    ));
                }
                v
            }
            (None, Some(u)) => json!({ "user_id": u }),
            (None, None) => {
                return Err(XapiError::InvalidArgument(
                    "--event-type needs --filter or --user-id".into(),
                ))
            }
        };
        return Ok(NewActivitySubscription::Filtered {
            event_type: event_type.clone(),
            filter,
            tag: tag.clone(),
            webhook_id: webhook_id.clone(),
        });
    }
    match user_id {
        Some(u) if !event_types.is_empty() => {
            if tag.is_some() || webhook_id.is_some() {
                return Err(XapiError::InvalidArgument(
                    "--tag and --webhook-id go with --event-type (XAA), not --event-types".into(),
                ));
            }
            Ok(NewActivitySubscription::UserEvents {
                user_id: u.clone(),
                event_types,
            })
        }
        _ => Err(XapiError::InvalidArgument(
            "give --user-id with --event-types, or --event-type with --filter or --user-id".into(),
        )),
    }
}

async fn activity(
    client: &XClient,
    cmd: &ActivityCommand,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), XapiError> {
    match cmd {
        ActivityCommand::Create {
            user_token, scopes, ..
        } => {
            let new = new_subscription(cmd)?;
            let token = user_token
                .as_ref()
                .filter(|t| !t.expose().trim().is_empty())
                .map(|t| crate::scopes::UserToken {
                    access_token: Secret::new(t.expose().trim()),
                    scopes: (!scopes.is_empty()).then(|| scopes.clone()),
                });
            let sub = client
                .create_activity_subscription_as(&new, token.as_ref())
                .await?;
            if json {
                return write_json(out, &sub);
            }
            activity_table(out, std::slice::from_ref(&sub))
        }
        ActivityCommand::List {
            max_results,
            pagination_token,
        } => list_activity(client, *max_results, pagination_token.as_deref(), json, out).await,
        ActivityCommand::Update {
            id,
            tag,
            webhook_id,
        } => {
            let update = ActivitySubscriptionUpdate {
                tag: tag.clone(),
                webhook_id: webhook_id.clone(),
            };
            let sub = client.update_activity_subscription(id, &update).await?;
            if json {
                return write_json(out, &sub);
            }
            activity_table(out, std::slice::from_ref(&sub))
        }
        ActivityCommand::Delete { ids } => delete_activity(client, ids, json, out).await,
    }
}

/// `activity-subscriptions list`: one page when a pagination token is given, otherwise
/// every page.
async fn list_activity(
    client: &XClient,
    max_results: Option<u32>,
    pagination_token: Option<&str>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), XapiError> {
    if let Some(token) = pagination_token {
        let page = client
            .list_activity_subscriptions(max_results, Some(token))
            .await?;
        if json {
            return write_json(out, &page);
        }
        activity_table(out, &page.subscriptions)?;
        if let Some(next) = &page.next_token {
            writeln!(out, "next page: --pagination-token {next}")?;
        }
        return Ok(());
    }
    let all = client.list_all_activity_subscriptions(max_results).await?;
    if json {
        return write_json(out, &all);
    }
    activity_table(out, &all)
}

/// `activity-subscriptions delete`: one id, or a bulk delete of several with its report.
async fn delete_activity(
    client: &XClient,
    ids: &[String],
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), XapiError> {
    let ids: Vec<String> = ids
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    match ids.as_slice() {
        [] => Err(XapiError::InvalidArgument(
            "no subscription id given".into(),
        )),
        [id] => {
            let deleted = client.delete_activity_subscription(id).await?;
            if json {
                return write_json(out, &json!({"id": id, "deleted": deleted}));
            }
            writeln!(out, "subscription {id} deleted")?;
            Ok(())
        }
        many => {
            let report = client.delete_activity_subscriptions(many).await?;
            if json {
                return write_json(out, &report);
            }
            writeln!(
                out,
                "{} subscription(s) in {} call(s): {} deleted, {} not{}",
                report.requested,
                report.calls,
                report.deleted.len(),
                report.requested.saturating_sub(report.deleted.len()),
                report
                    .total_subscriptions
                    .map(|t| format!(" ({t} left)"))
                    .unwrap_or_default()
            )?;
            for e in &report.errors {
                writeln!(out, "  {e}")?;
            }
            Ok(())
        }
    }
}

async fn replay_cmd(
    client: &XClient,
    r: &ReplayArgs,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), XapiError> {
    let window = replay::parse_window(&r.from, &r.to, Utc::now(), &client.options().replay_rules)?;
    let job = match r.api {
        ReplayApi::Aaa => {
            client
                .replay_account_activity(&r.webhook_id, &window)
                .await?
        }
        ReplayApi::Webhooks => client.replay_webhook(&r.webhook_id, &window).await?,
    };
    if json {
        return write_json(
            out,
            &json!({
                "webhook_id": r.webhook_id,
                "job_id": job.job_id,
                "created_at": job.created_at,
                "from_date": window.from_date(),
                "to_date": window.to_date(),
            }),
        );
    }
    table(
        out,
        &["JOB_ID", "WEBHOOK_ID", "FROM_DATE", "TO_DATE", "CREATED_AT"],
        vec![vec![
            job.job_id.clone(),
            r.webhook_id.clone(),
            window.from_date(),
            window.to_date(),
            job.created_at.clone().unwrap_or_else(|| "-".into()),
        ]],
    )?;
    writeln!(
        out,
        "completion arrives as a replay_job_status event on the webhook"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Top {
        #[command(subcommand)]
        cmd: Top2,
    }
    #[derive(Subcommand, Debug)]
    enum Top2 {
        X(XArgs),
    }

    fn parse(args: &[&str]) -> Result<XArgs, clap::Error> {
        let mut v = vec!["relay", "x"];
        v.extend_from_slice(args);
        Top::try_parse_from(v).map(|t| match t.cmd {
            Top2::X(x) => x,
        })
    }

    #[test]
    fn parses_commands_and_hides_secrets() {
        let a = parse(&[
            "webhooks",
            "list",
            "--json",
            "--bearer-token",
            "SECRET-B",
            "--consumer-secret",
            "SECRET-C",
            "--access-token-secret",
            "SECRET-T",
        ])
        .expect("parses");
        assert!(a.json);
        assert!(matches!(
            a.command,
            XCommand::Webhooks(WebhooksCommand::List)
        ));
        let shown = format!("{a:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let d = parse(&["activity-subscriptions", "delete", "1,2", "3"]).expect("parses");
        match d.command {
            XCommand::ActivitySubscriptions(ActivityCommand::Delete { ids }) => {
                assert_eq!(ids, vec!["1", "2", "3"])
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["replay", "--webhook-id", "1", "--from", "x"]).is_err());
    }

    #[test]
    fn help_names_env_vars_but_not_their_values() {
        use clap::CommandFactory;
        // Only this test reads these two variables' values.
        std::env::set_var("X_CONSUMER_SECRET", "HELP-SECRET-1");
        std::env::set_var("X_ACCESS_TOKEN_SECRET", "HELP-SECRET-2");
        let mut cmd = Top::command();
        let x = cmd.find_subcommand_mut("x").expect("x");
        let help = x.render_long_help().to_string();
        assert!(help.contains("X_CONSUMER_SECRET"), "{help}");
        assert!(help.contains("X_BEARER_TOKEN"), "{help}");
        assert!(help.contains("X_API_BASE_URL"), "{help}");
        assert!(!help.contains("HELP-SECRET"), "{help}");
        let args = parse(&["webhooks", "list"]).expect("parses");
        assert_eq!(
            args.consumer_secret.as_ref().map(Secret::expose),
            Some("HELP-SECRET-1")
        );
        assert!(!format!("{args:?}").contains("HELP-SECRET"));
    }

    #[test]
    fn create_shapes() {
        let cmd = |args: &[&str]| match parse(args).expect("parses").command {
            XCommand::ActivitySubscriptions(c) => c,
            other => panic!("unexpected {other:?}"),
        };
        let c = cmd(&[
            "activity-subscriptions",
            "create",
            "--user-id",
            "42",
            "--event-types",
            "tweet_create_events,favorite_events",
        ]);
        assert_eq!(
            new_subscription(&c).expect("valid"),
            NewActivitySubscription::UserEvents {
                user_id: "42".into(),
                event_types: vec!["tweet_create_events".into(), "favorite_events".into()],
            }
        );
        let c = cmd(&[
            "activity-subscriptions",
            "create",
            "--event-type",
            "post.create",
            "--user-id",
            "42",
            "--tag",
            "t",
        ]);
        assert_eq!(
            new_subscription(&c).expect("valid"),
            NewActivitySubscription::Filtered {
                event_type: "post.create".into(),
                filter: json!({"user_id": "42"}),
                tag: Some("t".into()),
                webhook_id: None,
            }
        );
        let c = cmd(&[
            "activity-subscriptions",
            "create",
            "--event-type",
            "post.create",
            "--filter",
            "[1]",
        ]);
        assert!(matches!(
            new_subscription(&c),
            Err(XapiError::InvalidArgument(_))
        ));
        let c = cmd(&["activity-subscriptions", "create", "--user-id", "42"]);
        assert!(matches!(
            new_subscription(&c),
            Err(XapiError::InvalidArgument(_))
        ));
    }

    #[test]
    fn table_is_aligned() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["ID", "NAME"],
            vec![
                vec!["1".into(), "a".into()],
                vec!["12345".into(), "bé".into()],
            ],
        )
        .expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text, "ID     NAME\n1      a\n12345  bé\n");
    }
}
