//! The `x-emulator` binary: `serve --register-webhook … --subscribe …` produces signed
//! deliveries with no manual step (retrying registration until the CRC passes), secrets
//! from the environment; `print-config` prints a loadable configuration.

mod common;

use std::process::Stdio;

use common::*;

#[tokio::test]
async fn serve_registers_subscribes_and_generates() {
    let secret = "from-the-environment";
    let rx = Receiver::start(secret, Crc::Status(503)).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_x-emulator"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--register-webhook",
            &rx.url("demo"),
            "--subscribe",
            "2244994945,3001969357",
            "--rate",
            "100",
            "--count",
            "20",
            "--formats",
            "aaa=1",
            "--register-retry-secs",
            "0.1",
        ])
        .env("X_EMULATOR_CONSUMER_SECRET", secret)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The relay is "not ready" for a while: registration is retried.
    wait_for(30, || (rx.crc_count() >= 2).then_some(())).await;
    assert!(rx.posts().is_empty());
    rx.set_crc(Crc::Correct);
    let posts = wait_for(30, || Some(rx.posts()).filter(|p| p.len() >= 20)).await;
    assert!(posts.iter().all(|p| p.signature_valid));
    assert!(posts.iter().all(|p| {
        let u = p.json["for_user_id"]
            .as_str()
            .or(p.json["user_event"]["revoke"]["source"]["user_id"].as_str());
        matches!(u, Some("2244994945" | "3001969357"))
    }));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn print_config_is_loadable() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_x-emulator"))
        .arg("print-config")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let cfg: x_emulator::EmulatorConfig = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg, x_emulator::EmulatorConfig::default());
}
