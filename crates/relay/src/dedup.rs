//! Event-id deduplication: a time window of recently accepted ids, bounded in memory.
//!
//! Each id is kept as a 64-bit hash (the first 8 bytes of its SHA-256, stable across
//! versions and restarts) with the time it was accepted. An id is a duplicate while it is
//! younger than the window; the oldest entries are forgotten first when `max_entries` is
//! reached.
//!
//! Restarts: every accepted id is appended to a journal (`dedup.journal` in the spool
//! directory: 16-byte entries of hash and time, little endian) right after its spool append
//! succeeded; on open the journal is loaded, trimmed to the window and rewritten
//! (compaction). The caller also feeds the spool's retained records in
//! ([`Dedup::remember`]) as insurance: what is in the spool was accepted. The journal is not
//! fsynced per write: losing its tail in a crash only means an id is forgotten early (a
//! possible duplicate downstream, never a loss), and the spool covers recent records.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use relay_envelope::XFormat;
use sha2::{Digest, Sha256};

const ENTRY_LEN: usize = 16;
/// The journal's file name inside the spool directory.
pub const JOURNAL_FILE: &str = "dedup.journal";

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("dedup journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The stable 64-bit hash of an id.
pub fn hash_id(id: &str) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(b)
}

/// When an id was accepted, and in which input format (unknown for ids loaded from the
/// journal, which keeps hashes and times only).
#[derive(Clone, Copy)]
struct Seen {
    at: i64,
    format: Option<XFormat>,
}

struct Inner {
    /// hash -> when (ms since the epoch) and how it was accepted.
    seen: HashMap<u64, Seen>,
    /// Insertion order, oldest first; may hold stale entries (superseded times).
    order: VecDeque<(u64, i64)>,
    journal: Option<File>,
    /// When writing the journal last failed (a full disk, say); retried after
    /// [`JOURNAL_RETRY`], until then ids are only remembered in memory.
    journal_failed_at: Option<std::time::Instant>,
    /// Entries in the journal file (compacted when it grows well beyond the live ones).
    journal_entries: usize,
}

/// How long after a failed journal write the journal is tried again.
const JOURNAL_RETRY: Duration = Duration::from_secs(30);

/// The journal is rewritten when it holds more than this many entries and more than twice
/// the live ones.
const COMPACT_MIN_ENTRIES: usize = 1 << 16;

/// The deduplication window. Shared by all ingresses (internally locked).
pub struct Dedup {
    window_ms: i64,
    max_entries: usize,
    journal_dir: Option<PathBuf>,
    inner: Mutex<Inner>,
    /// Ids forgotten before their window ended because of `max_entries`.
    evicted_early: std::sync::atomic::AtomicU64,
}

impl Dedup {
    /// An in-memory window (no journal).
    pub fn in_memory(window: Duration, max_entries: usize) -> Dedup {
        Dedup {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            max_entries: max_entries.max(1),
            journal_dir: None,
            evicted_early: std::sync::atomic::AtomicU64::new(0),
            inner: Mutex::new(Inner {
                seen: HashMap::new(),
                order: VecDeque::new(),
                journal: None,
                journal_failed_at: None,
                journal_entries: 0,
            }),
        }
    }

    /// Opens the window with its journal in `dir`: loads and compacts it. `now_ms` is the
    /// current time (entries older than the window are dropped).
    pub fn open(
        dir: &Path,
        window: Duration,
        max_entries: usize,
        now_ms: i64,
    ) -> Result<Dedup, DedupError> {
        let mut d = Dedup::in_memory(window, max_entries);
        let path = dir.join(JOURNAL_FILE);
        let io = |source| DedupError::Io {
            path: path.clone(),
            source,
        };
        let mut entries = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map_err(io)?;
                if buf.len() % ENTRY_LEN != 0 {
                    tracing::warn!(path = %path.display(), "dedup journal ends with a partial entry (crash while writing); ignored");
                }
                for chunk in buf.chunks_exact(ENTRY_LEN) {
                    let mut h = [0u8; 8];
                    let mut t = [0u8; 8];
                    h.copy_from_slice(&chunk[..8]);
                    t.copy_from_slice(&chunk[8..]);
                    entries.push((u64::from_le_bytes(h), i64::from_le_bytes(t)));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        {
            let inner = d.inner.get_mut();
            for (h, t) in entries {
                insert(inner, h, t, None);
            }
        }
        d.expire(now_ms);
        // Compact: rewrite the live entries, then append to the new file.
        rewrite_journal(dir, d.inner.get_mut())?;
        tracing::info!(path = %path.display(), ids = d.len(), "dedup window loaded");
        d.journal_dir = Some(dir.to_path_buf());
        Ok(d)
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    /// Ids forgotten before their window ended (the bound `max_entries` was reached): a
    /// non-zero rate means the window is effectively shorter than configured.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` was accepted within the window before `now_ms`.
    pub fn contains(&self, id: &str, now_ms: i64) -> bool {
        self.lookup(id, now_ms).is_some()
    }

    /// `Some(format it was accepted in)` when `id` was accepted within the window before
    /// `now_ms` (the format is `None` when not known: loaded from the journal).
    pub fn lookup(&self, id: &str, now_ms: i64) -> Option<Option<XFormat>> {
        let h = hash_id(id);
        let inner = self.inner.lock();
        inner
            .seen
            .get(&h)
            .filter(|s| now_ms.saturating_sub(s.at) < self.window_ms)
            .map(|s| s.format)
    }

    /// Remembers ids accepted at `at_ms` (no journal write): used to rebuild from the spool.
    pub fn remember<'a>(
        &self,
        ids: impl IntoIterator<Item = (&'a str, Option<XFormat>)>,
        at_ms: i64,
    ) {
        let mut inner = self.inner.lock();
        for (id, format) in ids {
            insert(&mut inner, hash_id(id), at_ms, format);
        }
        self.trim(&mut inner, at_ms);
    }

    /// Marks ids as accepted at `now_ms` (after their spool append succeeded) and journals
    /// them. A journal write failure is logged once and the journal is given up (the spool
    /// rebuild still covers restarts).
    pub fn mark<'a>(&self, ids: impl IntoIterator<Item = (&'a str, Option<XFormat>)>, now_ms: i64) {
        let mut inner = self.inner.lock();
        let mut buf = Vec::new();
        for (id, format) in ids {
            let h = hash_id(id);
            insert(&mut inner, h, now_ms, format);
            buf.extend_from_slice(&h.to_le_bytes());
            buf.extend_from_slice(&now_ms.to_le_bytes());
        }
        self.trim(&mut inner, now_ms);
        if buf.is_empty() {
            return;
        }
        let Some(dir) = self.journal_dir.as_deref() else {
            return;
        };
        if let Some(at) = inner.journal_failed_at {
            if at.elapsed() < JOURNAL_RETRY {
                return;
            }
            // Try again: a rewrite holds every live id, the ones just marked included.
            match rewrite_journal(dir, &mut inner) {
                Ok(()) => {
                    tracing::info!("dedup journal written again");
                    inner.journal_failed_at = None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dedup journal still cannot be written");
                    inner.journal_failed_at = Some(std::time::Instant::now());
                }
            }
            return;
        }
        let written = inner
            .journal
            .as_mut()
            .map(|f| f.write_all(&buf))
            .transpose();
        let result = match written {
            Ok(_) => {
                inner.journal_entries += buf.len() / ENTRY_LEN;
                if inner.journal_entries > COMPACT_MIN_ENTRIES
                    && inner.journal_entries > 2 * inner.seen.len()
                {
                    rewrite_journal(dir, &mut inner)
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(DedupError::Io {
                path: dir.join(JOURNAL_FILE),
                source: e,
            }),
        };
        if let Err(e) = result {
            tracing::error!(
                error = %e,
                "cannot write the dedup journal; ids are still deduplicated in memory and rebuilt from the spool on restart; retrying every 30 s"
            );
            inner.journal_failed_at = Some(std::time::Instant::now());
            inner.journal = None;
        }
    }

    /// Drops entries older than the window.
    pub fn expire(&self, now_ms: i64) {
        let mut inner = self.inner.lock();
        self.trim(&mut inner, now_ms);
    }

    fn trim(&self, inner: &mut Inner, now_ms: i64) {
        while let Some(&(h, t)) = inner.order.front() {
            let live = inner.seen.get(&h).map(|s| s.at) == Some(t);
            let expired = now_ms.saturating_sub(t) >= self.window_ms;
            if !live {
                inner.order.pop_front();
            } else if expired || inner.seen.len() > self.max_entries {
                if !expired {
                    self.evicted_early
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                inner.order.pop_front();
                inner.seen.remove(&h);
            } else {
                break;
            }
        }
        // Stale entries can make `order` grow; compact it when it doubles.
        if inner.order.len() > 2 * inner.seen.len() + 1024 {
            let seen = &inner.seen;
            inner
                .order
                .retain(|(h, t)| seen.get(h).map(|s| s.at) == Some(*t));
        }
    }
}

/// Rewrites the journal in `dir` with the live entries (temporary file, fsync, rename) and
/// reopens it for appending.
fn rewrite_journal(dir: &Path, inner: &mut Inner) -> Result<(), DedupError> {
    let path = dir.join(JOURNAL_FILE);
    let tmp = dir.join(format!("{JOURNAL_FILE}.tmp"));
    let io = |p: &PathBuf| {
        let p = p.clone();
        move |source| DedupError::Io { path: p, source }
    };
    let mut buf = Vec::with_capacity(inner.seen.len() * ENTRY_LEN);
    let mut n = 0;
    for (h, t) in &inner.order {
        if inner.seen.get(h).map(|s| s.at) == Some(*t) {
            buf.extend_from_slice(&h.to_le_bytes());
            buf.extend_from_slice(&t.to_le_bytes());
            n += 1;
        }
    }
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&buf).map_err(io(&tmp))?;
    f.sync_data().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    inner.journal = Some(
        OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?,
    );
    inner.journal_entries = n;
    Ok(())
}

fn insert(inner: &mut Inner, h: u64, t: i64, format: Option<XFormat>) {
    match inner.seen.get_mut(&h) {
        Some(old) if old.at >= t => {
            old.format = old.format.or(format);
        }
        _ => {
            inner.seen.insert(h, Seen { at: t, format });
            inner.order.push_back((h, t));
        }
    }
}

/// Remembers the ids of every record retained in the spool, with their accepted time
/// (what is in the spool was accepted). Returns how many records were read.
pub async fn rebuild_from_spool(
    dedup: &Dedup,
    spool: &relay_spool::Spool,
) -> Result<u64, relay_spool::SpoolError> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
        #[serde(default)]
        xformat: Option<XFormat>,
    }
    let stats = spool.stats();
    let mut from = stats.first_offset;
    let mut n = 0u64;
    while from < stats.next_offset {
        let records = spool.read(from, 1024).await?;
        let Some(last) = records.last() else {
            break;
        };
        from = last.offset + 1;
        for r in &records {
            n += 1;
            if let Ok(Id { id, xformat }) = serde_json::from_slice::<Id>(&r.payload) {
                let at = i64::try_from(r.accepted_at_ms).unwrap_or(0);
                dedup.remember([(id.as_str(), xformat)], at);
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_bound() {
        let d = Dedup::in_memory(Duration::from_secs(10), 3);
        d.mark([("a", None), ("b", None)], 1_000);
        assert!(d.contains("a", 5_000));
        assert!(!d.contains("c", 5_000));
        assert!(!d.contains("a", 11_000), "expired after the window");
        d.mark([("c", None), ("d", None)], 2_000);
        assert_eq!(d.len(), 3, "bounded");
        assert!(!d.contains("a", 2_000), "oldest evicted first");
        assert_eq!(d.evicted_early(), 1);
        assert!(d.contains("d", 2_000));
    }

    #[test]
    fn journal_survives_reopen_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let w = Duration::from_secs(60);
        {
            let d = Dedup::open(dir.path(), w, 100, 0).unwrap();
            d.mark([("old", None)], 0);
            d.mark([("new", None)], 50_000);
        }
        let d = Dedup::open(dir.path(), w, 100, 70_000).unwrap();
        assert!(d.contains("new", 70_000));
        assert!(!d.contains("old", 70_000));
        let len = std::fs::metadata(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .len();
        assert_eq!(len, ENTRY_LEN as u64, "compacted to the one live entry");
    }

    #[test]
    fn journal_is_compacted_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dedup::open(dir.path(), Duration::from_millis(10), 100, 0).unwrap();
        let n = COMPACT_MIN_ENTRIES + 10;
        for i in 0..n {
            d.mark([(format!("id-{i}").as_str(), None)], i as i64 * 100);
        }
        let len = std::fs::metadata(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .len();
        assert!(
            len < (n * ENTRY_LEN) as u64 / 2,
            "journal not compacted: {len} bytes"
        );
        // Still correct after reopening.
        drop(d);
        let last = (n - 1) as i64 * 100;
        let d = Dedup::open(dir.path(), Duration::from_millis(10), 100, last).unwrap();
        assert!(d.contains(&format!("id-{}", n - 1), last));
    }

    #[test]
    fn torn_journal_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let d = Dedup::open(dir.path(), Duration::from_secs(60), 100, 0).unwrap();
            d.mark([("x", None)], 10);
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        drop(f);
        let d = Dedup::open(dir.path(), Duration::from_secs(60), 100, 20).unwrap();
        assert!(d.contains("x", 20));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_failed_journal_is_written_again_later() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dedup::open(dir.path(), Duration::from_secs(3600), 100, 0).unwrap();
        d.mark([("a", None)], 1_000);
        // As after a write failure (a full disk) some time ago.
        {
            let mut inner = d.inner.lock();
            inner.journal = None;
            inner.journal_failed_at = Some(std::time::Instant::now() - JOURNAL_RETRY);
        }
        d.mark([("b", None)], 2_000);
        assert!(d.inner.lock().journal_failed_at.is_none(), "recovered");
        d.mark([("c", None)], 3_000);
        drop(d);
        let back = Dedup::open(dir.path(), Duration::from_secs(3600), 100, 4_000).unwrap();
        for id in ["a", "b", "c"] {
            assert!(back.contains(id, 4_000), "{id} lost from the journal");
        }
    }
}
