//! `relay_xapi::cli::run` against x-emulator: tables, `--json`, and error messages.

mod common;

use clap::Parser;
use common::{setup, Setup, USER};
use relay_xapi::cli::{run, XArgs};
use relay_xapi::XapiError;
use serde_json::Value;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    x: XArgs,
}

/// Runs `x <args>` with the emulator's credentials as flags, returns the output.
async fn x(s: &Setup, args: &[&str]) -> Result<String, XapiError> {
    let app = &s.cfg.apps[0];
    let user = s.user(USER);
    let base = s.emu.base_url();
    let mut argv = vec![
        "x",
        "--base-url",
        base.as_str(),
        "--bearer-token",
        app.bearer_token.as_str(),
        "--consumer-key",
        app.consumer_key.as_str(),
        "--consumer-secret",
        app.consumer_secret.as_str(),
        "--access-token",
        user.token.as_str(),
        "--access-token-secret",
        user.secret.expose(),
    ];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out: Vec<u8> = Vec::new();
    run(cli.x, &mut out).await?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

#[tokio::test]
async fn webhooks_table_and_json() {
    let s = setup().await;
    let url = s.receiver.url("cli");
    let created = x(&s, &["webhooks", "create", "--url", &url])
        .await
        .expect("create");
    let lines: Vec<&str> = created.lines().collect();
    assert_eq!(lines.len(), 2, "{created}");
    assert!(lines[0].starts_with("ID"));
    // Columns are aligned: every column starts at the same offset on every line.
    let url_col = lines[0].find("URL").expect("URL header");
    assert_eq!(lines[1].find(&url), Some(url_col), "{created}");
    let valid_col = lines[0].find("VALID").expect("VALID header");
    assert_eq!(&lines[1][valid_col..valid_col + 3], "yes");
    let id = lines[1].split_whitespace().next().expect("id").to_string();

    let json = x(&s, &["webhooks", "list", "--json"]).await.expect("list");
    let v: Value = serde_json::from_str(&json).expect("json output");
    assert_eq!(v[0]["id"], Value::String(id.clone()));
    assert_eq!(v[0]["url"], Value::String(url.clone()));
    assert_eq!(v[0]["valid"], Value::Bool(true));

    let validated = x(&s, &["webhooks", "validate", &id])
        .await
        .expect("validate");
    assert_eq!(
        validated.trim(),
        format!("webhook {id}: valid (CRC passed)")
    );

    let deleted = x(&s, &["--json", "webhooks", "delete", &id])
        .await
        .expect("delete");
    let v: Value = serde_json::from_str(&deleted).expect("json");
    assert_eq!(v["deleted"], Value::Bool(true));

    let empty = x(&s, &["webhooks", "list"]).await.expect("list");
    assert_eq!(empty.lines().count(), 1, "only the header: {empty}");
    s.emu.shutdown().await;
}

#[tokio::test]
async fn subscriptions_and_clear_refusals() {
    let s = setup().await;
    let w = s
        .client
        .create_webhook(&s.receiver.url("subs"))
        .await
        .expect("webhook");
    let added = x(&s, &["subscriptions", "add", "--webhook-id", &w.id])
        .await
        .expect("add");
    assert_eq!(added.trim(), format!("user subscribed to webhook {}", w.id));

    let e = x(&s, &["subscriptions", "add", "--webhook-id", &w.id])
        .await
        .expect_err("duplicate");
    assert!(
        e.to_string()
            .starts_with("X refused: DuplicateSubscriptionFailed: "),
        "{e}"
    );

    let checked = x(
        &s,
        &["subscriptions", "check", "--webhook-id", &w.id, "--json"],
    )
    .await
    .expect("check");
    let v: Value = serde_json::from_str(&checked).expect("json");
    assert_eq!(v["subscribed"], Value::Bool(true));

    let listed = x(&s, &["subscriptions", "list", "--webhook-id", &w.id])
        .await
        .expect("list");
    assert!(listed.contains("1 subscription(s)"), "{listed}");
    assert!(listed.lines().any(|l| l.trim() == USER), "{listed}");

    let count = x(&s, &["subscriptions", "count", "--json"])
        .await
        .expect("count");
    let v: Value = serde_json::from_str(&count).expect("json");
    // Numbers, although X sends strings.
    assert_eq!(v["subscriptions_count_all"], serde_json::json!(1));
    assert_eq!(v["provisioned_count"], serde_json::json!(5000));

    let table = x(&s, &["subscriptions", "count"]).await.expect("count");
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    let row = lines.next().expect("row");
    let col = header.find("SUBSCRIPTIONS").expect("column");
    assert!(row[col..].starts_with('1'), "{table}");

    x(
        &s,
        &[
            "subscriptions",
            "remove",
            "--webhook-id",
            &w.id,
            "--user-id",
            USER,
        ],
    )
    .await
    .expect("remove");
    let e = x(
        &s,
        &[
            "subscriptions",
            "remove",
            "--webhook-id",
            &w.id,
            "--user-id",
            USER,
        ],
    )
    .await
    .expect_err("gone");
    assert_eq!(e.reason(), Some("SubscriptionNotFound"));
    s.emu.shutdown().await;
}

#[tokio::test]
async fn activity_subscriptions_commands() {
    let s = setup().await;
    let created = x(
        &s,
        &[
            "activity-subscriptions",
            "create",
            "--event-type",
            "post.create",
            "--user-id",
            USER,
            "--tag",
            "cli",
            "--json",
        ],
    )
    .await
    .expect("create");
    let v: Value = serde_json::from_str(&created).expect("json");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["filter"]["user_id"], Value::String(USER.into()));

    x(
        &s,
        &[
            "activity-subscriptions",
            "create",
            "--user-id",
            USER,
            "--event-types",
            "tweet_create_events,follow_events",
        ],
    )
    .await
    .expect("create stream shape");

    let updated = x(
        &s,
        &["activity-subscriptions", "update", &id, "--tag", "renamed"],
    )
    .await
    .expect("update");
    assert!(
        updated
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("renamed")),
        "{updated}"
    );

    let listed = x(
        &s,
        &["activity-subscriptions", "list", "--max-results", "1"],
    )
    .await
    .expect("list all pages");
    assert_eq!(listed.lines().count(), 3, "header + 2 rows: {listed}");
    assert!(listed.contains("tweet_create_events,follow_events"));

    let page = x(
        &s,
        &[
            "activity-subscriptions",
            "list",
            "--max-results",
            "1",
            "--pagination-token",
            &id,
            "--json",
        ],
    )
    .await
    .expect("one page");
    let v: Value = serde_json::from_str(&page).expect("json");
    assert_eq!(v["subscriptions"].as_array().map(Vec::len), Some(1));
    assert!(v["next_token"].is_string());

    let all: Value = serde_json::from_str(
        &x(&s, &["activity-subscriptions", "list", "--json"])
            .await
            .expect("list"),
    )
    .expect("json");
    let ids: Vec<String> = all
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2);
    let deleted = x(&s, &["activity-subscriptions", "delete", &ids.join(",")])
        .await
        .expect("bulk delete");
    assert_eq!(
        deleted.trim(),
        "2 subscription(s) in 1 call(s): 2 deleted, 0 not (0 left)"
    );
    s.emu.shutdown().await;
}

#[tokio::test]
async fn replay_command_checks_dates_first() {
    let s = setup().await;
    let w = s
        .client
        .create_webhook(&s.receiver.url("replay"))
        .await
        .expect("webhook");
    let e = x(
        &s,
        &[
            "replay",
            "--webhook-id",
            &w.id,
            "--from",
            "2020-01-01T00:00:00Z",
            "--to",
            "202001010100",
        ],
    )
    .await
    .expect_err("too old");
    assert!(
        e.to_string().contains("from_date within the last 24 h"),
        "{e}"
    );
    assert!(s.emu.jobs().is_empty());

    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::minutes(80))
        .format("%Y%m%d%H%M")
        .to_string();
    let to = (now - chrono::Duration::minutes(40))
        .format("%Y-%m-%dT%H:%M:00Z")
        .to_string();
    let out = x(
        &s,
        &[
            "replay",
            "--webhook-id",
            &w.id,
            "--from",
            &from,
            "--to",
            &to,
            "--json",
        ],
    )
    .await
    .expect("replay");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert!(v["job_id"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(v["from_date"], Value::String(from));
    assert_eq!(s.emu.jobs().len(), 1);
    s.emu.shutdown().await;
}
