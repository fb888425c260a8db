//! The liveness record: per ingress, the time up to which the relay was accepting.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{LIVENESS_FILE, WEBHOOK_KEY};

/// Why the liveness record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a liveness record: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
struct LivenessDoc {
    version: u32,
    /// Ingress key → time up to which it was accepting.
    alive_until: BTreeMap<String, DateTime<Utc>>,
    /// Ingress key → start of the part of an earlier gap not replayed yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    replay_pending_from: BTreeMap<String, DateTime<Utc>>,
}

/// Per ingress, the time up to which the relay was accepting, and where an unfinished
/// replay of an earlier gap stood.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    pub alive_until: BTreeMap<String, DateTime<Utc>>,
    /// The start of what is left of a gap whose replay had not finished when the relay
    /// stopped (a restart during recovery resumes it instead of losing it).
    pub replay_pending_from: BTreeMap<String, DateTime<Utc>>,
}

/// Where the running webhook recovery stands (`None`: nothing left to replay); written into
/// the liveness record.
pub type Pending = Arc<parking_lot::Mutex<Option<DateTime<Utc>>>>;

impl Liveness {
    /// The record's path in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(LIVENESS_FILE)
    }

    /// Reads the record; `Ok(None)` when there is none (first start).
    pub fn read(dir: &Path) -> Result<Option<Liveness>, LivenessError> {
        let path = Liveness::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LivenessError::Io { path, source }),
        };
        let doc: LivenessDoc =
            serde_json::from_slice(&bytes).map_err(|e| LivenessError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if doc.version != 1 {
            return Err(LivenessError::Corrupt {
                path,
                reason: format!("unknown version {}", doc.version),
            });
        }
        Ok(Some(Liveness {
            alive_until: doc.alive_until,
            replay_pending_from: doc.replay_pending_from,
        }))
    }

    /// Reads the record; an unreadable or corrupt one is logged and treated as none.
    pub fn load(dir: &Path) -> Liveness {
        match Liveness::read(dir) {
            Ok(Some(l)) => l,
            Ok(None) => {
                tracing::info!("no liveness record: first start, no gap to recover");
                Liveness::default()
            }
            Err(e) => {
                tracing::warn!(error = %e, "liveness record unusable; treated as none (no gap recovered)");
                Liveness::default()
            }
        }
    }

    /// Writes the record atomically: temp file, fsync, rename, fsync of the directory.
    pub fn store(&self, dir: &Path) -> Result<(), LivenessError> {
        let path = Liveness::path(dir);
        let tmp = dir.join(format!("{LIVENESS_FILE}.tmp"));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| LivenessError::Io { path: p, source }
        };
        let doc = LivenessDoc {
            version: 1,
            alive_until: self.alive_until.clone(),
            replay_pending_from: self.replay_pending_from.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| LivenessError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Best effort: not every platform can fsync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// A record of `keys`, all alive until `at`.
    pub fn all_at(keys: &[String], at: DateTime<Utc>) -> Liveness {
        Liveness {
            alive_until: keys.iter().map(|k| (k.clone(), at)).collect(),
            replay_pending_from: BTreeMap::new(),
        }
    }

    /// How long `key` has been down at `now`; `None` when nothing was recorded for it.
    pub fn gap(&self, key: &str, now: DateTime<Utc>) -> Option<Duration> {
        let t = self.alive_until.get(key)?;
        Some((now - *t).to_std().unwrap_or(Duration::ZERO))
    }
}

/// Refreshes the liveness record of the ingresses (and the webhook's `pending` replay)
/// every `interval` until `stop`, then once more (call it after the ingresses stopped
/// accepting, so the last record is exact). Each ingress is recorded as alive up to when it
/// last took everything X sent ([`relay_ingress::Acceptance`]): one that is up but refusing
/// (spool full) or disconnected (a stream in backoff) stops advancing, so the next start
/// sees the real gap.
/// What one ingress's entry of the liveness record is read from.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The webhook: the wall-clock time up to which it took every delivery.
    Acceptance(relay_ingress::Acceptance),
    /// A stream: its position in X's time (no entry until it has one). Written forward
    /// only, so a restart loop cannot move it past what was accepted.
    Position(relay_ingress::Position),
}

impl Clock {
    fn read(&self) -> Option<DateTime<Utc>> {
        match self {
            Clock::Acceptance(a) => Some(DateTime::<Utc>::from(a.accepted_up_to())),
            Clock::Position(p) => p.get().map(DateTime::<Utc>::from),
        }
    }
}

pub async fn keep_alive(
    dir: PathBuf,
    ingresses: Vec<(String, Clock)>,
    interval: Duration,
    pending: Pending,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        let stopping = stop.is_cancelled();
        let mut rec = Liveness {
            alive_until: ingresses
                .iter()
                .filter_map(|(k, c)| Some((k.clone(), c.read()?)))
                .collect(),
            replay_pending_from: BTreeMap::new(),
        };
        if let Some(p) = *pending.lock() {
            rec.replay_pending_from.insert(WEBHOOK_KEY.to_string(), p);
        }
        let d = dir.clone();
        match tokio::task::spawn_blocking(move || rec.store(&d)).await {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("liveness record written again");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot write the liveness record (a restart then recovers a longer gap)");
                }
                failing = true;
            }
            Err(e) => tracing::warn!(error = %e, "liveness write task failed"),
        }
        if stopping {
            tracing::debug!("liveness record written at shutdown");
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::stream_key;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn liveness_round_trip_and_gap() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Liveness::read(dir.path()).unwrap(), None);
        assert_eq!(Liveness::load(dir.path()), Liveness::default());
        let at = t("2026-11-22T03:00:00.250Z");
        let keys = vec![WEBHOOK_KEY.to_string(), stream_key("main")];
        let rec = Liveness::all_at(&keys, at);
        rec.store(dir.path()).unwrap();
        let back = Liveness::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, rec);
        assert!(back.replay_pending_from.is_empty());
        let mut with_pending = rec.clone();
        with_pending
            .replay_pending_from
            .insert(WEBHOOK_KEY.into(), t("2026-11-22T01:00:00Z"));
        with_pending.store(dir.path()).unwrap();
        assert_eq!(Liveness::read(dir.path()).unwrap().unwrap(), with_pending);
        rec.store(dir.path()).unwrap();
        assert!(!dir.path().join("liveness.json.tmp").exists());
        let now = t("2026-11-22T03:10:00.250Z");
        assert_eq!(back.gap(WEBHOOK_KEY, now), Some(Duration::from_secs(600)));
        assert_eq!(back.gap("stream:main", now), Some(Duration::from_secs(600)));
        assert_eq!(back.gap("stream:other", now), None);
        // A clock that went backwards is no gap.
        assert_eq!(
            back.gap(WEBHOOK_KEY, t("2026-11-22T02:00:00Z")),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn corrupt_liveness_is_no_record() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            &b"{\"version\":1,\"alive_"[..],
            b"",
            b"[1,2]",
            b"{\"version\":9,\"alive_until\":{}}",
        ] {
            std::fs::write(dir.path().join(LIVENESS_FILE), bad).unwrap();
            assert!(matches!(
                Liveness::read(dir.path()),
                Err(LivenessError::Corrupt { .. })
            ));
            assert_eq!(Liveness::load(dir.path()), Liveness::default());
        }
    }
}
