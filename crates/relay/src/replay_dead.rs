//! `activity-relay dead-letters replay`: puts the events that dead letters carry back into
//! the spool, after the cause is fixed (a queue bound, a topic created).
//!
//! Input: NDJSON files of dead letters, as a dispatcher writes them to the dead-letter
//! destination of its sink or, when even that refused them, to
//! `<spool dir>/dead-letters/<sink>.ndjson`. A dead letter whose `raw` bytes are an
//! envelope (a record a broker refused) is appended to the spool as that envelope, with
//! its id; one whose bytes are not (an authentic body the relay could not read) is reported
//! and skipped. Every sink gets the replayed events again on the next run (at least once:
//! consumers, and the brokers' own dedup windows, drop the copies a sink already had).
//! The relay must be stopped: the spool takes one process at a time.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use relay_envelope::{DeadLetter, Envelope};
use relay_spool::{NewRecord, RecordKind, Spool};

use crate::config::Config;

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub appended: usize,
    /// Dead letters whose bytes are not an envelope (unreadable deliveries).
    pub not_envelopes: usize,
    /// Lines that are not dead letters at all.
    pub unreadable_lines: usize,
}

/// Why dead letters could not be put back.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} (stop the relay before replaying)")]
    Open(#[source] relay_spool::SpoolError),
    #[error(transparent)]
    Append(relay_spool::SpoolError),
}

/// Reads `files` and appends the envelopes their dead letters carry to the spool of `cfg`.
pub async fn replay(cfg: &Config, files: &[PathBuf]) -> Result<Replayed, ReplayError> {
    let mut out = Replayed::default();
    let mut records = Vec::new();
    for path in files {
        for (n, line) in lines(path)?.into_iter().enumerate() {
            let Ok(dl) = serde_json::from_str::<DeadLetter>(&line) else {
                out.unreadable_lines += 1;
                eprintln!("{}:{}: not a dead letter; skipped", path.display(), n + 1);
                continue;
            };
            match Envelope::from_json(&dl.raw) {
                Ok(env) => records.push(NewRecord {
                    kind: RecordKind::Envelope,
                    accepted_at_ms: u64::try_from(dl.received_at.timestamp_millis()).unwrap_or(0),
                    payload: Bytes::from(env.to_json()),
                    attachment: None,
                }),
                Err(_) => {
                    out.not_envelopes += 1;
                    eprintln!(
                        "{}:{}: {} holds no envelope ({}); skipped",
                        path.display(),
                        n + 1,
                        dl.id,
                        dl.reason
                    );
                }
            }
        }
    }
    if records.is_empty() {
        return Ok(out);
    }
    let spool = Spool::open(
        cfg.spool
            .spool_config(cfg.sinks.iter().map(|x| x.name.clone()).collect()),
    )
    .await
    .map_err(ReplayError::Open)?;
    out.appended = records.len();
    let result = spool.append(records).await;
    spool.close().await;
    result.map_err(ReplayError::Append)?;
    Ok(out)
}

fn lines(path: &Path) -> Result<Vec<String>, ReplayError> {
    let read = |source| ReplayError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read)?;
    std::io::BufReader::new(f)
        .lines()
        .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .collect::<Result<_, _>>()
        .map_err(read)
}
