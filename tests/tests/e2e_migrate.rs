//! `activity-relay x migrate` against the emulator with 500 AAA users: the plan
//! (`--dry-run`), a paced run killed halfway (SIGKILL) and resumed, ending with exactly the
//! planned set of XAA subscriptions; a second run creates nothing; users without a token
//! (or a scope) are reported; `--rollback` deletes everything it created.
//!
//! The emulator enforces X's rules for private types (`strict_scopes`: the filtered user's
//! OAuth 2.0 token with the type's scope) and a rate limit of 2,000 calls per 2-second
//! window (X: 500 per 15 minutes), which the command paces itself by (`--rate 1000
//! --rate-window-secs 2`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x_emulator::{Emulator, EmulatorConfig, UserConfig};

const USERS: usize = 500;
const PER_USER: usize = 17;
/// Private types among the 17: all but post.create, post.delete, follow.follow,
/// follow.unfollow.
const PRIVATE: usize = 13;
/// DM types (dm.read scope) among them.
const DMS: usize = 4;

/// Answers X's CRC on any path (the migration needs a registered webhook, not a relay).
async fn crc_responder(secret: &'static str) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let token = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| url::Url::parse(&format!("http://x{p}")).ok())
                    .and_then(|u| {
                        u.query_pairs()
                            .find(|(k, _)| k == "crc_token")
                            .map(|(_, v)| v.to_string())
                    })
                    .unwrap_or_default();
                let body =
                    json!({"response_token": x_signature(secret, token.as_bytes())}).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/webhooks/demo")
}

fn migrate_cmd(base: &str, dir: &Path, hook: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(relay_bin());
    c.args(["x", "--base-url", base, "--bearer-token", "emulator-bearer"])
        .args(["migrate", "--webhook-id", hook])
        .arg("--state")
        .arg(dir.join("state.json"))
        .arg("--user-tokens")
        .arg(dir.join("tokens.json"))
        .args(["--rate", "1000", "--rate-window-secs", "2"])
        .args(extra)
        .env_remove("X_BEARER_TOKEN")
        .env_remove("X_API_BASE_URL")
        .env("RUST_LOG", "warn");
    c
}

fn run_ok(mut c: Command) -> (String, String) {
    let out = c.output().expect("run activity-relay x migrate");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// The emulator's XAA subscriptions of this migration: tag → (id, webhook, type, user).
fn ours(emu: &x_emulator::EmulatorHandle) -> Vec<(String, Value)> {
    let state = emu.state();
    state["activity_subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let tag = s["tag"].as_str()?.to_string();
            tag.starts_with("relay-migrate:").then_some((tag, s))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_500_users_plans_paces_resumes_reports_and_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..USERS)
        .map(|i| format!("{}", 7_000_000_000u64 + i as u64))
        .collect();
    let mut users: Vec<UserConfig> = ids
        .iter()
        .map(|id| UserConfig::new(id, &format!("u{id}"), "Migrated User"))
        .collect();
    // Five users granted no DM scope; ten users never gave the operator a token.
    for u in &mut users[..5] {
        u.scopes.retain(|s| s != "dm.read");
    }
    let emu = Emulator::start(EmulatorConfig {
        users: users.clone(),
        strict_scopes: true,
        rate_limit: 2_000,
        rate_window_secs: 2,
        recrc_interval_secs: 0.0,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let url = crc_responder("emulator-consumer-secret").await;
    let hook = emu.register_webhook("demo", &url).await.expect("CRC");
    for id in &ids {
        emu.subscribe("demo", &hook.id, id)
            .expect("AAA subscription");
    }
    let mut tokens = serde_json::Map::new();
    for u in &users[..USERS - 10] {
        tokens.insert(
            u.user_id.clone(),
            json!({"access_token": u.oauth2(), "scopes": u.scopes}),
        );
    }
    std::fs::write(
        tmp.path().join("tokens.json"),
        Value::Object(tokens).to_string(),
    )
    .unwrap();
    let base = emu.base_url();
    let no_token = 10 * PRIVATE + 5 * DMS;
    let planned = USERS * PER_USER + 1;
    let creatable = planned - no_token;

    // The plan.
    let (plan, _) = run_ok(migrate_cmd(
        &base,
        tmp.path(),
        &hook.id,
        &["--dry-run", "--json"],
    ));
    let plan: Value = serde_json::from_str(&plan).expect("plan json");
    let p = &plan["plan"];
    assert_eq!(p["users"], USERS);
    assert_eq!(p["per_user"], PER_USER);
    assert_eq!(p["planned"], planned);
    assert_eq!(p["to_create"], creatable);
    assert_eq!(p["needs_token"], no_token);
    assert_eq!(p["users_needing_tokens"], 15);
    assert_eq!(p["cap"], 75_000);
    assert_eq!(p["over_cap_by"], 0);
    assert_eq!(p["windows"], creatable.div_ceil(1000));
    assert!(ours(&emu).is_empty(), "a dry run creates nothing");
    let (text, _) = run_ok(migrate_cmd(&base, tmp.path(), &hook.id, &["--dry-run"]));
    assert!(text.contains(&format!("{planned} planned")), "{text}");
    assert!(text.contains("fits"), "{text}");
    // Over a Self-serve cap: refused before creating anything.
    let out = migrate_cmd(&base, tmp.path(), &hook.id, &["--tier", "self-serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("over the cap of 1500"), "{err}");
    assert!(ours(&emu).is_empty());

    // A run, SIGKILLed halfway.
    let mut child = migrate_cmd(&base, tmp.path(), &hook.id, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        if ours(&emu).len() >= creatable / 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < guard, "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    // A call in flight at the kill may still be served: read the count once it has held
    // still for half a second (bounded).
    let mut halfway = ours(&emu).len();
    let mut still = 0;
    while still < 5 {
        assert!(tokio::time::Instant::now() < guard, "never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = ours(&emu).len();
        still = if now == halfway { still + 1 } else { 0 };
        halfway = now;
    }
    assert!(halfway < creatable, "killed halfway: {halfway}");

    // Resumed: ends with exactly the planned set, nothing twice.
    let started = std::time::Instant::now();
    let (done, progress) = run_ok(migrate_cmd(
        &base,
        tmp.path(),
        &hook.id,
        &[
            "--json",
            "--report",
            tmp.path().join("report.json").to_str().unwrap(),
        ],
    ));
    let resumed_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "migrate: {creatable} creatable, killed at {halfway}, resumed run {resumed_secs:.1} s"
    );
    let done: Value = serde_json::from_str(&done).expect("outcome json");
    assert_eq!(done["created"], creatable - halfway, "{}", done["plan"]);
    assert!(done["plan"]["existing"].as_u64().unwrap() >= halfway as u64);
    assert_eq!(done["failed"], 0);
    assert!(progress.contains("ETA"), "progress shown: {progress}");
    let subs = ours(&emu);
    assert_eq!(subs.len(), creatable);
    let tags: BTreeSet<&String> = subs.iter().map(|(t, _)| t).collect();
    assert_eq!(tags.len(), creatable, "no tag twice");
    let mut want = BTreeSet::new();
    want.insert("relay-migrate:app:oauth.revoke".to_string());
    for (i, id) in ids.iter().enumerate() {
        for t in relay_xapi_types() {
            let private = is_private(t);
            let dm = t.starts_with("dm.");
            if (i >= USERS - 10 && private) || (i < 5 && dm) {
                continue;
            }
            want.insert(format!("relay-migrate:{id}:{t}"));
        }
    }
    let got: BTreeSet<String> = tags.into_iter().cloned().collect();
    assert_eq!(got, want);
    for (_, s) in &subs {
        assert_eq!(s["webhook_id"], Value::String(hook.id.clone()));
    }
    // Paced: the resumed part needed at least its windows.
    let windows_needed = (creatable - halfway).div_ceil(1000);
    assert!(
        resumed_secs >= (windows_needed.saturating_sub(1) * 2) as f64,
        "{resumed_secs}s for {windows_needed} windows"
    );
    // The report names who needs a token, and for what.
    let report: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("report.json")).unwrap()).unwrap();
    let by_user: BTreeMap<&str, &Value> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["user_id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by_user.len(), USERS);
    let last = by_user[ids[USERS - 1].as_str()];
    assert_eq!(last["needs_token"].as_array().unwrap().len(), PRIVATE);
    assert_eq!(last["needs_token"][0]["why"], "no_token");
    let first = by_user[ids[0].as_str()];
    assert_eq!(first["needs_token"].as_array().unwrap().len(), DMS);
    assert_eq!(first["needs_token"][0]["why"], "missing_scope");
    assert_eq!(first["needs_token"][0]["scope"], "dm.read");

    // A second run creates nothing.
    let (again, _) = run_ok(migrate_cmd(&base, tmp.path(), &hook.id, &["--json"]));
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["created"], 0);
    assert_eq!(again["plan"]["to_create"], 0);
    assert_eq!(ours(&emu).len(), creatable);

    // Rollback: every subscription it created is gone, nothing else touched.
    let other = reqwest::Client::new()
        .post(format!("{base}/2/activity/subscriptions"))
        .bearer_auth("emulator-bearer")
        .json(&json!({"event_type": "post.create", "filter": {"user_id": ids[0]}, "tag": "mine"}))
        .send()
        .await
        .unwrap();
    assert!(other.status().is_success());
    let (rb, _) = run_ok(migrate_cmd(
        &base,
        tmp.path(),
        &hook.id,
        &["--rollback", "--json"],
    ));
    let rb: Value = serde_json::from_str(&rb).unwrap();
    assert_eq!(rb["deleted"], creatable);
    assert!(ours(&emu).is_empty());
    let left = emu.state()["activity_subscriptions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(left, 1, "the operator's own subscription stays");
    emu.shutdown().await;
}

fn relay_xapi_types() -> [&'static str; 17] {
    relay_xapi::migrate::PER_USER_TYPES
}

fn is_private(t: &str) -> bool {
    relay_xapi::required_scope(t).is_some()
}
