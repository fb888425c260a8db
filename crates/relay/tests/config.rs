//! `activity-relay run --check` with the real binary: the example config, `${VAR}`
//! expansion, and clear errors for bad configurations.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/activity-relay.toml")
}

fn check(cwd: &Path, config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_activity-relay"));
    cmd.current_dir(cwd)
        .arg("run")
        .arg("--check")
        .arg("--config")
        .arg(config)
        .env_remove("ACTIVITY_RELAY_DEMO_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn check_text(text: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, text).unwrap();
    let out = check(dir.path(), &path, env);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MINIMAL: &str = r#"
[spool]
dir = "./spool"
[admin]
listen = "127.0.0.1:9090"
[[sinks]]
name = "out"
type = "file"
path = "-"
"#;

#[test]
fn example_config_passes_check_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path(), &example(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(
        stdout.contains("webhook: http://127.0.0.1:8080 apps demo"),
        "{stdout}"
    );
    assert!(stdout.contains("sink events: file: ./data/out"), "{stdout}");
    assert!(
        !stdout.contains("change-me"),
        "the secret must not be printed: {stdout}"
    );
    assert!(!dir.path().join("data").exists(), "--check created files");
}

#[test]
fn minimal_config_passes() {
    let (ok, stdout, stderr) = check_text(MINIMAL, &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("sink out: file: stdout"), "{stdout}");
}

#[test]
fn env_vars_are_expanded() {
    let text = MINIMAL.replace(
        "./spool",
        "${RELAY_CHECK_DIR}/spool-${RELAY_CHECK_UNSET:-dflt}",
    );
    let (ok, stdout, stderr) = check_text(&text, &[("RELAY_CHECK_DIR", "/var/tmp/xyz")]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("spool: /var/tmp/xyz/spool-dflt"),
        "{stdout}"
    );
}

#[test]
fn unknown_field_is_an_error_naming_it() {
    let text = MINIMAL.replace("dir = \"./spool\"", "dir = \"./spool\"\nbogus = 1");
    let (ok, _, stderr) = check_text(&text, &[]);
    assert!(!ok);
    assert!(stderr.contains("[spool]"), "{stderr}");
    assert!(stderr.contains("unknown field `bogus`"), "{stderr}");

    let (ok, _, stderr) = check_text(&format!("surprise = true\n{MINIMAL}"), &[]);
    assert!(!ok);
    assert!(stderr.contains("unknown key `surprise`"), "{stderr}");

    let text = MINIMAL.replace("path = \"-\"", "path = \"-\"\nfsink = false");
    let (ok, _, stderr) = check_text(&text, &[]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"[[sinks]] "out" (type file)"#),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `fsink`"), "{stderr}");
}

#[test]
fn missing_env_var_is_named_and_no_secret_is_printed() {
    let text = format!(
        r#"{MINIMAL}
[webhook]
listen = "127.0.0.1:8080"
[[webhook.apps]]
name = "a"
consumer_secrets = ["${{RELAY_SET_SECRET}}", "${{RELAY_MISSING_SECRET}}"]
"#
    );
    let (ok, stdout, stderr) = check_text(&text, &[("RELAY_SET_SECRET", "hunter2-very-secret")]);
    assert!(!ok);
    assert!(stderr.contains("RELAY_MISSING_SECRET"), "{stderr}");
    assert!(
        stderr.contains("webhook.apps[0].consumer_secrets[1]"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2") && !stdout.contains("hunter2"));
}

#[test]
fn bad_template_is_an_error() {
    let text = format!(
        r#"{MINIMAL}
[[sinks]]
name = "k"
type = "kafka"
bootstrap_servers = "localhost:9092"
topic = "x.activity.{{nosuchattr}}"
"#
    );
    let (ok, _, stderr) = check_text(&text, &[]);
    assert!(!ok);
    assert!(stderr.contains("topic"), "{stderr}");
    assert!(stderr.contains("nosuchattr"), "{stderr}");

    let text = format!(
        r#"{MINIMAL}
[[sinks]]
name = "n"
type = "nats"
url = "nats://localhost:4222"
subject = "x.{{type"
"#
    );
    let (ok, _, stderr) = check_text(&text, &[]);
    assert!(!ok);
    assert!(stderr.contains(r#"sink "n""#), "{stderr}");
    assert!(stderr.contains("subject"), "{stderr}");
}

#[test]
fn sink_mistakes_are_errors() {
    let dup = format!("{MINIMAL}\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"-\"\n");
    let (ok, _, stderr) = check_text(&dup, &[]);
    assert!(!ok);
    assert!(stderr.contains("unique"), "{stderr}");

    let unknown = MINIMAL.replace("type = \"file\"", "type = \"kinesis\"");
    let (ok, _, stderr) = check_text(&unknown, &[]);
    assert!(!ok);
    assert!(stderr.contains("unknown sink type \"kinesis\""), "{stderr}");

    let none = "[spool]\ndir = \"s\"\n[admin]\nlisten = \"127.0.0.1:1\"\n";
    let (ok, _, stderr) = check_text(none, &[]);
    assert!(!ok);
    assert!(stderr.contains("at least one sink"), "{stderr}");

    let bad_addr = MINIMAL.replace("127.0.0.1:9090", "localhost");
    let (ok, _, stderr) = check_text(&bad_addr, &[]);
    assert!(!ok);
    assert!(stderr.contains("[admin]"), "{stderr}");
}

#[test]
fn syntax_error_names_the_file() {
    let (ok, _, stderr) = check_text("[spool\n", &[]);
    assert!(!ok);
    assert!(stderr.contains("relay.toml"), "{stderr}");
    assert!(stderr.contains("not valid TOML"), "{stderr}");
}

#[test]
fn a_segment_too_small_for_the_largest_delivery_is_refused() {
    let small = MINIMAL.replace(
        "dir = \"./spool\"",
        "dir = \"./spool\"\nsegment_bytes = 1048576",
    );
    let webhook = "[webhook]\nlisten = \"127.0.0.1:0\"\nbody_limit = 1048576\n[[webhook.apps]]\nname = \"a\"\nconsumer_secrets = [\"s\"]\n";
    let (ok, stdout, stderr) = check_text(&format!("{small}{webhook}"), &[]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("segment_bytes (1048576) must hold"),
        "{stderr}"
    );
    // A stream's default line limit (16 MiB) needs a larger segment too.
    let stream = "[[streams]]\nname = \"s\"\nbearer_token = \"t\"\n";
    let (ok, _, stderr) = check_text(&format!("{small}{stream}"), &[]);
    assert!(!ok);
    assert!(stderr.contains("max_line_bytes"), "{stderr}");
    // With room for 4/3 of the body and the slack, it passes.
    let fits = webhook.replace("body_limit = 1048576", "body_limit = 700000");
    let (ok, stdout, stderr) = check_text(&format!("{small}{fits}"), &[]);
    assert!(ok, "{stdout}{stderr}");
}

#[test]
fn check_explains_a_sinks_filter_and_warns_about_patterns_that_match_nothing() {
    let text = format!(
        "{MINIMAL}types = [\"dm.*\", \"chat.*\"]\nexclude_types = [\"dm.indicate_typing\", \"dms.read\"]\n"
    );
    let (ok, stdout, stderr) = check_text(&text, &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("filter: 13 of 46 taxonomy types (chat.received, chat.sent,"),
        "{stdout}"
    );
    assert!(stdout.contains("dm.sent, dm.received, dm.read"), "{stdout}");
    assert!(
        stdout.contains("warning: exclude_types pattern \"dms.read\" matches no type"),
        "{stdout}"
    );
    let (ok, _, stderr) = check_text(&format!("{MINIMAL}types = \"dm.*\"\n"), &[]);
    assert!(!ok);
    assert!(stderr.contains("`types` must be a list"), "{stderr}");
}

#[test]
fn check_refuses_what_the_nats_and_rabbitmq_sinks_would_refuse() {
    let base = MINIMAL.split("[[sinks]]").next().unwrap();
    let nats =
        format!("{base}[[sinks]]\nname = \"n\"\ntype = \"nats\"\nurl = \"not a url at all\"\n");
    let (ok, stdout, stderr) = check_text(&nats, &[]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("not a NATS server address"), "{stderr}");
    let zero = format!(
        "{base}[[sinks]]\nname = \"n\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nmax_in_flight = 0\n"
    );
    let (ok, _, stderr) = check_text(&zero, &[]);
    assert!(!ok);
    assert!(stderr.contains("max_in_flight"), "{stderr}");
    let rabbit = format!(
        "{base}[[sinks]]\nname = \"r\"\ntype = \"rabbitmq\"\nurl = \"amqp://127.0.0.1:5672/%2f\"\nmax_in_flight = 0\n"
    );
    let (ok, _, stderr) = check_text(&rabbit, &[]);
    assert!(!ok, "{stderr}");
    // A required setting left out is refused by the sink's validate(), naming it.
    for (kind, key) in [
        ("nats", "url"),
        ("rabbitmq", "url"),
        ("kafka", "bootstrap_servers"),
    ] {
        let missing = format!("{base}[[sinks]]\nname = \"m\"\ntype = \"{kind}\"\n");
        let (ok, _, stderr) = check_text(&missing, &[]);
        assert!(!ok, "{kind}");
        assert!(
            stderr.contains(&format!("{key} is required")),
            "{kind}: {stderr}"
        );
    }
}

/// Two NATS sinks naming one JetStream stream would swallow each other's messages (one
/// `Nats-Msg-Id` per envelope): refused, naming both; their own streams are fine.
#[test]
fn check_refuses_two_nats_sinks_in_one_stream() {
    let base = MINIMAL.split("[[sinks]]").next().unwrap();
    let sink = |name: &str, subject: &str, stream: &str| {
        format!(
            "[[sinks]]\nname = \"{name}\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n\
             subject = \"{subject}.{{subject}}.{{type}}\"\ndeadletter_subject = \"{subject}.dl\"\n\
             [sinks.stream]\nname = \"{stream}\"\nsubjects = [\"a.>\", \"b.>\"]\n"
        )
    };
    let shared = format!("{base}{}{}", sink("one", "a", "S"), sink("two", "b", "S"));
    let (ok, stdout, stderr) = check_text(&shared, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("\"one\" and \"two\" both name the JetStream stream \"S\""),
        "{stderr}"
    );
    let apart = format!("{base}{}{}", sink("one", "a", "S1"), sink("two", "b", "S2"));
    let (ok, stdout, stderr) = check_text(&apart, &[]);
    assert!(ok, "{stdout}{stderr}");
}

/// `--check` runs the stream's own validation too: a bad url or an empty token is refused
/// before `run` would fail on it.
#[test]
fn check_refuses_what_the_stream_client_would_refuse() {
    for (stream, expected) in [
        (
            "[[streams]]\nname = \"s\"\nurl = \"ftp://api.x.com/stream\"\nbearer_token = \"t\"\n",
            "url must be http(s)",
        ),
        (
            "[[streams]]\nname = \"s\"\nurl = \"https://api.x.com/stream\"\nbearer_token = \" \"\n",
            "bearer_token is required",
        ),
    ] {
        let (ok, stdout, stderr) = check_text(&format!("{stream}{MINIMAL}"), &[]);
        assert!(!ok, "{stdout}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    let good =
        "[[streams]]\nname = \"s\"\nurl = \"https://api.x.com/stream\"\nbearer_token = \"t\"\n";
    let (ok, stdout, stderr) = check_text(&format!("{good}{MINIMAL}"), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("stream s: https://api.x.com/stream"),
        "{stdout}"
    );
}

/// One bound for the spool's sizes, said by the loader that `run` and `run --check` share.
#[test]
fn spool_sizes_below_4096_are_refused() {
    for (key, value) in [("max_bytes", 1024), ("segment_bytes", 0)] {
        let text = MINIMAL.replace(
            "dir = \"./spool\"",
            &format!("dir = \"./spool\"\n{key} = {value}"),
        );
        let (ok, stdout, stderr) = check_text(&text, &[]);
        assert!(!ok, "{key}: {stdout}");
        assert!(stderr.contains("at least 4096"), "{key}: {stderr}");
    }
}

/// Renamed keys: the old name still works, `--check` names the new one in a warning, and
/// the old and the new name together are an error. A sink type's own renames too.
#[test]
fn renamed_keys_are_read_with_a_warning_naming_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "x").unwrap();
    std::fs::write(&key, "x").unwrap();
    let old = format!(
        r#"{MINIMAL}
[webhook]
listen = "127.0.0.1:0"
[webhook.tls]
cert_path = "{}"
key_path = "{}"
[[webhook.apps]]
name = "a"
consumer_secrets = ["s"]

[recovery]
max_attempts = 4

[[stream]]
name = "s"
bearer_token = "t"
max_line_bytes = 65536

[[sinks]]
name = "k"
type = "kafka"
bootstrap_servers = "localhost:9092"
batch_size = 65536

[[sinks]]
name = "r"
type = "rabbitmq"
url = "amqp://guest:guest@localhost:5672/%2f"
reconnect_backoff = "1s"
reconnect_backoff_max = "10s"
"#,
        cert.display(),
        key.display()
    );
    let (ok, stdout, stderr) = check_text(&old, &[]);
    assert!(ok, "{stdout}{stderr}");
    for (old, new) in [
        ("stream", "streams"),
        ("cert_path", "cert"),
        ("key_path", "key"),
        ("max_attempts", "max_job_attempts"),
        ("batch_size", "batch_bytes"),
        ("reconnect_backoff", "initial_reconnect_backoff"),
        ("reconnect_backoff_max", "max_reconnect_backoff"),
    ] {
        assert!(
            stdout.contains(&format!("`{old}` is now `{new}`")),
            "no warning for {old}: {stdout}"
        );
    }
    assert!(
        stdout.contains("stream s:"),
        "the stream was read: {stdout}"
    );

    // The new names: no warning.
    let new = old
        .replace("[[stream]]", "[[streams]]")
        .replace("cert_path", "cert")
        .replace("key_path", "key")
        .replace("max_attempts", "max_job_attempts")
        .replace("batch_size", "batch_bytes")
        .replace("reconnect_backoff_max", "max_reconnect_backoff")
        .replace("\nreconnect_backoff =", "\ninitial_reconnect_backoff =");
    let (ok, stdout, stderr) = check_text(&new, &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(!stdout.contains("warning:"), "{stdout}");

    // Both names: an error naming the one to keep.
    let both = new.replace("batch_bytes = 65536", "batch_bytes = 65536\nbatch_size = 1");
    let (ok, _, stderr) = check_text(&both, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("both `batch_size` (its old name) and `batch_bytes` are set"),
        "{stderr}"
    );
}
