//! `relay-spool`: the durable log between ingress and sinks.
//!
//! Records get consecutive logical offsets starting at 0 for a new spool. Each configured
//! sink has its own cursor: the offset of the next record it has not yet had confirmed.
//!
//! # Why a hand-written segment log
//!
//! The spool's job is narrow: append batches durably, let a few dispatchers read right
//! behind the writer, and delete from the front once every sink has confirmed. A plain
//! append-only segment log does exactly that and gives exact control over what matters here:
//! when and how often we fsync (one `fdatasync` per group of concurrent batches), the byte
//! bound (`max_bytes` is the sum of the segment files, nothing hidden in a memtable, WAL or
//! compaction backlog), and deletion (unlinking a whole file; no compaction or write
//! amplification). An embedded KV store (redb, fjall, sled) would add a B-tree/LSM write
//! path, its own durability knobs and background compaction, and make the on-disk bound
//! approximate, for features (random updates, range deletes) the spool never uses.
//!
//! # On-disk format
//!
//! The spool directory holds:
//! - `<base offset, 20 digits>.seg`: segment files. A segment starts with a 20-byte header
//!   (magic, base offset, CRC-32) followed by record frames; see [`record`] for the framing.
//!   The *n*-th record of a segment (from 0) has logical offset `base + n`; each record's
//!   CRC covers its logical offset, length and body. A batch never spans segments: a new
//!   segment is started when the next batch would push the current one past
//!   `segment_bytes` (so a segment exceeds it only when one batch alone does). The last
//!   segment is always
//!   kept, even when every sink has passed it (an empty one is started first), so its name
//!   preserves the next offset across restarts: offsets are never reused.
//! - `cursors`: every configured sink's cursor, replaced atomically (temporary file, fsync,
//!   rename, directory fsync) with a CRC.
//!
//! # Durability
//!
//! A dedicated writer thread drains all queued batches, writes each one (a batch never spans
//! segments), calls `fdatasync` once for the group (plus the directory when a segment was
//! created) and only then publishes the records to readers and answers the appenders; a
//! segment is fsynced before its successor is created, so only the last segment can ever
//! hold a torn write. Readers never see a record before it is durable. The
//! last record of each batch carries a batch-end flag; recovery cuts the last segment back to
//! the end of the last complete batch, so a batch is all or nothing even across a crash.
//! After a failed fsync the writer refuses all further appends until the spool is reopened
//! (after a failed fsync the page cache can no longer be trusted: fsyncgate), and says so
//! ([`Spool::failure`]): the relay then reports itself unhealthy and exits, crash-only, so
//! that its restart recovers from what is on disk.
//!
//! # Tested against a model file system
//!
//! All file I/O goes through a small trait (`fs`); the tests run the spool on a model of a
//! file system (`sim`) that tracks written and synced bytes per file and durable entries
//! per directory, fails any write, fsync, rename, create or remove (ENOSPC, EIO, torn
//! writes), runs out of space, and crashes (losing what was not synced, tearing what was
//! being written). A property test checks, after any sequence of appends, commits, crashes,
//! restarts and faults, that every acknowledged record at or after a sink's cursor is read
//! back once, in order, unchanged, and that no acknowledged commit is lost.
//!
//! # Space
//!
//! `max_bytes` bounds the sum of the segment files' sizes: an append that would exceed it
//! fails with [`SpoolError::Full`] and nothing old is ever dropped to make room. So does an
//! append that would leave the file system with less than `min_free_bytes` free. Cursor
//! commits never need new space (see `cursors`), so on a full disk the sinks still commit,
//! delivered segments are still deleted, and appends resume by themselves. Segments
//! are deleted once every configured sink's durable cursor has passed them; a fully
//! delivered last segment is rolled away once it holds a quarter of `segment_bytes` (or
//! immediately when an append finds the spool full, and at open). With no sinks configured
//! nothing is ever deleted. `open` requires `max_bytes >= segment_bytes`.
//!
//! # Recovery policy
//!
//! On `open` every segment is scanned and every record's checksum verified (open time is
//! proportional to the spool's size).
//! - Last segment: a torn or corrupt tail (short frame, bad length, CRC mismatch, incomplete
//!   batch) is truncated away with a `warn!`; it was never acknowledged to an appender. If
//!   complete batches of valid records follow a damaged one (bit rot in acknowledged data
//!   rather than a torn write), only the damaged record is lost (`error!`): the records
//!   behind it are copied into a new segment (temporary file, fsync, rename, directory
//!   fsync), and the damaged file stays as an older segment (below). A last segment whose header is
//!   corrupt while records follow it is renamed to `*.seg.corrupt` (kept for inspection,
//!   `error!`) and replaced by an empty segment at the same base offset.
//! - Older segment: a corrupt record in the middle is reported with `tracing::error!` (path,
//!   byte position, reason, number of records lost). The segment file is left untouched
//!   for inspection; the valid prefix is served and the records after the damage in that
//!   segment are skipped (readers continue with the next segment). Stopping the whole relay
//!   for one damaged old segment would block every newer event.
//! - A record damaged after `open` verified it (found by a read that misses the tail cache):
//!   `error!`, and the read hands it over as [`RecordKind::Damaged`] (its own bytes where
//!   they can be told apart), then goes on at the next frame (found through the damaged
//!   record's length, else by the next record's checksum), else at the segment's next
//!   index entry (the records in between handed over as damaged too). The relay
//!   dead-letters what is damaged; a read never fails for it again and again.
//! - Cursor file damaged: `error!`, and every sink restarts at the oldest retained record
//!   (duplicates, never loss).
//! - A cursor beyond the recovered end (only possible if acknowledged data was lost to disk
//!   corruption) moves the next offset up to it, so offsets a sink has seen are not reused.
//!
//! A spool directory is opened by one `Spool` at a time: it takes an exclusive lock on
//! `<dir>/LOCK`, and a second opener gets [`SpoolError::Locked`]. The
//! implementation uses positional I/O from `std::os::unix` (Linux/Unix only). File I/O never
//! runs on the tokio runtime: appends on the writer thread, reads that miss the in-memory
//! tail cache (the last 8 MiB of records) and cursor commits on `spawn_blocking`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

mod cursors;
#[cfg(test)]
mod fault_tests;
mod fs;
mod open;
pub mod record;
mod segment;
#[cfg(test)]
mod sim;
mod writer;

use segment::{scan_segment, FrameReader, Segment};
use writer::{Request, Writer};

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A serialized `relay_envelope::Envelope` (JSON).
    Envelope = 1,
    /// A serialized `relay_envelope::DeadLetter` (JSON).
    DeadLetter = 2,
    /// Never written: a record [`Spool::read`] found damaged on disk after it had been
    /// verified (bit rot, a bad sector). Its payload is the bytes that could be told apart
    /// as its own (possibly none); the reader dead-letters it and moves on, rather than
    /// failing every read of the sink, or publishing bytes that may be mangled.
    Damaged = 3,
}

/// Why the spool stopped taking appends for good ([`Spool::failure`]): after a failed
/// fsync the page cache can no longer be trusted, so only a reopen (which recovers from
/// what is on disk) clears it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SpoolFailure {
    /// A segment's fsync failed.
    #[error("fsync of {} failed: {source}", path.display())]
    Fsync {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A failed write could not be undone (the segment may end in part of a batch).
    #[error("could not undo a failed write of {}: {source}", path.display())]
    Undo {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The directory's fsync failed after a segment was created.
    #[error("directory fsync failed: {source}")]
    DirSync {
        #[source]
        source: Arc<SpoolError>,
    },
}

/// A record to append.
#[derive(Clone, Debug)]
pub struct NewRecord {
    pub kind: RecordKind,
    /// When the relay accepted it, ms since the Unix epoch (for latency and age metrics).
    pub accepted_at_ms: u64,
    pub payload: Bytes,
    /// Handed to readers with the record while it is in the tail cache; never written.
    pub attachment: Option<Attachment>,
}

/// A record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub kind: RecordKind,
    pub accepted_at_ms: u64,
    pub payload: Bytes,
    /// What its writer attached, when the record was read from the tail cache (the
    /// newest records); `None` when it was read from disk.
    pub attachment: Option<Attachment>,
}

/// What the writer of a record hands along with it to the spool's readers, for as long as
/// the record is in the tail cache: the relay attaches the envelope it just built, so
/// that no dispatcher parses it again. The spool promises only this: a record read from
/// the tail cache carries its writer's attachment, one read from disk carries none. It is
/// never written, and it is not part of a record's value (records compare equal whatever
/// their attachments).
#[derive(Clone)]
pub struct Attachment(Arc<dyn std::any::Any + Send + Sync>);

impl Attachment {
    pub fn new<T: std::any::Any + Send + Sync>(value: T) -> Attachment {
        Attachment(Arc::new(value))
    }

    /// The attached value, if it is a `T`.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attachment(..)")
    }
}

impl PartialEq for Attachment {
    fn eq(&self, _: &Attachment) -> bool {
        true
    }
}

impl Eq for Attachment {}

#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Appends fail with [`SpoolError::Full`] rather than exceed this many bytes on disk.
    pub max_bytes: u64,
    /// Size at which a segment is closed and a new one started.
    pub segment_bytes: u64,
    /// The sinks that each need a cursor. A cursor for a sink no longer listed is dropped;
    /// a new sink starts at the oldest retained record.
    pub sinks: Vec<String>,
    /// Appends are refused as [`SpoolError::Full`] while the file system holding the spool
    /// has less than this many bytes free (besides `max_bytes`), so that what must always be
    /// writable (a segment roll, the dedup journal, other files) still finds room. `None`:
    /// a tenth of the file system, at most 64 MiB.
    pub min_free_bytes: Option<u64>,
}

/// The free-space reserve when none is configured: a tenth of the file system, at most this.
pub const DEFAULT_MIN_FREE_CAP: u64 = 64 << 20;

/// Bytes available to this process on the file system holding `dir`, and its size.
pub fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    use fs::Fs as _;
    fs::RealFs.space(dir)
}

/// Offsets of an appended batch, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    pub first_offset: u64,
    pub last_offset: u64,
}

/// A sink's backlog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkLag {
    pub sink: String,
    pub cursor: u64,
    pub pending_records: u64,
    /// `accepted_at_ms` of the oldest record the sink has not passed, if any.
    pub oldest_accepted_at_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolStats {
    pub bytes: u64,
    pub max_bytes: u64,
    /// Records retained on disk.
    pub records: u64,
    pub segments: u64,
    pub first_offset: u64,
    pub next_offset: u64,
    pub sinks: Vec<SinkLag>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds `max_bytes`: retry after sinks drain it (ingress answers 503).
    #[error("spool is full ({used} of {max} bytes used)")]
    Full { used: u64, max: u64 },
    #[error("record of {size} bytes is larger than the spool's segment size {max}")]
    RecordTooLarge { size: u64, max: u64 },
    #[error("unknown sink {0:?}")]
    UnknownSink(String),
    #[error("spool is closed")]
    Closed,
    #[error("spool I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool directory {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// Another process (or another open `Spool` in this one) holds the directory.
    #[error("spool directory {path} is in use by another process (its LOCK file is held)")]
    Locked { path: PathBuf },
}

/// Payload bytes of recent records kept in memory for dispatchers reading behind the writer.
const TAIL_CACHE_BYTES: usize = 8 << 20;
/// Per-record overhead charged against [`TAIL_CACHE_BYTES`].
const TAIL_RECORD_OVERHEAD: usize = 64;

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> SpoolError {
    SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn join_err(dir: &Path, e: tokio::task::JoinError) -> SpoolError {
    io_err(
        dir,
        std::io::Error::other(format!("spool task failed: {e}")),
    )
}

pub(crate) struct State {
    /// Ordered by base offset; the last one is the writer's active segment.
    segments: VecDeque<Segment>,
    next_offset: u64,
    /// Bytes of all segment files (plus any whose deletion failed).
    bytes: u64,
    /// Durable cursors of the configured sinks.
    durable: BTreeMap<String, u64>,
    /// Requested cursors (>= durable), written by the next cursor-file write.
    requested: BTreeMap<String, u64>,
    /// Bumped whenever `requested` changes.
    generation: u64,
    /// The most recent records, contiguous, ending at `next_offset`.
    tail: VecDeque<StoredRecord>,
    tail_bytes: usize,
}

impl State {
    /// The lowest durable cursor, or `None` with no sinks (then nothing is ever deleted).
    fn min_cursor(&self) -> Option<u64> {
        self.durable.values().copied().min()
    }

    fn push_tail(&mut self, records: Vec<StoredRecord>) {
        for r in records {
            self.tail_bytes += r.payload.len() + TAIL_RECORD_OVERHEAD;
            self.tail.push_back(r);
        }
        while self.tail_bytes > TAIL_CACHE_BYTES {
            match self.tail.pop_front() {
                Some(r) => self.tail_bytes -= r.payload.len() + TAIL_RECORD_OVERHEAD,
                None => break,
            }
        }
    }

    fn trim_tail_below(&mut self, first: u64) {
        while self.tail.front().is_some_and(|r| r.offset < first) {
            if let Some(r) = self.tail.pop_front() {
                self.tail_bytes -= r.payload.len() + TAIL_RECORD_OVERHEAD;
            }
        }
    }

    fn first_offset(&self) -> u64 {
        self.segments.front().map_or(self.next_offset, |s| s.base)
    }

    /// Index of the first segment holding a record at or after `offset`.
    fn segment_from(&self, offset: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.end() <= offset);
        (i < self.segments.len()).then_some(i)
    }

    fn lag(&self, sink: &str, cursor: u64) -> SinkLag {
        let pending_records = self
            .segments
            .iter()
            .map(|s| s.end().saturating_sub(cursor.max(s.base)))
            .sum();
        let oldest_accepted_at_ms = if cursor >= self.next_offset {
            None
        } else if let Some(r) = self
            .tail
            .front()
            .filter(|f| f.offset <= cursor)
            .and_then(|f| self.tail.get((cursor - f.offset) as usize))
        {
            Some(r.accepted_at_ms)
        } else {
            // Approximate to the sparse index entry at or before the cursor (older, so the
            // reported age errs on the high side).
            self.segment_from(cursor).map(|i| {
                let s = &self.segments[i];
                s.entry_for(cursor.max(s.base)).accepted_at_ms
            })
        };
        SinkLag {
            sink: sink.to_string(),
            cursor,
            pending_records,
            oldest_accepted_at_ms,
        }
    }
}

pub(crate) struct Shared {
    config: SpoolConfig,
    pub(crate) fs: Arc<dyn fs::Fs>,
    /// Why the writer stopped for good (an fsync or an undo failed), once it has.
    pub(crate) failed: watch::Sender<Option<SpoolFailure>>,
    state: Mutex<State>,
    /// Published next offset (records below it are durable and readable).
    next_tx: watch::Sender<u64>,
    closed: AtomicBool,
    /// The cursor file (serializes cursor writes); `persisted` is the generation last
    /// written.
    cursor_file: Mutex<cursors::CursorFile>,
    /// The resolved free-space reserve (see [`SpoolConfig::min_free_bytes`]).
    pub(crate) min_free: u64,
    persisted: AtomicU64,
    /// Group commits (data fsyncs) since open.
    group_commits: AtomicU64,
    /// Batches appended since open.
    appended_batches: AtomicU64,
    /// The exclusive lock on `<dir>/LOCK`: two processes appending to one directory would
    /// corrupt it. Released by the writer when it closes (or with the last handle).
    pub(crate) lock: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// Deletes the segments every sink has passed (never the last one). Blocking.
pub(crate) fn gc(shared: &Shared) {
    let victims: Vec<Segment> = {
        let mut st = shared.state.lock();
        let Some(min) = st.min_cursor() else {
            return;
        };
        let mut victims = Vec::new();
        while st.segments.len() > 1 && st.segments.front().is_some_and(|s| s.end() <= min) {
            if let Some(s) = st.segments.pop_front() {
                victims.push(s);
            }
        }
        let first = st.first_offset();
        st.trim_tail_below(first);
        victims
    };
    if victims.is_empty() {
        return;
    }
    let mut freed = 0;
    for s in &victims {
        match shared.fs.remove(&s.path) {
            Ok(()) => {
                freed += s.file_len;
                tracing::debug!(path = %s.path.display(), records = s.count, "deleted delivered spool segment");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => freed += s.file_len,
            Err(e) => {
                tracing::error!(path = %s.path.display(), error = %e, "could not delete delivered spool segment; its bytes stay counted until the next open")
            }
        }
    }
    {
        let mut st = shared.state.lock();
        st.bytes = st.bytes.saturating_sub(freed);
    }
    if let Err(e) = cursors::sync_dir(&*shared.fs, &shared.config.dir) {
        tracing::warn!(error = %e, "could not fsync the spool directory after deleting segments");
    }
}

/// Handle to an open spool; cheap to clone, shared by all tasks.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Request>,
}

impl Spool {
    /// Opens (creating if needed) and recovers the spool: a torn or corrupt tail is cut.
    pub async fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        Spool::open_on(config, Arc::new(fs::RealFs)).await
    }

    pub(crate) async fn open_on(
        config: SpoolConfig,
        fs: Arc<dyn fs::Fs>,
    ) -> Result<Spool, SpoolError> {
        let dir = config.dir.clone();
        let shared = tokio::task::spawn_blocking(move || open::open_blocking(config, fs))
            .await
            .map_err(|e| join_err(&dir, e))??;
        let shared = Arc::new(shared);
        let writer = Writer::new(shared.clone()).ok_or_else(|| SpoolError::Corrupt {
            path: dir.clone(),
            reason: "no active segment after recovery".to_string(),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("relay-spool-writer".to_string())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err(&dir, e))?;
        // Roll a fully delivered active segment away, if any (e.g. a removed sink held it).
        let _ = tx.send(Request::Maintain { force: true });
        Ok(Spool { shared, tx })
    }

    /// Appends a batch; returns only once it is durable (group commit: concurrent appends
    /// share an fsync). All or nothing. An empty batch writes nothing and reports
    /// `first_offset == last_offset ==` the current next offset.
    pub async fn append(&self, batch: Vec<NewRecord>) -> Result<AppendReceipt, SpoolError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SpoolError::Closed);
        }
        if batch.is_empty() {
            let next = *self.shared.next_tx.borrow();
            return Ok(AppendReceipt {
                first_offset: next,
                last_offset: next,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Append { batch, reply })
            .map_err(|_| SpoolError::Closed)?;
        rx.await.map_err(|_| SpoolError::Closed)?
    }

    /// Up to `max` records starting at `from` (fewer, or none, if the log ends first).
    /// Reading below the first retained offset starts at the first retained record.
    pub async fn read(&self, from: u64, max: usize) -> Result<Vec<StoredRecord>, SpoolError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        {
            let st = self.shared.state.lock();
            if from >= st.next_offset {
                return Ok(Vec::new());
            }
            if let Some(front) = st.tail.front() {
                if from >= front.offset {
                    let skip = (from - front.offset) as usize;
                    return Ok(st.tail.range(skip..).take(max).cloned().collect());
                }
            }
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || read_blocking(&shared, from, max))
            .await
            .map_err(|e| join_err(&self.shared.config.dir, e))?
    }

    /// Waits until a record at `offset` exists or `timeout` passes; true if it exists.
    pub async fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.next_tx.subscribe();
        if *rx.borrow_and_update() > offset {
            return true;
        }
        let found = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|next| *next > offset)).await,
            Ok(Ok(_))
        );
        found
    }

    /// The sink's cursor: the next offset it has not had confirmed (durably).
    pub fn cursor(&self, sink: &str) -> Result<u64, SpoolError> {
        self.shared
            .state
            .lock()
            .durable
            .get(sink)
            .copied()
            .ok_or_else(|| SpoolError::UnknownSink(sink.to_string()))
    }

    /// Durably moves the sink's cursor to `next` and deletes segments every sink has passed.
    ///
    /// Cursors only move forward: committing an offset below the current cursor is a no-op.
    /// An offset beyond the end of the log is clamped to it (with a warning). Concurrent
    /// commits share one cursor-file write.
    pub async fn commit(&self, sink: &str, next: u64) -> Result<(), SpoolError> {
        let generation = {
            let mut st = self.shared.state.lock();
            let end = st.next_offset;
            let Some(requested) = st.requested.get_mut(sink) else {
                return Err(SpoolError::UnknownSink(sink.to_string()));
            };
            let next = if next > end {
                tracing::warn!(
                    sink,
                    next,
                    end,
                    "cursor commit beyond the end of the spool; clamped"
                );
                end
            } else {
                next
            };
            if next > *requested {
                *requested = next;
                st.generation += 1;
            }
            st.generation
        };
        if self.shared.persisted.load(Ordering::Acquire) >= generation {
            return Ok(());
        }
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || persist_cursors(&shared, &tx, generation))
            .await
            .map_err(|e| join_err(&self.shared.config.dir, e))?
    }

    /// Why the spool stopped taking appends for good, once it has: an fsync failed (after
    /// which the page cache can no longer be trusted) or a failed write could not be
    /// undone. Only a reopen, which recovers from what is on disk, clears it.
    pub fn failure(&self) -> Option<SpoolFailure> {
        self.shared.failed.borrow().clone()
    }

    /// Waits until the spool has failed for good (see [`Spool::failure`]); returns why.
    pub async fn failed(&self) -> SpoolFailure {
        let mut rx = self.shared.failed.subscribe();
        let got = rx.wait_for(Option::is_some).await.map(|r| r.clone());
        match got {
            Ok(Some(reason)) => reason,
            Ok(None) => std::future::pending().await,
            // The spool is gone: nothing more will fail.
            Err(_) => std::future::pending().await,
        }
    }

    pub fn stats(&self) -> SpoolStats {
        let st = self.shared.state.lock();
        SpoolStats {
            bytes: st.bytes,
            max_bytes: self.shared.config.max_bytes,
            records: st.segments.iter().map(|s| s.count).sum(),
            segments: st.segments.len() as u64,
            first_offset: st.first_offset(),
            next_offset: st.next_offset,
            sinks: st
                .durable
                .iter()
                .map(|(sink, cursor)| st.lag(sink, *cursor))
                .collect(),
        }
    }

    /// Group commits since open: `(fsync groups, batches appended)`. The ratio is the average
    /// number of appends that shared one fsync (a useful gauge under load).
    pub fn group_commits(&self) -> (u64, u64) {
        (
            self.shared.group_commits.load(Ordering::Relaxed),
            self.shared.appended_batches.load(Ordering::Relaxed),
        )
    }

    /// Stops accepting appends; pending appends finish first.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Close { reply }).is_ok() {
            let _ = rx.await;
        }
    }
}

fn persist_cursors(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Request>,
    generation: u64,
) -> Result<(), SpoolError> {
    {
        let mut file = shared.cursor_file.lock();
        if shared.persisted.load(Ordering::Acquire) >= generation {
            return Ok(());
        }
        let (snapshot, snapshot_gen) = {
            let st = shared.state.lock();
            (st.requested.clone(), st.generation)
        };
        file.store(&snapshot)?;
        {
            let mut st = shared.state.lock();
            for (sink, cursor) in &snapshot {
                if let Some(d) = st.durable.get_mut(sink) {
                    *d = (*d).max(*cursor);
                }
            }
        }
        shared.persisted.store(snapshot_gen, Ordering::Release);
    }
    gc(shared);
    let fully_passed = {
        let st = shared.state.lock();
        st.min_cursor().is_some_and(|m| m >= st.next_offset)
            && st.segments.back().is_some_and(|s| s.count > 0)
    };
    if fully_passed {
        let _ = tx.send(Request::Maintain { force: false });
    }
    Ok(())
}

fn read_blocking(shared: &Shared, from: u64, max: usize) -> Result<Vec<StoredRecord>, SpoolError> {
    let mut out = Vec::new();
    let mut from = from;
    while out.len() < max {
        let (file, path, start, end, entry, valid_len, base) = {
            let st = shared.state.lock();
            let Some(i) = st.segment_from(from) else {
                break;
            };
            let s = &st.segments[i];
            let start = from.max(s.base);
            (
                s.file.clone(),
                s.path.clone(),
                start,
                s.end(),
                s.entry_for(start),
                s.valid_len,
                s.base,
            )
        };
        let mut reader = FrameReader::new(&*file, entry.pos, valid_len);
        let mut offset = base + entry.rel;
        while offset < end && out.len() < max {
            let at = reader.pos();
            let reason = match reader.next(offset).map_err(|e| io_err(&path, e))? {
                segment::Frame::Record { record, .. } => {
                    if offset >= start {
                        out.push(StoredRecord {
                            offset,
                            kind: record.kind,
                            accepted_at_ms: record.accepted_at_ms,
                            payload: record.payload,
                            attachment: None,
                        });
                    }
                    offset += 1;
                    continue;
                }
                segment::Frame::End | segment::Frame::Torn => "segment ends early",
                segment::Frame::Corrupt(reason) => reason,
            };
            // Damaged after it was verified: handed over as damaged, and reading goes on at
            // the next frame when this one's length leads to a valid record, else at the
            // segment's next index entry, else at its end.
            let resume = resume_after_damage(shared, &*file, at, offset, end, valid_len);
            tracing::error!(
                path = %path.display(),
                offset,
                skipped = resume.0 - offset,
                reason,
                "spool record damaged on disk after it was verified; handed over as damaged (dead-lettered), reading goes on behind it"
            );
            let raw = Bytes::from(segment::read_range(
                &*file,
                at,
                resume.1.min(at + MAX_DAMAGED_BYTES),
            ));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            for o in offset..resume.0 {
                if o >= start && out.len() < max {
                    out.push(StoredRecord {
                        offset: o,
                        kind: RecordKind::Damaged,
                        accepted_at_ms: now,
                        payload: if o == offset {
                            raw.clone()
                        } else {
                            Bytes::new()
                        },
                        attachment: None,
                    });
                }
            }
            offset = resume.0;
            reader = FrameReader::new(&*file, resume.1, valid_len);
        }
        from = end;
    }
    Ok(out)
}

/// Where reading goes on behind a record damaged at `at` (offset `offset`): (offset, file
/// position) of the next frame when this one's length leads to a valid record, else of
/// the next record found up to the segment's next index entry, else of that entry, else
/// the segment's end.
fn resume_after_damage(
    shared: &Shared,
    file: &dyn fs::FsFile,
    at: u64,
    offset: u64,
    end: u64,
    valid_len: u64,
) -> (u64, u64) {
    let next_entry = {
        let st = shared.state.lock();
        st.segment_from(offset)
            .and_then(|i| st.segments.get(i))
            .and_then(|s| s.entry_after(offset).map(|e| (s.base + e.rel, e.pos)))
            .filter(|(next, _)| *next <= end)
    };
    segment::valid_frame_after(file, at, valid_len, offset)
        .or_else(|| {
            // The length field is damaged too: look for the next record's frame
            // (its checksum covers its offset, so nothing else matches) up to the
            // next index entry.
            let limit = next_entry.map_or(valid_len, |(_, pos)| pos);
            segment::find_frame(file, at + 1, limit, offset + 1)
        })
        .map(|pos| (offset + 1, pos))
        .filter(|(next, _)| *next < end)
        .or(next_entry)
        .unwrap_or((end, valid_len))
}

/// At most this many bytes of a damaged record are handed over with it.
const MAX_DAMAGED_BYTES: u64 = 1 << 20;
