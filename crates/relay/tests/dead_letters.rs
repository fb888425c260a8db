//! `activity-relay dead-letters replay` with the real binary: the envelopes dead letters
//! carry go back into the spool with their ids; what is not an envelope is reported.

use std::process::Command;

use chrono::Utc;
use relay_envelope::{Context, DeadLetter, Envelope, Formats, IngressKind};
use relay_spool::{Spool, SpoolConfig};

#[tokio::test]
async fn dead_letters_replay_puts_their_envelopes_back_into_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[spool]\ndir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"-\"\n",
            spool_dir.display()
        ),
    )
    .unwrap();
    let ctx = Context {
        ingress: IngressKind::Webhook,
        source: "/t".into(),
        received_at: Utc::now(),
        formats: Formats::ALL,
    };
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/aaa/favorite.json"
    ))
    .unwrap();
    let env = relay_envelope::normalize(&body, &ctx).unwrap().remove(0);
    let refused = DeadLetter::new(&env.to_json(), "refused: unroutable (5 attempts)", &ctx);
    let unreadable = DeadLetter::new(b"<html>not json", "not JSON: expected value", &ctx);
    let file = dir.path().join("out.ndjson");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\nnot a dead letter\n",
            String::from_utf8(refused.to_json()).unwrap(),
            String::from_utf8(unreadable.to_json()).unwrap()
        ),
    )
    .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_activity-relay"))
        .args(["dead-letters", "replay", "--config"])
        .arg(&config)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("1 events put back into the spool"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 dead letters held no envelope, 1 lines were not dead letters"),
        "{stdout}"
    );
    assert!(stderr.contains("holds no envelope"), "{stderr}");

    let spool = Spool::open(SpoolConfig {
        dir: spool_dir,
        max_bytes: 1 << 30,
        segment_bytes: 64 << 20,
        sinks: vec!["out".into()],
        min_free_bytes: None,
    })
    .await
    .unwrap();
    let got = spool.read(0, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    let back = Envelope::from_json(&got[0].payload).unwrap();
    assert_eq!(back.id, env.id, "replayed with its id");
    assert_eq!(back.data.payload.get(), env.data.payload.get());
}
