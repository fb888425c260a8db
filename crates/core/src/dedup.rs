//! Event-id deduplication: a time window of recently accepted ids, bounded in memory.
//!
//! Each id is kept as a 64-bit hash (the first 8 bytes of its SHA-256, stable across
//! versions and restarts) with the time it was accepted. An id is a duplicate while it is
//! younger than the window; the oldest entries are forgotten first when `max_entries` is
//! reached.
//!
//! One API for the pipeline: [`Dedup::claim`] the ids of a delivery (waiting for a
//! concurrent delivery of the same ids to finish first), look at which were already
//! accepted ([`Claim::seen`]), and after the spool append [`Claim::commit`] the new ones
//! (dropping the claim instead releases them, as when the append failed).
//!
//! Restarts: every accepted id is appended to a journal (`dedup.journal` in the spool
//! directory: 16-byte entries of hash and time, little endian) right after its spool append
//! succeeded; on open the journal is loaded, trimmed to the window and rewritten
//! (compaction). The caller also feeds the spool's retained records in
//! ([`Dedup::remember`]) as insurance: what is in the spool was accepted. The journal is not
//! fsynced per write: losing its tail in a crash only means an id is forgotten early (a
//! possible duplicate downstream, never a loss), and the spool covers recent records. The
//! journal is written (and compacted, with an fsync) by its own thread, as the spool's
//! writer does, never on the async runtime's threads: every 20 ms, what was marked
//! meanwhile in one write (a crash loses at most that much of it, which the spool rebuild
//! covers).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

#[derive(Default)]
struct Window {
    /// hash -> when (ms since the epoch) and how it was accepted.
    seen: HashMap<u64, Seen>,
    /// Insertion order, oldest first; may hold stale entries (superseded times).
    order: VecDeque<(u64, i64)>,
}

impl Window {
    fn insert(&mut self, h: u64, t: i64, format: Option<XFormat>) {
        match self.seen.get_mut(&h) {
            Some(old) if old.at >= t => {
                old.format = old.format.or(format);
            }
            _ => {
                self.seen.insert(h, Seen { at: t, format });
                self.order.push_back((h, t));
            }
        }
    }

    /// The live entries, oldest first, as journal bytes.
    fn live_entries(&self) -> (Vec<u8>, usize) {
        let mut buf = Vec::with_capacity(self.seen.len() * ENTRY_LEN);
        let mut n = 0;
        for (h, t) in &self.order {
            if self.seen.get(h).map(|s| s.at) == Some(*t) {
                buf.extend_from_slice(&h.to_le_bytes());
                buf.extend_from_slice(&t.to_le_bytes());
                n += 1;
            }
        }
        (buf, n)
    }
}

/// How often the journal's thread writes what was marked meanwhile.
const JOURNAL_INTERVAL: Duration = Duration::from_millis(20);

/// How long after a failed journal write the journal is tried again.
const JOURNAL_RETRY: Duration = Duration::from_secs(30);

/// The journal is rewritten when it holds more than this many entries and more than twice
/// the live ones.
const COMPACT_MIN_ENTRIES: usize = 1 << 16;

/// Ids being appended right now: hash → a receiver that closes when the append is done.
type Claims = Mutex<HashMap<u64, tokio::sync::watch::Receiver<()>>>;

/// The deduplication window. Shared by all ingresses (internally locked).
pub struct Dedup {
    window_ms: i64,
    max_entries: usize,
    window: Arc<Mutex<Window>>,
    journal: Option<Journal>,
    claims: Claims,
    /// Ids forgotten before their window ended because of `max_entries`.
    evicted_early: std::sync::atomic::AtomicU64,
}

/// The ids of one delivery, claimed by [`Dedup::claim`]: nobody else appends them until
/// this is committed or dropped. Owned (`'static`), so that the append it guards can run
/// to its end, and commit it, even when the delivery's future is cancelled.
pub struct Claim {
    dedup: Arc<Dedup>,
    hashes: Vec<u64>,
    seen: Vec<Option<Option<XFormat>>>,
    _done: tokio::sync::watch::Sender<()>,
}

impl Claim {
    /// Per claimed id, in order: `Some(the format it was first accepted in)` when it was
    /// already accepted (a duplicate; the format is `None` when unknown), `None` when it is
    /// new and this claim holds it.
    pub fn seen(&self) -> &[Option<Option<XFormat>>] {
        &self.seen
    }

    /// The new ids were spooled at `now_ms`: remember (and journal) them, and let waiting
    /// deliveries of the same ids through, which now find them accepted.
    pub fn commit<'i>(
        self,
        accepted: impl IntoIterator<Item = (&'i str, Option<XFormat>)>,
        now_ms: i64,
    ) {
        self.dedup.mark(accepted, now_ms);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claims = self.dedup.claims.lock();
        for h in &self.hashes {
            claims.remove(h);
        }
    }
}

impl Dedup {
    /// An in-memory window (no journal).
    pub fn in_memory(window: Duration, max_entries: usize) -> Dedup {
        Dedup {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            max_entries: max_entries.max(1),
            window: Arc::default(),
            journal: None,
            claims: Mutex::default(),
            evicted_early: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Opens the window with its journal in `dir`: loads and compacts it (blocking: call it
    /// off the async threads), then starts the journal's writer thread. `now_ms` is the
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
            let mut w = d.window.lock();
            for (h, t) in entries {
                w.insert(h, t, None);
            }
        }
        d.expire(now_ms);
        // Compact: rewrite the live entries, then append to the new file.
        let mut file = JournalFile {
            dir: dir.to_path_buf(),
            file: None,
            entries: 0,
            failed_at: None,
        };
        file.rewrite(&d.window)?;
        tracing::info!(path = %path.display(), ids = d.len(), "dedup window loaded");
        d.journal = Some(Journal::start(file, Arc::clone(&d.window), &path)?);
        Ok(d)
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.window.lock().seen.len()
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
        self.lookup_hash(hash_id(id), now_ms)
    }

    fn lookup_hash(&self, h: u64, now_ms: i64) -> Option<Option<XFormat>> {
        self.window
            .lock()
            .seen
            .get(&h)
            .filter(|s| now_ms.saturating_sub(s.at) < self.window_ms)
            .map(|s| s.format)
    }

    /// Claims `ids` for one delivery (see [`Claim`]): first waits for any concurrent claim
    /// of one of them to be committed or dropped, then notes which are already accepted
    /// and claims the others.
    pub async fn claim(self: &Arc<Self>, ids: &[String], now_ms: i64) -> Claim {
        let hashes: Vec<u64> = ids.iter().map(|id| hash_id(id)).collect();
        loop {
            let mut wait = {
                let mut claims = self.claims.lock();
                match hashes.iter().find_map(|h| claims.get(h).cloned()) {
                    Some(rx) => rx,
                    None => {
                        let seen: Vec<Option<Option<XFormat>>> = hashes
                            .iter()
                            .map(|h| self.lookup_hash(*h, now_ms))
                            .collect();
                        let (tx, rx) = tokio::sync::watch::channel(());
                        let mut mine = Vec::new();
                        for (h, d) in hashes.iter().zip(&seen) {
                            if d.is_none() && !claims.contains_key(h) {
                                claims.insert(*h, rx.clone());
                                mine.push(*h);
                            }
                        }
                        return Claim {
                            dedup: Arc::clone(self),
                            hashes: mine,
                            seen,
                            _done: tx,
                        };
                    }
                }
            };
            // Returns once the other delivery's claim is dropped.
            let _ = wait.changed().await;
        }
    }

    /// Remembers ids accepted at `at_ms` (no journal write): used to rebuild from the spool.
    pub fn remember<'a>(
        &self,
        ids: impl IntoIterator<Item = (&'a str, Option<XFormat>)>,
        at_ms: i64,
    ) {
        let mut w = self.window.lock();
        for (id, format) in ids {
            w.insert(hash_id(id), at_ms, format);
        }
        self.trim(&mut w, at_ms);
    }

    /// Marks ids as accepted at `now_ms` (after their spool append succeeded) and hands
    /// them to the journal's thread. (The pipeline goes through [`Claim::commit`].)
    pub fn mark<'a>(&self, ids: impl IntoIterator<Item = (&'a str, Option<XFormat>)>, now_ms: i64) {
        let mut buf = Vec::new();
        {
            let mut w = self.window.lock();
            for (id, format) in ids {
                let h = hash_id(id);
                w.insert(h, now_ms, format);
                buf.extend_from_slice(&h.to_le_bytes());
                buf.extend_from_slice(&now_ms.to_le_bytes());
            }
            self.trim(&mut w, now_ms);
        }
        if let (false, Some(journal)) = (buf.is_empty(), &self.journal) {
            journal.send(Op::Append(buf));
        }
    }

    /// Waits until the journal's thread has written everything marked so far.
    pub fn flush(&self) {
        if let Some(journal) = &self.journal {
            let (tx, rx) = mpsc::channel();
            journal.send(Op::Flush(tx));
            let _ = rx.recv();
        }
    }

    /// Drops entries older than the window.
    pub fn expire(&self, now_ms: i64) {
        let mut w = self.window.lock();
        self.trim(&mut w, now_ms);
    }

    fn trim(&self, w: &mut Window, now_ms: i64) {
        while let Some(&(h, t)) = w.order.front() {
            let live = w.seen.get(&h).map(|s| s.at) == Some(t);
            let expired = now_ms.saturating_sub(t) >= self.window_ms;
            if !live {
                w.order.pop_front();
            } else if expired || w.seen.len() > self.max_entries {
                if !expired {
                    self.evicted_early
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                w.order.pop_front();
                w.seen.remove(&h);
            } else {
                break;
            }
        }
        // Stale entries can make `order` grow; compact it when it doubles.
        if w.order.len() > 2 * w.seen.len() + 1024 {
            let seen = &w.seen;
            w.order
                .retain(|(h, t)| seen.get(h).map(|s| s.at) == Some(*t));
        }
    }
}

/// What the journal's thread is asked to do.
enum Op {
    /// Append these entries.
    Append(Vec<u8>),
    /// Answer once everything before is written.
    Flush(mpsc::Sender<()>),
    /// Tests: behave as after a failed write `JOURNAL_RETRY` ago.
    #[cfg(test)]
    Fail,
    /// Tests: whether the journal is currently given up.
    #[cfg(test)]
    IsFailed(mpsc::Sender<bool>),
}

/// The journal's writer thread and the channel to it.
struct Journal {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Journal {
    fn start(
        mut file: JournalFile,
        window: Arc<Mutex<Window>>,
        path: &Path,
    ) -> Result<Journal, DedupError> {
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("dedup-journal".into())
            .spawn(move || {
                // Wakes every JOURNAL_INTERVAL and writes what came meanwhile in one go, so
                // that marking ids never costs the async threads a wake-up of this one.
                let mut buf = Vec::new();
                loop {
                    std::thread::sleep(JOURNAL_INTERVAL);
                    let mut done = false;
                    let mut answers = Vec::new();
                    loop {
                        match rx.try_recv() {
                            Ok(Op::Append(b)) => buf.extend_from_slice(&b),
                            Ok(Op::Flush(answer)) => answers.push(answer),
                            #[cfg(test)]
                            Ok(Op::Fail) => {
                                if !buf.is_empty() {
                                    file.append(&buf, &window);
                                    buf.clear();
                                }
                                file.file = None;
                                file.failed_at = Some(Instant::now() - JOURNAL_RETRY);
                            }
                            #[cfg(test)]
                            Ok(Op::IsFailed(answer)) => {
                                if !buf.is_empty() {
                                    file.append(&buf, &window);
                                    buf.clear();
                                }
                                let _ = answer.send(file.failed_at.is_some());
                            }
                            Err(mpsc::TryRecvError::Empty) => break,
                            Err(mpsc::TryRecvError::Disconnected) => {
                                done = true;
                                break;
                            }
                        }
                    }
                    if !buf.is_empty() {
                        file.append(&buf, &window);
                        buf.clear();
                    }
                    for answer in answers {
                        let _ = answer.send(());
                    }
                    if done {
                        return;
                    }
                }
            })
            .map_err(|source| DedupError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Journal {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx {
            // The thread only ends when `tx` is dropped.
            let _ = tx.send(op);
        }
    }
}

impl Drop for Journal {
    /// Lets the thread write what it was given, then joins it.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The journal file, owned by its thread.
struct JournalFile {
    dir: PathBuf,
    file: Option<File>,
    /// Entries in the file (compacted when it grows well beyond the live ones).
    entries: usize,
    /// When writing last failed (a full disk, say); retried after [`JOURNAL_RETRY`],
    /// until then ids are only remembered in memory.
    failed_at: Option<Instant>,
}

impl JournalFile {
    fn append(&mut self, buf: &[u8], window: &Mutex<Window>) {
        if let Some(at) = self.failed_at {
            if at.elapsed() < JOURNAL_RETRY {
                return;
            }
            // Try again: a rewrite holds every live id, the ones just marked included.
            match self.rewrite(window) {
                Ok(()) => {
                    tracing::info!("dedup journal written again");
                    self.failed_at = None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dedup journal still cannot be written");
                    self.failed_at = Some(Instant::now());
                }
            }
            return;
        }
        let written = self.file.as_mut().map(|f| f.write_all(buf)).transpose();
        let result = match written {
            Ok(_) => {
                self.entries += buf.len() / ENTRY_LEN;
                let live = window.lock().seen.len();
                if self.entries > COMPACT_MIN_ENTRIES && self.entries > 2 * live {
                    self.rewrite(window)
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(DedupError::Io {
                path: self.dir.join(JOURNAL_FILE),
                source: e,
            }),
        };
        if let Err(e) = result {
            tracing::error!(
                error = %e,
                "cannot write the dedup journal; ids are still deduplicated in memory and rebuilt from the spool on restart; retrying every 30 s"
            );
            self.failed_at = Some(Instant::now());
            self.file = None;
        }
    }

    /// Rewrites the journal with the live entries (temporary file, fsync, rename) and
    /// reopens it for appending. The window is locked only to copy the entries.
    fn rewrite(&mut self, window: &Mutex<Window>) -> Result<(), DedupError> {
        let path = self.dir.join(JOURNAL_FILE);
        let tmp = self.dir.join(format!("{JOURNAL_FILE}.tmp"));
        let io = |p: &PathBuf| {
            let p = p.clone();
            move |source| DedupError::Io { path: p, source }
        };
        let (buf, n) = window.lock().live_entries();
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&buf).map_err(io(&tmp))?;
        f.sync_data().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.file = Some(
            OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io(&path))?,
        );
        self.entries = n;
        Ok(())
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
        d.flush();
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

    #[tokio::test]
    async fn a_claim_holds_its_ids_until_committed_or_dropped() {
        let d = Arc::new(Dedup::in_memory(Duration::from_secs(60), 100));
        let ids = vec!["a".to_string(), "b".to_string()];
        let first = d.claim(&ids, 1_000).await;
        assert_eq!(first.seen(), &[None, None]);
        // A second delivery of "b" waits for the first claim: polled, it is not ready.
        let waiting = vec!["b".to_string(), "c".to_string()];
        let mut second = Box::pin(d.claim(&waiting, 1_001));
        assert!(futures::poll!(&mut second).is_pending(), "did not wait");
        first.commit(
            [("a", Some(XFormat::Xaa)), ("b", Some(XFormat::Xaa))],
            1_000,
        );
        let c = second.await;
        assert_eq!(c.seen(), &[Some(Some(XFormat::Xaa)), None]);
        drop(c);
        // A dropped claim (a failed append) releases its ids unremembered.
        let dropped = d.claim(&["z".to_string()], 2_000).await;
        drop(dropped);
        let again = d.claim(&["z".to_string()], 2_001).await;
        assert_eq!(again.seen(), &[None]);
        assert!(!d.contains("z", 2_001));
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
        let journal = d.journal.as_ref().unwrap();
        journal.send(Op::Fail);
        let failed = || {
            let (tx, rx) = mpsc::channel();
            journal.send(Op::IsFailed(tx));
            rx.recv().unwrap()
        };
        assert!(failed());
        d.mark([("b", None)], 2_000);
        assert!(!failed(), "recovered");
        d.mark([("c", None)], 3_000);
        drop(d);
        let back = Dedup::open(dir.path(), Duration::from_secs(3600), 100, 4_000).unwrap();
        for id in ["a", "b", "c"] {
            assert!(back.contains(id, 4_000), "{id} lost from the journal");
        }
    }
}
