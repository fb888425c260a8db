//! The embedded default sink: one NDJSON line per record, to rotating files or stdout.
//!
//! Files are `<dir>/<sink name>-<UTC timestamp>-<seq>.ndjson`, e.g.
//! `events-20251122T031500Z-000007.ndjson`. `seq` continues from the highest one already in
//! the directory, so names never collide across restarts; they sort by creation time (and
//! the pruning of old files, `max_files`, goes by `seq`, immune to clock changes).
//!
//! Each line is the record's JSON as spooled ([`Message::json`]): envelopes and dead
//! letters alike. A record is confirmed only once its line is written and, with
//! `fsync = true` (the default), synced to disk. A new file is started when the next line
//! would take the current one past `max_file_bytes` (a single line larger than that gets a
//! file of its own). All I/O runs on tokio's blocking pool.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;

use crate::{Message, PublishError, Reason, Sink};

/// `[sinks.<name>]` with `type = "file"`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    /// An existing, writable directory, or `-` for stdout.
    pub path: String,
    /// Rotate before a file would exceed this many bytes. Default 64 MiB.
    pub max_file_bytes: u64,
    /// Keep at most this many files of this sink (the current one included), deleting the
    /// oldest. Default: keep all.
    pub max_files: Option<usize>,
    /// fsync each batch before confirming it. Default true.
    pub fsync: bool,
}

/// Every default of `FileSinkConfig` is here (a required setting is empty: `validate()` says so).
impl Default for FileSinkConfig {
    fn default() -> Self {
        FileSinkConfig {
            path: String::new(),
            max_file_bytes: 64 * 1024 * 1024,
            max_files: Default::default(),
            fsync: true,
        }
    }
}

impl FileSinkConfig {
    /// A config with every default, writing to `path`.
    pub fn new(path: impl Into<String>) -> Self {
        FileSinkConfig {
            path: path.into(),
            ..FileSinkConfig::default()
        }
    }

    /// The one check of the settings (no file system access): [`FileSink::open`] and
    /// `activity-relay run --check` call it.
    pub fn validate(&self, name: &str) -> Result<(), FileSinkError> {
        let bad = |detail: &str| FileSinkError::Config {
            sink: name.to_owned(),
            detail: detail.to_owned(),
        };
        if self.path.is_empty() {
            return Err(bad("path is required (a directory, or \"-\" for stdout)"));
        }
        if self.max_file_bytes == 0 {
            return Err(bad("max_file_bytes must be at least 1"));
        }
        if self.max_files == Some(0) {
            return Err(bad(
                "max_files must be at least 1 (or absent to keep all files)",
            ));
        }
        Ok(())
    }
}

/// Why the file sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("file sink {sink:?}: directory {path:?} does not exist")]
    MissingDirectory { sink: String, path: PathBuf },
    #[error("file sink {sink:?}: {path:?} is not a directory")]
    NotADirectory { sink: String, path: PathBuf },
    #[error("file sink {sink:?}: cannot create a file in {path:?}: {source}")]
    NotWritable {
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("file sink {sink:?}: cannot read directory {path:?}: {source}")]
    Io {
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("file sink {sink:?}: invalid configuration: {detail}")]
    Config { sink: String, detail: String },
    #[error("sink {sink:?}: cannot create directory {}: {source}", path.display())]
    CreateDir {
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `type = "file"`: the [`SinkType`](crate::registry::SinkType) of the file sink.
pub struct FileSinkType;

impl crate::registry::SinkType for FileSinkType {
    const TYPE: &'static str = "file";
    type Config = FileSinkConfig;
    type Error = FileSinkError;
    type Sink = FileSink;

    /// The settings, and the directory if it exists (`run` creates a missing one).
    fn check(name: &str, cfg: &FileSinkConfig) -> Result<String, FileSinkError> {
        cfg.validate(name)?;
        if cfg.path == "-" {
            return Ok("file: stdout".to_string());
        }
        let path = PathBuf::from(&cfg.path);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Ok(format!("file: {}", cfg.path)),
            Ok(_) => Err(FileSinkError::NotADirectory {
                sink: name.to_string(),
                path,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(format!("file: {} (will be created)", cfg.path))
            }
            Err(source) => Err(FileSinkError::Io {
                sink: name.to_string(),
                path,
                source,
            }),
        }
    }

    /// Creates the directory if it is missing.
    fn prepare(name: &str, cfg: &FileSinkConfig) -> Result<(), FileSinkError> {
        if cfg.path == "-" {
            return Ok(());
        }
        std::fs::create_dir_all(&cfg.path).map_err(|source| FileSinkError::CreateDir {
            sink: name.to_string(),
            path: PathBuf::from(&cfg.path),
            source,
        })
    }

    async fn connect(name: &str, cfg: &FileSinkConfig) -> Result<FileSink, FileSinkError> {
        FileSink::open(name, cfg)
    }
}

/// The file (or stdout) sink. See the module docs.
pub struct FileSink {
    name: String,
    inner: Arc<Mutex<Writer>>,
    healthy: Arc<AtomicBool>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("name", &self.name)
            .finish()
    }
}

enum Writer {
    Stdout,
    Dir(DirWriter),
}

struct DirWriter {
    dir: PathBuf,
    /// File name prefix: the sink name, made file-name safe, plus `-`.
    prefix: String,
    max_file_bytes: u64,
    max_files: Option<usize>,
    fsync: bool,
    next_seq: u64,
    current: Option<Current>,
}

struct Current {
    file: File,
    path: PathBuf,
    len: u64,
}

impl FileSink {
    /// Opens the sink: checks that the directory exists and is writable, and creates the
    /// first file in it.
    pub fn open(name: &str, cfg: &FileSinkConfig) -> Result<FileSink, FileSinkError> {
        cfg.validate(name)?;
        let writer = if cfg.path == "-" {
            Writer::Stdout
        } else {
            let dir = PathBuf::from(&cfg.path);
            match std::fs::metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(FileSinkError::NotADirectory {
                        sink: name.to_owned(),
                        path: dir,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(FileSinkError::MissingDirectory {
                        sink: name.to_owned(),
                        path: dir,
                    })
                }
                Err(source) => {
                    return Err(FileSinkError::Io {
                        sink: name.to_owned(),
                        path: dir,
                        source,
                    })
                }
            }
            let prefix = format!("{}-", file_safe(name));
            let next_seq = existing_files(&dir, &prefix)
                .map_err(|source| FileSinkError::Io {
                    sink: name.to_owned(),
                    path: dir.clone(),
                    source,
                })?
                .last()
                .map_or(0, |(seq, _)| seq + 1);
            let mut w = DirWriter {
                dir: dir.clone(),
                prefix,
                max_file_bytes: cfg.max_file_bytes,
                max_files: cfg.max_files,
                fsync: cfg.fsync,
                next_seq,
                current: None,
            };
            w.rotate().map_err(|source| FileSinkError::NotWritable {
                sink: name.to_owned(),
                path: dir,
                source,
            })?;
            Writer::Dir(w)
        };
        Ok(FileSink {
            name: name.to_owned(),
            inner: Arc::new(Mutex::new(writer)),
            healthy: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The file currently written to (`None` for stdout).
    pub fn current_path(&self) -> Option<PathBuf> {
        match &*self.inner.lock() {
            Writer::Stdout => None,
            Writer::Dir(w) => w.current.as_ref().map(|c| c.path.clone()),
        }
    }
}

/// Replaces every character outside `[A-Za-z0-9._-]` by `_`.
fn file_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// `(seq, path)` of this sink's files in `dir`, by ascending seq.
fn existing_files(dir: &Path, prefix: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_file_name(name, prefix) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// `<prefix><YYYYMMDDTHHMMSSZ>-<digits>.ndjson` → seq. Strict, so that sink `a` does not
/// claim the files of sink `a-1`.
fn parse_file_name(name: &str, prefix: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(".ndjson")?;
    let (ts, seq) = rest.split_once('-')?;
    let ts_ok = ts.len() == 16
        && ts.char_indices().all(|(i, c)| match i {
            8 => c == 'T',
            15 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    if !ts_ok || seq.len() < 6 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}

impl DirWriter {
    /// Closes the current file (synced) and starts the next one; prunes old files. An
    /// error means the lines written to the current file since its last sync are not known
    /// to be durable (and it is not written to again: after a failed fsync the page cache
    /// cannot be trusted), or that the new file's directory entry is not.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(cur) = self.current.take() {
            if self.fsync {
                cur.file.sync_all()?;
            }
        }
        let ts = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        loop {
            let path = self
                .dir
                .join(format!("{}{ts}-{:06}.ndjson", self.prefix, self.next_seq));
            self.next_seq += 1;
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    if self.fsync {
                        // The new directory entry must be durable too, or the lines confirmed
                        // in this file could vanish with it.
                        File::open(&self.dir).and_then(|d| d.sync_all())?;
                    }
                    tracing::debug!(path = %path.display(), "file sink: new file");
                    self.current = Some(Current { file, path, len: 0 });
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        self.prune();
        Ok(())
    }

    fn prune(&self) {
        let Some(max) = self.max_files else { return };
        let files = match existing_files(&self.dir, &self.prefix) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "file sink: cannot list files to prune");
                return;
            }
        };
        let excess = files.len().saturating_sub(max);
        for (_, path) in files.into_iter().take(excess) {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "file sink: removed old file"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "file sink: cannot remove old file")
                }
            }
        }
    }

    /// Writes the lines in order, then syncs; returns how many were confirmed and, when
    /// not all, the error that stopped it.
    ///
    /// A line counts as confirmed only once the file it is in was synced: when the batch
    /// fills a file, at the rotation; otherwise at the end of the batch.
    fn write_batch(&mut self, lines: &[Bytes]) -> (usize, Option<std::io::Error>) {
        // Lines durable so far, and lines written to the current file since its last sync.
        let mut confirmed = 0;
        let mut pending = 0;
        let mut failure = None;
        for line in lines {
            let needed = line.len() as u64 + 1;
            let must_rotate = match &self.current {
                None => true,
                Some(cur) => cur.len > 0 && cur.len + needed > self.max_file_bytes,
            };
            if must_rotate {
                if let Err(e) = self.rotate() {
                    // The lines in the file being closed are not known to be durable.
                    return (confirmed, Some(e));
                }
                confirmed += pending;
                pending = 0;
            }
            if let Err(e) = self.write_line(line) {
                failure = Some(e);
                break;
            }
            pending += 1;
        }
        if pending > 0 {
            match self.sync_data() {
                Ok(()) => confirmed += pending,
                Err(e) => {
                    // Not durable. Start a fresh file next time: after a failed fsync the
                    // page cache state is unknown.
                    self.current = None;
                    failure = Some(e);
                }
            }
        }
        (confirmed, failure)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        match &self.current {
            Some(cur) if self.fsync => cur.file.sync_data(),
            _ => Ok(()),
        }
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let needed = line.len() as u64 + 1;
        let Some(cur) = self.current.as_mut() else {
            return Err(std::io::Error::other("no current file"));
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        match cur.file.write_all(&buf) {
            Ok(()) => {
                cur.len += needed;
                Ok(())
            }
            Err(e) => {
                // Do not leave a torn line for the next one to be glued to: cut the file
                // back to the last whole line, or abandon it if that fails too.
                if cur.file.set_len(cur.len).is_err() {
                    self.current = None;
                }
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        match &self.current {
            Some(cur) if self.fsync => cur.file.sync_all(),
            _ => Ok(()),
        }
    }
}

fn write_stdout(lines: &[Bytes]) -> (usize, Option<std::io::Error>) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut written = 0;
    for line in lines {
        if let Err(e) = out.write_all(line).and_then(|()| out.write_all(b"\n")) {
            return (written, Some(e));
        }
        written += 1;
    }
    match out.flush() {
        Ok(()) => (written, None),
        Err(e) => (0, Some(e)),
    }
}

fn io_error(e: &std::io::Error) -> PublishError {
    let reason = match e.kind() {
        std::io::ErrorKind::StorageFull => Reason::DiskFull,
        std::io::ErrorKind::PermissionDenied => Reason::PermissionDenied,
        std::io::ErrorKind::NotFound => Reason::NotFound,
        _ => Reason::Io,
    };
    PublishError::retryable(reason, e.to_string())
}

#[async_trait::async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let lines: Vec<Bytes> = batch.iter().map(|m| m.json.clone()).collect();
        let inner = Arc::clone(&self.inner);
        let outcome = tokio::task::spawn_blocking(move || match &mut *inner.lock() {
            Writer::Stdout => write_stdout(&lines),
            Writer::Dir(w) => w.write_batch(&lines),
        })
        .await;
        let (written, failure) = match outcome {
            Ok(r) => r,
            Err(e) => (
                0,
                Some(std::io::Error::other(format!("writer task failed: {e}"))),
            ),
        };
        self.healthy.store(failure.is_none(), Ordering::Relaxed);
        if let Some(e) = &failure {
            tracing::warn!(sink = %self.name, error = %e, written, failed = batch.len() - written, "file sink: write failed");
        }
        let err = failure.as_ref().map(io_error);
        (0..batch.len())
            .map(|i| match &err {
                Some(e) if i >= written => Err(e.clone()),
                _ => Ok(()),
            })
            .collect()
    }

    async fn ready(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    async fn close(&self) -> Result<(), PublishError> {
        let inner = Arc::clone(&self.inner);
        let r = tokio::task::spawn_blocking(move || match &mut *inner.lock() {
            Writer::Stdout => std::io::stdout().flush(),
            Writer::Dir(w) => w.sync(),
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(format!("writer task failed: {e}"))));
        r.map_err(|e| io_error(&e))
    }
}
