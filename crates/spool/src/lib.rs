//! `relay-spool`: the durable log between ingress and sinks. (API contract; the
//! implementation lands under issue 3.)
//!
//! Records get consecutive logical offsets starting at 0 for a new spool. Each configured
//! sink has its own cursor: the offset of the next record it has not yet had confirmed.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A serialized `relay_envelope::Envelope` (JSON).
    Envelope = 1,
    /// A serialized `relay_envelope::DeadLetter` (JSON).
    DeadLetter = 2,
}

/// A record to append.
#[derive(Clone, Debug)]
pub struct NewRecord {
    pub kind: RecordKind,
    /// When the relay accepted it, ms since the Unix epoch (for latency and age metrics).
    pub accepted_at_ms: u64,
    pub payload: Bytes,
}

/// A record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub kind: RecordKind,
    pub accepted_at_ms: u64,
    pub payload: Bytes,
}

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
}

/// Handle to an open spool; cheap to clone, shared by all tasks.
#[derive(Clone)]
pub struct Spool {
    _private: (),
}

impl Spool {
    /// Opens (creating if needed) and recovers the spool: a torn or corrupt tail is cut.
    pub async fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        let _ = config;
        Err(SpoolError::Closed)
    }

    /// Appends a batch; returns only once it is durable (group commit: concurrent appends
    /// share an fsync). All or nothing.
    pub async fn append(&self, batch: Vec<NewRecord>) -> Result<AppendReceipt, SpoolError> {
        let _ = batch;
        Err(SpoolError::Closed)
    }

    /// Up to `max` records starting at `from` (fewer, or none, if the log ends first).
    pub async fn read(&self, from: u64, max: usize) -> Result<Vec<StoredRecord>, SpoolError> {
        let _ = (from, max);
        Err(SpoolError::Closed)
    }

    /// Waits until a record at `offset` exists or `timeout` passes; true if it exists.
    pub async fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        let _ = (offset, timeout);
        false
    }

    /// The sink's cursor: the next offset it has not had confirmed.
    pub fn cursor(&self, sink: &str) -> Result<u64, SpoolError> {
        Err(SpoolError::UnknownSink(sink.to_string()))
    }

    /// Durably moves the sink's cursor to `next` and deletes segments every sink has passed.
    pub async fn commit(&self, sink: &str, next: u64) -> Result<(), SpoolError> {
        let _ = next;
        Err(SpoolError::UnknownSink(sink.to_string()))
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            bytes: 0,
            max_bytes: 0,
            records: 0,
            segments: 0,
            first_offset: 0,
            next_offset: 0,
            sinks: Vec::new(),
        }
    }

    /// Stops accepting appends; pending appends finish first.
    pub async fn close(&self) {}
}
