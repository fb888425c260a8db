//! The relay as a child process on a generated config, and its CPU time and peak RSS from
//! `/proc`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::BoxError;

/// The app name of the webhook path (`/webhooks/<APP>`) and the emulator's default app.
pub const APP: &str = "demo";

/// A running relay.
pub struct Relay {
    pub admin: String,
    pub webhook: String,
    pub log: PathBuf,
    child: Child,
}

fn free_port() -> Result<u16, BoxError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    Ok(l.local_addr()
        .map_err(|e| format!("finding a free port: {e}"))?
        .port())
}

impl Relay {
    /// Writes `<dir>/relay.toml` (spool in `<dir>/spool`, the given `[[sinks]]` table) and
    /// starts `bin run --config …`, waiting until `/readyz` answers 200 (bounded).
    pub async fn start(bin: &Path, dir: &Path, sink_toml: &str) -> Result<Relay, BoxError> {
        let admin = format!("127.0.0.1:{}", free_port()?);
        let webhook = format!("127.0.0.1:{}", free_port()?);
        let config = format!(
            "shutdown_timeout = \"5s\"\n\n[spool]\ndir = \"{spool}\"\n\n[admin]\nlisten = \"{admin}\"\n\n\
             [log]\nformat = \"json\"\nlevel = \"warn\"\n\n[webhook]\nlisten = \"{webhook}\"\n\n\
             [[webhook.apps]]\nname = \"{APP}\"\nconsumer_secrets = [\"emulator-consumer-secret\"]\n\n{sink_toml}",
            spool = dir.join("spool").display(),
        );
        let path = dir.join("relay.toml");
        std::fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let log = dir.join("relay.log");
        let file =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("creating {}: {e}", log.display()))?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut relay = Relay {
            admin,
            webhook,
            log,
            child,
        };
        let client = reqwest::Client::new();
        let url = format!("http://{}/readyz", relay.admin);
        for _ in 0..300 {
            if let Ok(Some(status)) = relay.child.try_wait() {
                return Err(format!(
                    "activity-relay exited at start ({status}); its log:\n{}",
                    relay.log_text()
                )
                .into());
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(relay);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "activity-relay was not ready within 30 s; its log:\n{}",
            relay.log_text()
        )
        .into())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The relay's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT/webhooks/<app>`.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/{APP}", self.webhook)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Peak RSS in KiB (`VmHWM` of `/proc/<pid>/status`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Resets the peak RSS to the current RSS (`5` into `/proc/<pid>/clear_refs`), so that
    /// `VmHWM` is per step; false when the kernel refused.
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        for _ in 0..100 {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// user + system CPU seconds of a `/proc/<pid>/stat` file (`/proc/self/stat`: this process).
pub fn cpu_secs_of(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// `getconf CLK_TCK` (100 when it cannot be asked).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}
