//! The writer thread: the only place that writes segment files. It drains every queued
//! request, writes all queued batches, fsyncs once (group commit), publishes the records to
//! readers and only then answers each appender.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::cursors::sync_dir;
use crate::fs::SharedFile;
use crate::record::{encode_record, encoded_len, FLAG_BATCH_END, RECORD_OVERHEAD};
use crate::record::{BODY_FIXED_LEN, SEGMENT_HEADER_LEN};
use crate::segment::{create_segment, IndexEntry, Segment, INDEX_EVERY};
use crate::{gc, io_err, AppendReceipt, NewRecord, Shared, SpoolError, SpoolFailure, StoredRecord};

/// Most requests handled in one group (one fsync).
const MAX_GROUP: usize = 4096;

type Reply = oneshot::Sender<Result<AppendReceipt, SpoolError>>;

pub(crate) enum Request {
    Append {
        batch: Vec<NewRecord>,
        reply: Reply,
    },
    /// A cursor moved: roll the active segment if every sink has passed it, so it can go
    /// (only once it holds a quarter of a segment, unless `force`).
    Maintain {
        force: bool,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// The segment being appended to, as the writer sees it (ahead of what is published).
struct Active {
    base: u64,
    count: u64,
    len: u64,
    path: PathBuf,
    file: SharedFile,
    /// Created by this writer and not yet published.
    new: bool,
    /// Index entries not yet published.
    index: Vec<IndexEntry>,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: Active,
    next_offset: u64,
    /// Set after an fsync failure: the page cache can no longer be trusted, so every further
    /// append fails until the spool is reopened (recovery then decides from the disk).
    poisoned: Option<SpoolFailure>,
    buf: Vec<u8>,
}

struct Planned {
    reply: Reply,
    receipt: AppendReceipt,
}

/// One group of appends, as it is written: what the writer tracks until the group's one
/// fsync.
struct Group {
    /// The spool's bytes, this group's included.
    used: u64,
    disk_room: Option<u64>,
    /// `next_offset` when the group began.
    start_offset: u64,
    /// Batches written, answered once the group is durable.
    planned: Vec<Planned>,
    /// Their records, for the tail cache.
    tail: Vec<StoredRecord>,
    /// Segments filled and closed within this group (new ones are marked `new`).
    closed: Vec<Active>,
    /// A segment was created: the directory needs an fsync.
    dir_dirty: bool,
    /// A segment's fsync failed while rolling: the group fails.
    sync_error: Option<SpoolFailure>,
}

/// What to answer for a batch written into a group.
enum Written {
    /// An empty batch: answered at once.
    Empty(AppendReceipt),
    /// Answered once the group is durable.
    Planned(AppendReceipt),
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>) -> Option<Writer> {
        let (active, next_offset) = {
            let st = shared.state.lock();
            let seg = st.segments.back()?;
            (
                Active {
                    base: seg.base,
                    count: seg.count,
                    len: seg.file_len,
                    path: seg.path.clone(),
                    file: seg.file.clone(),
                    new: false,
                    index: Vec::new(),
                },
                st.next_offset,
            )
        };
        Some(Writer {
            shared,
            active,
            next_offset,
            poisoned: None,
            buf: Vec::new(),
        })
    }

    pub(crate) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let mut close = None;
            let mut appends = Vec::new();
            let mut maintain = None;
            for req in group {
                match req {
                    Request::Append { batch, reply } => {
                        if close.is_some() {
                            let _ = reply.send(Err(SpoolError::Closed));
                        } else {
                            appends.push((batch, reply));
                        }
                    }
                    Request::Maintain { force } => maintain = Some(force || maintain == Some(true)),
                    Request::Close { reply } => close = Some(reply),
                }
            }
            if let Some(force) = maintain {
                self.maintain(force);
            }
            if !appends.is_empty() {
                self.append_group(appends);
            }
            if let Some(reply) = close {
                rx.close();
                while let Ok(req) = rx.try_recv() {
                    match req {
                        Request::Append { reply, .. } => {
                            let _ = reply.send(Err(SpoolError::Closed));
                        }
                        Request::Close { reply } => {
                            let _ = reply.send(());
                        }
                        Request::Maintain { .. } => {}
                    }
                }
                tracing::debug!(dir = %self.shared.config.dir.display(), "spool writer closed");
                // Everything is durable: let another process (or a reopen) have the directory.
                drop(self.shared.lock.lock().take());
                let _ = reply.send(());
                return;
            }
        }
    }

    /// If every sink has passed the whole log and the active segment holds records, starts a
    /// new empty segment so the old one can be deleted (its name keeps the next offset).
    /// Unless `force`d (at open, or when an append found the spool full), this waits until
    /// the active segment holds a quarter of `segment_bytes`, so that a dispatcher keeping up
    /// with the writer does not cause a new file per commit.
    fn maintain(&mut self, force: bool) -> bool {
        if self.poisoned.is_some() || self.active.count == 0 {
            return false;
        }
        if !force && self.active.len < self.shared.config.segment_bytes / 4 {
            return false;
        }
        let passed = {
            let st = self.shared.state.lock();
            st.min_cursor().is_some_and(|m| m >= self.next_offset)
        };
        if !passed {
            return false;
        }
        let dir = self.shared.config.dir.clone();
        let fs = &*self.shared.fs;
        let result = create_segment(fs, &dir, self.next_offset).and_then(|(path, file)| {
            if let Err(e) = sync_dir(fs, &dir) {
                // Not durable: undo, or a crash could leave a segment whose base is below
                // the records still appended to the current one.
                drop(file);
                let _ = fs.remove(&path);
                return Err(e);
            }
            Ok((path, file))
        });
        match result {
            Ok((path, file)) => {
                {
                    let mut st = self.shared.state.lock();
                    st.bytes += SEGMENT_HEADER_LEN as u64;
                    st.segments.push_back(Segment {
                        base: self.next_offset,
                        count: 0,
                        valid_len: SEGMENT_HEADER_LEN as u64,
                        file_len: SEGMENT_HEADER_LEN as u64,
                        path: path.clone(),
                        file: file.clone(),
                        index: Vec::new(),
                    });
                }
                self.active = Active {
                    base: self.next_offset,
                    count: 0,
                    len: SEGMENT_HEADER_LEN as u64,
                    path,
                    file,
                    new: false,
                    index: Vec::new(),
                };
                gc(&self.shared);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "could not roll the fully delivered segment");
                false
            }
        }
    }

    /// Stops the writer for good: after a failed fsync the page cache can no longer be
    /// trusted (what it reports as written may never reach the disk), so the only safe way
    /// on is to reopen and recover from the disk. Published through [`crate::Spool::failure`]
    /// so that the relay can report itself unhealthy and exit.
    fn poison(&mut self, reason: SpoolFailure) {
        tracing::error!(%reason, "spool writer stopped: appends fail until the spool is reopened");
        self.shared.failed.send_replace(Some(reason.clone()));
        self.poisoned = Some(reason);
    }

    fn append_group(&mut self, appends: Vec<(Vec<NewRecord>, Reply)>) {
        if let Some(reason) = &self.poisoned {
            for (_, reply) in appends {
                let _ = reply.send(Err(poison_err(&self.shared.config.dir, reason)));
            }
            return;
        }
        let mut g = Group {
            used: self.shared.state.lock().bytes,
            // What this group may still write before the file system's free space falls
            // below the reserve (one statvfs per group; unknown: no limit but `max_bytes`).
            disk_room: self.disk_room(),
            start_offset: self.next_offset,
            planned: Vec::new(),
            tail: Vec::new(),
            closed: Vec::new(),
            dir_dirty: false,
            sync_error: None,
        };
        for (batch, reply) in appends {
            if let Some(reason) = &self.poisoned {
                let _ = reply.send(Err(poison_err(&self.shared.config.dir, reason)));
                continue;
            }
            match self.write_batch(&mut g, batch) {
                Ok(Written::Empty(receipt)) => {
                    let _ = reply.send(Ok(receipt));
                }
                Ok(Written::Planned(receipt)) => g.planned.push(Planned { reply, receipt }),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        let dir = self.shared.config.dir.clone();
        if let Err(reason) = self.sync_group(&g) {
            if self.poisoned.is_none() {
                self.poison(reason.clone());
            }
            for p in g.planned {
                let _ = p.reply.send(Err(poison_err(&dir, &reason)));
            }
            return;
        }
        if self.next_offset != g.start_offset || g.dir_dirty {
            self.publish(&mut g);
        }
        for p in g.planned {
            let _ = p.reply.send(Ok(p.receipt));
        }
    }

    /// Free space left above the reserve, if the file system tells.
    fn disk_room(&self) -> Option<u64> {
        self.shared
            .fs
            .space(&self.shared.config.dir)
            .map(|(free, _)| free.saturating_sub(self.shared.min_free))
    }

    /// Writes one batch into the active segment (rolling to a new one first if it does
    /// not fit), unsynced; what to answer once the group is durable, or why not.
    fn write_batch(&mut self, g: &mut Group, batch: Vec<NewRecord>) -> Result<Written, SpoolError> {
        let batch_bytes = self.batch_bytes(&batch)?;
        if batch.is_empty() {
            return Ok(Written::Empty(AppendReceipt {
                first_offset: self.next_offset,
                last_offset: self.next_offset,
            }));
        }
        let (roll, extra) = self.make_room(g, batch_bytes)?;
        if roll {
            self.roll(g, extra)?;
        }
        let n = batch.len();
        let index = self.encode(&batch);
        if let Err(e) = self.active.file.write_all_at(&self.buf, self.active.len) {
            let err = io_err(&self.active.path, e);
            tracing::error!(error = %err, "spool write failed; batch rejected");
            if let Err(e2) = self.active.file.set_len(self.active.len) {
                self.poison(SpoolFailure::Undo {
                    path: self.active.path.clone(),
                    source: Arc::new(e2),
                });
            }
            return Err(err);
        }
        if self.buf.capacity() > 16 << 20 {
            // Do not keep a huge batch's buffer around.
            self.buf = Vec::new();
        }
        let receipt = AppendReceipt {
            first_offset: self.next_offset,
            last_offset: self.next_offset + n as u64 - 1,
        };
        for (i, r) in batch.into_iter().enumerate() {
            g.tail.push(StoredRecord {
                offset: self.next_offset + i as u64,
                kind: r.kind,
                accepted_at_ms: r.accepted_at_ms,
                payload: r.payload,
                attachment: r.attachment,
            });
        }
        self.active.len += batch_bytes;
        self.active.count += n as u64;
        self.active.index.extend(index);
        self.next_offset += n as u64;
        g.used += batch_bytes;
        if let Some(r) = g.disk_room.as_mut() {
            *r = r.saturating_sub(batch_bytes + extra);
        }
        Ok(Written::Planned(receipt))
    }

    /// The batch's bytes on disk; all or nothing: one record too large refuses it.
    fn batch_bytes(&self, batch: &[NewRecord]) -> Result<u64, SpoolError> {
        let max = self.shared.config.segment_bytes;
        let mut batch_bytes = 0u64;
        for r in batch {
            let size = encoded_len(r.payload.len());
            let body = (BODY_FIXED_LEN + r.payload.len()) as u64;
            if size + SEGMENT_HEADER_LEN as u64 > max || body > u64::from(u32::MAX) {
                return Err(SpoolError::RecordTooLarge { size, max });
            }
            batch_bytes += size;
        }
        Ok(batch_bytes)
    }

    /// Whether the batch needs a new segment (a batch never spans segments, so that
    /// recovery can keep or cut it whole) and the bytes that adds; `Full` if there is no
    /// room for it under `max_bytes` or the disk's reserve.
    fn make_room(&mut self, g: &mut Group, batch_bytes: u64) -> Result<(bool, u64), SpoolError> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let needs = |active: &Active| {
            let roll = active.len > SEGMENT_HEADER_LEN as u64
                && active.len + batch_bytes > config.segment_bytes;
            (roll, if roll { SEGMENT_HEADER_LEN as u64 } else { 0 })
        };
        let no_room = |used: u64, disk_room: Option<u64>, extra: u64| {
            used + batch_bytes + extra > config.max_bytes
                || disk_room.is_some_and(|r| r < batch_bytes + extra)
        };
        let (_, extra) = needs(&self.active);
        if no_room(g.used, g.disk_room, extra) && self.active.count > 0 {
            // Everything may have been delivered with the active segment still holding it.
            // (It only rolls if no batch of this group was written yet, so the published
            // byte count is then exact.)
            if self.maintain(true) {
                g.used = shared.state.lock().bytes;
                g.disk_room = self.disk_room();
            }
        }
        let (roll, extra) = needs(&self.active);
        if no_room(g.used, g.disk_room, extra) {
            if g.disk_room.is_some_and(|r| r < batch_bytes + extra) {
                tracing::warn!(
                    dir = %config.dir.display(),
                    min_free_bytes = shared.min_free,
                    "spool's file system is below its free-space reserve: append refused as full"
                );
            }
            return Err(SpoolError::Full {
                used: g.used,
                max: config.max_bytes,
            });
        }
        Ok((roll, extra))
    }

    /// Closes the active segment (durably: every segment but the last is always complete
    /// on disk, so damage found in an older segment at recovery is real corruption, never
    /// a torn write) and starts a new one at `next_offset`.
    fn roll(&mut self, g: &mut Group, extra: u64) -> Result<(), SpoolError> {
        if let Err(e) = self.active.file.sync_data() {
            let err = io_err(
                &self.active.path,
                std::io::Error::new(e.kind(), e.to_string()),
            );
            let reason = SpoolFailure::Fsync {
                path: self.active.path.clone(),
                source: Arc::new(e),
            };
            self.poison(reason.clone());
            g.sync_error = Some(reason);
            return Err(err);
        }
        let shared = self.shared.clone();
        match create_segment(&*shared.fs, &shared.config.dir, self.next_offset) {
            Ok((path, file)) => {
                let old = std::mem::replace(
                    &mut self.active,
                    Active {
                        base: self.next_offset,
                        count: 0,
                        len: SEGMENT_HEADER_LEN as u64,
                        path,
                        file,
                        new: true,
                        index: Vec::new(),
                    },
                );
                g.closed.push(old);
                g.dir_dirty = true;
                g.used += extra;
                Ok(())
            }
            Err(e) => {
                // `create_segment` removed what it created.
                tracing::error!(error = %e, "could not create a new spool segment");
                Err(e)
            }
        }
    }

    /// Encodes `batch` into `buf` at the active segment's end; the index entries it adds.
    fn encode(&mut self, batch: &[NewRecord]) -> Vec<IndexEntry> {
        self.buf.clear();
        let mut index = Vec::new();
        let mut pos = self.active.len;
        let n = batch.len();
        for (i, r) in batch.iter().enumerate() {
            let offset = self.next_offset + i as u64;
            let rel = self.active.count + i as u64;
            if rel.is_multiple_of(INDEX_EVERY) {
                index.push(IndexEntry {
                    rel,
                    pos,
                    accepted_at_ms: r.accepted_at_ms,
                });
            }
            let flags = if i + 1 == n { FLAG_BATCH_END } else { 0 };
            encode_record(
                &mut self.buf,
                offset,
                r.kind,
                flags,
                r.accepted_at_ms,
                &r.payload,
            );
            pos += (RECORD_OVERHEAD + r.payload.len()) as u64;
        }
        index
    }

    /// One fsync for the whole group (segments closed during it were synced when they
    /// were closed), plus the directory if a segment was created.
    fn sync_group(&mut self, g: &Group) -> Result<(), SpoolFailure> {
        if let Some(reason) = &g.sync_error {
            return Err(reason.clone());
        }
        if let Err(e) = self.active.file.sync_data() {
            return Err(SpoolFailure::Fsync {
                path: self.active.path.clone(),
                source: Arc::new(e),
            });
        }
        if g.dir_dirty {
            if let Err(e) = sync_dir(&*self.shared.fs, &self.shared.config.dir) {
                return Err(SpoolFailure::DirSync {
                    source: Arc::new(e),
                });
            }
        }
        Ok(())
    }

    /// Makes the group's records visible to readers: segments grown or created, the new
    /// end, the tail cache; wakes the dispatchers.
    fn publish(&mut self, g: &mut Group) {
        {
            let mut st = self.shared.state.lock();
            for a in g.closed.iter_mut().chain(std::iter::once(&mut self.active)) {
                let index = std::mem::take(&mut a.index);
                if a.new {
                    a.new = false;
                    st.bytes += SEGMENT_HEADER_LEN as u64;
                    st.segments.push_back(Segment {
                        base: a.base,
                        count: 0,
                        valid_len: SEGMENT_HEADER_LEN as u64,
                        file_len: SEGMENT_HEADER_LEN as u64,
                        path: a.path.clone(),
                        file: a.file.clone(),
                        index: Vec::new(),
                    });
                }
                let Some(seg) = st.segments.iter_mut().rev().find(|s| s.base == a.base) else {
                    continue;
                };
                let grown = a.len.saturating_sub(seg.file_len);
                seg.count = a.count;
                seg.valid_len = a.len;
                seg.file_len = a.len;
                seg.index.extend(index);
                st.bytes += grown;
            }
            st.next_offset = self.next_offset;
            st.push_tail(std::mem::take(&mut g.tail));
        }
        self.shared.next_tx.send_replace(self.next_offset);
        self.shared.group_commits.fetch_add(1, Ordering::Relaxed);
        self.shared
            .appended_batches
            .fetch_add(g.planned.len() as u64, Ordering::Relaxed);
    }
}

fn poison_err(dir: &std::path::Path, reason: &SpoolFailure) -> SpoolError {
    io_err(
        dir,
        std::io::Error::other(format!(
            "spool writer stopped after an earlier failure ({reason}); reopen the spool"
        )),
    )
}
