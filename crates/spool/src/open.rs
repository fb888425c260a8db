//! Opening a spool: the directory lock, the scan of every segment (a torn or damaged tail
//! is cut, intact records behind damage in the last segment are kept), the cursors.

use super::*;

/// Takes the directory's exclusive lock (`flock` on `<dir>/LOCK`, see [`fs::RealFs`]);
/// `Locked` if another holder keeps it.
pub(super) fn lock_dir(
    fs: &dyn fs::Fs,
    dir: &Path,
) -> Result<Box<dyn std::any::Any + Send>, SpoolError> {
    let path = dir.join("LOCK");
    fs.lock(&path)
        .map_err(|e| io_err(&path, e))?
        .ok_or_else(|| SpoolError::Locked {
            path: dir.to_path_buf(),
        })
}

pub(super) fn open_blocking(
    config: SpoolConfig,
    fs: Arc<dyn fs::Fs>,
) -> Result<Shared, SpoolError> {
    let fsr: &dyn fs::Fs = &*fs;
    let dir = config.dir.clone();
    check_config(&config)?;
    let lock = prepare_dir(fsr, &dir)?;
    let (mut segments, mut bytes) = recover_segments(fsr, &dir)?;
    let end = segments.back().map_or(0, |s| s.end());
    let (loaded, seq, rewrite, next_offset) = load_cursors(fsr, &dir, end);
    if segments.back().is_none_or(|s| s.end() < next_offset) {
        bytes += new_tail_segment(fsr, &dir, next_offset, &mut segments)?;
    }
    let first_offset = segments.front().map_or(next_offset, |s| s.base);
    let durable = place_cursors(&config.sinks, &loaded, first_offset, next_offset);
    if !cursors::fits(&durable) {
        return Err(SpoolError::Corrupt {
            path: dir.join(cursors::FILE_NAME),
            reason: format!(
                "{} sinks do not fit the cursor file (at most about 200 with 64-character names)",
                durable.len()
            ),
        });
    }
    let cursor_file = write_cursors(fsr, &dir, seq, rewrite, &durable)?;
    let min_free = config.min_free_bytes.unwrap_or_else(|| {
        fsr.space(&dir)
            .map_or(0, |(_, total)| (total / 10).min(DEFAULT_MIN_FREE_CAP))
    });

    tracing::info!(
        dir = %dir.display(),
        segments = segments.len(),
        bytes,
        first_offset,
        next_offset,
        "spool opened"
    );
    let (next_tx, _) = watch::channel(next_offset);
    let (failed, _) = watch::channel(None);
    let shared = Shared {
        config,
        fs,
        failed,
        state: Mutex::new(State {
            segments,
            next_offset,
            bytes,
            requested: durable.clone(),
            durable,
            generation: 0,
            tail: VecDeque::new(),
            tail_bytes: 0,
        }),
        next_tx,
        closed: AtomicBool::new(false),
        cursor_file: Mutex::new(cursor_file),
        min_free,
        persisted: AtomicU64::new(0),
        group_commits: AtomicU64::new(0),
        appended_batches: AtomicU64::new(0),
        lock: Mutex::new(Some(lock)),
    };
    gc(&shared);
    Ok(shared)
}

/// The bounds a spool's segments need.
fn check_config(config: &SpoolConfig) -> Result<(), SpoolError> {
    let dir = &config.dir;
    let min_segment = (record::SEGMENT_HEADER_LEN + record::RECORD_OVERHEAD + 1) as u64;
    if config.segment_bytes < min_segment || config.max_bytes < config.segment_bytes {
        return Err(io_err(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "invalid spool config: need segment_bytes >= {min_segment} and max_bytes >= segment_bytes (got {} and {})",
                    config.segment_bytes, config.max_bytes
                ),
            ),
        ));
    }
    Ok(())
}

/// Creates the directory (durably), takes its lock and drops a cursor file left half
/// written.
fn prepare_dir(fsr: &dyn fs::Fs, dir: &Path) -> Result<Box<dyn std::any::Any + Send>, SpoolError> {
    let existed = fsr.is_dir(dir);
    fsr.create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    if !existed {
        // Make the new directory's own entry durable.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            cursors::sync_dir(fsr, parent)?;
        }
    }
    let lock = lock_dir(fsr, dir)?;
    let _ = fsr.remove(&dir.join("cursors.tmp"));

    Ok(lock)
}

/// Every segment on disk, scanned in order (a damaged one's intact rest becomes the last
/// segment), and their bytes.
fn recover_segments(fsr: &dyn fs::Fs, dir: &Path) -> Result<(VecDeque<Segment>, u64), SpoolError> {
    let mut bases = Vec::new();
    for name in fsr.list(dir).map_err(|e| io_err(dir, e))? {
        if let Some(base) = segment::parse_segment_name(&name) {
            bases.push(base);
        } else if name.ends_with(".seg.tmp") {
            // A repair that did not finish: the damaged segment it came from still holds it.
            let _ = fsr.remove(&dir.join(&name));
        }
    }
    bases.sort_unstable();

    let mut segments: VecDeque<Segment> = VecDeque::new();
    let mut bytes = 0u64;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment::segment_path(dir, base);
        let is_last = i + 1 == bases.len();
        let scanned = scan_segment(fsr, &path, base, is_last)?;
        if let Some(prev) = segments.back() {
            if scanned.segment.base < prev.end() {
                return Err(SpoolError::Corrupt {
                    path,
                    reason: format!(
                        "segment starts at offset {} but the previous one ends at {}",
                        scanned.segment.base,
                        prev.end()
                    ),
                });
            }
        }
        if let Some((pos, reason)) = scanned.damage {
            let next_base = bases.get(i + 1).copied();
            tracing::error!(
                path = %path.display(),
                position = pos,
                reason,
                first_lost_offset = scanned.segment.end(),
                lost_records = next_base.map(|n| n.saturating_sub(scanned.segment.end())),
                lost_bytes = scanned.segment.file_len.saturating_sub(pos),
                "corrupt record in the middle of an older spool segment: the records after it in this segment are skipped (file left untouched)"
            );
        }
        bytes += scanned.segment.file_len;
        let rest = scanned.rest;
        let from = scanned.segment.file.clone();
        segments.push_back(scanned.segment);
        if let Some(rest) = rest {
            // The intact records behind a damaged one become the last segment; the damaged
            // one is an older segment from now on (its valid prefix served, the rest skipped).
            segment::write_rest(fsr, dir, &*from, &rest)?;
            let path = segment::segment_path(dir, rest.first_offset);
            let scanned = scan_segment(fsr, &path, rest.first_offset, true)?;
            bytes += scanned.segment.file_len;
            segments.push_back(scanned.segment);
        }
    }
    Ok((segments, bytes))
}

/// The cursors on disk (none if the file is damaged: every sink starts over at the
/// oldest record), the file's sequence, whether it must be written anew, and the next
/// offset: the recovered `end`, or beyond it where a cursor is.
fn load_cursors(fsr: &dyn fs::Fs, dir: &Path, end: u64) -> (BTreeMap<String, u64>, u64, bool, u64) {
    let mut next_offset = end;
    let (loaded, seq, rewrite) = match cursors::load(fsr, dir) {
        Ok(Some(l)) => (l.cursors, l.seq, l.rewrite),
        Ok(None) => (BTreeMap::new(), 0, true),
        Err(e) => {
            tracing::error!(error = %e, "spool cursor file damaged: every sink restarts at the oldest retained record (duplicates possible)");
            (BTreeMap::new(), 0, true)
        }
    };
    if let Some(max_cursor) = loaded.values().copied().max() {
        if max_cursor > next_offset {
            tracing::error!(
                max_cursor,
                recovered_end = next_offset,
                "a sink's cursor is beyond the recovered end of the spool (acknowledged data lost on disk?); continuing at the cursor so offsets are not reused"
            );
            next_offset = max_cursor;
        }
    }
    (loaded, seq, rewrite, next_offset)
}

/// A new, empty last segment at `next_offset`; its bytes.
fn new_tail_segment(
    fsr: &dyn fs::Fs,
    dir: &Path,
    next_offset: u64,
    segments: &mut VecDeque<Segment>,
) -> Result<u64, SpoolError> {
    let (path, file) = segment::create_segment(fsr, dir, next_offset)?;
    cursors::sync_dir(fsr, dir)?;
    segments.push_back(Segment {
        base: next_offset,
        count: 0,
        valid_len: record::SEGMENT_HEADER_LEN as u64,
        file_len: record::SEGMENT_HEADER_LEN as u64,
        path,
        file,
        index: Vec::new(),
    });
    Ok(record::SEGMENT_HEADER_LEN as u64)
}

/// Each configured sink's cursor: where it was, kept within the retained records; a new
/// sink at the oldest.
fn place_cursors(
    sinks: &[String],
    loaded: &BTreeMap<String, u64>,
    first_offset: u64,
    next_offset: u64,
) -> BTreeMap<String, u64> {
    let mut durable = BTreeMap::new();
    for sink in sinks {
        let cursor = match loaded.get(sink) {
            Some(&c) if c < first_offset => {
                tracing::warn!(
                    sink,
                    cursor = c,
                    first_offset,
                    "sink cursor below the oldest retained record; moved up"
                );
                first_offset
            }
            Some(&c) => c.min(next_offset),
            None => {
                tracing::info!(
                    sink,
                    first_offset,
                    "new sink starts at the oldest retained record"
                );
                first_offset
            }
        };
        durable.insert(sink.clone(), cursor);
    }
    for sink in loaded.keys().filter(|s| !durable.contains_key(*s)) {
        tracing::info!(sink, "sink no longer configured; its cursor is dropped");
    }
    durable
}

/// Writes the cursors where they now are (a new file when `rewrite`), after making every
/// directory entry found durable; the open cursor file.
fn write_cursors(
    fsr: &dyn fs::Fs,
    dir: &Path,
    seq: u64,
    rewrite: bool,
    durable: &BTreeMap<String, u64>,
) -> Result<cursors::CursorFile, SpoolError> {
    // A file in the slot format is written in place (no new space needed, so a spool on a
    // full disk still opens); a missing or legacy one is created.
    if rewrite {
        cursors::create(fsr, dir, seq, durable)?;
    }
    // Every entry found must be durable before anything is appended to it: an earlier run
    // may have created a segment and then failed (or died) before its directory fsync.
    cursors::sync_dir(fsr, dir)?;
    let mut cursor_file = cursors::CursorFile::open(fsr, dir, seq)?;
    if !rewrite {
        cursor_file.store(durable)?;
    }
    Ok(cursor_file)
}
