//! Segment files: naming, creation, positional reads and the recovery scan.

use std::io;
use std::path::{Path, PathBuf};

use crate::fs::{Fs, FsFile, SharedFile};
use crate::record::{
    decode_record, decode_segment_header, encode_segment_header, Decoded, DecodedRecord,
    FLAG_BATCH_END, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::{io_err, SpoolError};

/// Every `INDEX_EVERY`-th record of a segment has an index entry.
pub(crate) const INDEX_EVERY: u64 = 32;
/// Bytes read from a segment file at a time.
const CHUNK: usize = 256 * 1024;
/// Largest record body accepted from disk. Reads never go past the segment's valid length,
/// so a damaged length field costs at most one read to the end of the file.
pub(crate) const MAX_BODY_ON_DISK: u64 = u32::MAX as u64;
const SUFFIX: &str = ".seg";

/// A sparse index entry: the record `base + rel` starts at byte `pos`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexEntry {
    pub rel: u64,
    pub pos: u64,
    pub accepted_at_ms: u64,
}

/// A segment as known to readers (only durable, published records).
pub(crate) struct Segment {
    pub base: u64,
    /// Valid records, `base..base + count`.
    pub count: u64,
    /// End of the last valid record: readers never read past it.
    pub valid_len: u64,
    /// Size of the file on disk (what counts against `max_bytes`).
    pub file_len: u64,
    pub path: PathBuf,
    pub file: SharedFile,
    pub index: Vec<IndexEntry>,
}

impl Segment {
    pub fn end(&self) -> u64 {
        self.base + self.count
    }

    /// The first index entry after record `offset`, if the segment has one.
    pub fn entry_after(&self, offset: u64) -> Option<IndexEntry> {
        let rel = offset.saturating_sub(self.base);
        let i = self.index.partition_point(|e| e.rel <= rel);
        self.index.get(i).copied()
    }

    /// The index entry at or before record `offset` (which must be within the segment).
    pub fn entry_for(&self, offset: u64) -> IndexEntry {
        let rel = offset.saturating_sub(self.base);
        let i = self.index.partition_point(|e| e.rel <= rel);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(e) => *e,
            None => IndexEntry {
                rel: 0,
                pos: SEGMENT_HEADER_LEN as u64,
                accepted_at_ms: 0,
            },
        }
    }
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SUFFIX}"))
}

/// The base offset encoded in a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Creates a new segment file holding only its header and fsyncs it (the caller fsyncs the
/// directory).
///
/// On failure nothing is left behind: a file that was created is removed again, so that a
/// failed roll never leaves a segment whose base is below records appended afterwards.
pub(crate) fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    base: u64,
) -> Result<(PathBuf, SharedFile), SpoolError> {
    let path = segment_path(dir, base);
    let file = fs.open(&path, true).map_err(|e| io_err(&path, e))?;
    let written = file
        .write_all_at(&encode_segment_header(base), 0)
        .and_then(|()| file.sync_data());
    if let Err(e) = written {
        drop(file);
        if let Err(rm) = fs.remove(&path) {
            tracing::warn!(path = %path.display(), error = %rm, "could not remove a segment whose creation failed");
        }
        return Err(io_err(&path, e));
    }
    Ok((path, file))
}

/// One step of a [`FrameReader`].
pub(crate) enum Frame {
    Record {
        record: DecodedRecord,
        /// Position just after the frame.
        end: u64,
    },
    /// The reader reached its end exactly at a frame boundary.
    End,
    /// The bytes up to the end stop inside a frame.
    Torn,
    Corrupt(&'static str),
}

/// Sequential frame decoding over positional reads of `pos..end` of a file.
pub(crate) struct FrameReader<'a> {
    file: &'a dyn FsFile,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_pos: u64,
}

impl<'a> FrameReader<'a> {
    pub fn new(file: &'a dyn FsFile, pos: u64, end: u64) -> Self {
        FrameReader {
            file,
            pos,
            end,
            buf: Vec::new(),
            buf_pos: pos,
        }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Decodes the frame at the current position as the record at logical `offset`.
    pub fn next(&mut self, offset: u64) -> io::Result<Frame> {
        loop {
            if self.pos >= self.end {
                return Ok(Frame::End);
            }
            let rel = usize::try_from(self.pos - self.buf_pos).unwrap_or(usize::MAX);
            let avail = self.buf.get(rel..).unwrap_or(&[]);
            match decode_record(avail, offset, MAX_BODY_ON_DISK) {
                Decoded::Record { record, len } => {
                    self.pos += len as u64;
                    return Ok(Frame::Record {
                        record,
                        end: self.pos,
                    });
                }
                Decoded::Corrupt(reason) => return Ok(Frame::Corrupt(reason)),
                Decoded::Incomplete { needed } => {
                    let have = avail.len() as u64;
                    if self.pos + have >= self.end {
                        return Ok(Frame::Torn);
                    }
                    let want = needed.unwrap_or(0).max(CHUNK) as u64;
                    let len = want.min(self.end - self.pos);
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    self.buf.clear();
                    self.buf.resize(len, 0);
                    self.buf_pos = self.pos;
                    let mut filled = 0;
                    while filled < len {
                        match self
                            .file
                            .read_at(&mut self.buf[filled..], self.pos + filled as u64)
                        {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    if filled < len {
                        // The file is shorter than expected: whatever is there is all there is.
                        self.buf.truncate(filled);
                        self.end = self.pos + filled as u64;
                    }
                }
            }
        }
    }
}

/// Where the frame after the damaged one at `at` starts (from its length field), when a
/// valid record for `offset + 1` is there.
pub(crate) fn valid_frame_after(
    file: &dyn FsFile,
    at: u64,
    file_len: u64,
    offset: u64,
) -> Option<u64> {
    let mut len = [0u8; 4];
    file.read_exact_at(&mut len, at).ok()?;
    let next = at + FRAME_HEADER_LEN as u64 + u64::from(u32::from_le_bytes(len));
    if next >= file_len {
        return None;
    }
    matches!(
        FrameReader::new(file, next, file_len).next(offset + 1),
        Ok(Frame::Record { .. })
    )
    .then_some(next)
}

/// The position of the frame of the record at `offset` between `from` and `to`, searched
/// byte by byte (after a damaged length field, where it starts is unknown): the checksum
/// covers the offset, so no other bytes pass for it. At most 4 MiB are searched.
pub(crate) fn find_frame(file: &dyn FsFile, from: u64, to: u64, offset: u64) -> Option<u64> {
    let buf = read_range(file, from, to.min(from.saturating_add(4 << 20)));
    (0..buf.len())
        .find(|p| {
            matches!(
                decode_record(&buf[*p..], offset, MAX_BODY_ON_DISK),
                Decoded::Record { .. }
            )
        })
        .map(|p| from + p as u64)
}

/// The bytes of `file` in `from..to`, as many as can be read (a short or failed read ends
/// them early).
pub(crate) fn read_range(file: &dyn FsFile, from: u64, to: u64) -> Vec<u8> {
    let len = usize::try_from(to.saturating_sub(from)).unwrap_or(0);
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], from + filled as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    buf.truncate(filled);
    buf
}

/// Intact records behind a damaged one in the last segment (bit rot in acknowledged data,
/// not a torn write): to be moved into a segment of their own.
pub(crate) struct Rest {
    /// Byte range of their frames in the damaged file (whole batches).
    pub start: u64,
    pub end: u64,
    pub first_offset: u64,
}

/// The complete batches of valid records from `pos` (the first one being `offset`).
fn rest_after(file: &dyn FsFile, pos: u64, file_len: u64, offset: u64) -> Option<Rest> {
    let mut reader = FrameReader::new(file, pos, file_len);
    let mut n = 0u64;
    let mut end = None;
    while let Ok(Frame::Record { record, end: e }) = reader.next(offset + n) {
        n += 1;
        if record.flags & FLAG_BATCH_END != 0 {
            end = Some(e);
        }
    }
    end.map(|end| Rest {
        start: pos,
        end,
        first_offset: offset,
    })
}

/// Writes `rest` (frames copied from `from`) as the segment starting at its first offset:
/// a temporary file, fsync, rename, directory fsync, so a crash leaves either nothing or
/// the whole segment.
pub(crate) fn write_rest(
    fs: &dyn Fs,
    dir: &Path,
    from: &dyn FsFile,
    rest: &Rest,
) -> Result<(), SpoolError> {
    let path = segment_path(dir, rest.first_offset);
    let tmp = path.with_extension("seg.tmp");
    let len = usize::try_from(rest.end - rest.start).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; len];
    from.read_exact_at(&mut buf, rest.start)
        .map_err(|e| io_err(&tmp, e))?;
    let file = fs.open(&tmp, true).map_err(|e| io_err(&tmp, e))?;
    let mut out = encode_segment_header(rest.first_offset).to_vec();
    out.extend_from_slice(&buf);
    file.write_all_at(&out, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_err(&tmp, e))?;
    drop(file);
    fs.rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    fs.sync_dir(dir).map_err(|e| io_err(dir, e))
}

/// What the recovery scan of one segment found.
pub(crate) struct Scanned {
    pub segment: Segment,
    /// Why the scan stopped before the end of the file, with the position it stopped at.
    pub damage: Option<(u64, &'static str)>,
    /// Last segment only: intact records behind a damaged one, which the caller moves into
    /// a new segment (this one is then kept as an older segment, its damage reported).
    pub rest: Option<Rest>,
}

/// Scans a segment file, verifying every record.
///
/// For the last segment (`is_last`), the file is truncated after the last complete batch:
/// a torn or corrupt tail and a batch whose last record is missing are cut. Older segments
/// are never modified; their valid prefix is kept and the damage is returned for the caller
/// to report.
pub(crate) fn scan_segment(
    fs: &dyn Fs,
    path: &Path,
    base: u64,
    is_last: bool,
) -> Result<Scanned, SpoolError> {
    let file = fs.open(path, false).map_err(|e| io_err(path, e))?;
    let file_len = file.len().map_err(|e| io_err(path, e))?;
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    let header_ok = file_len >= SEGMENT_HEADER_LEN as u64
        && file.read_exact_at(&mut header, 0).is_ok()
        && decode_segment_header(&header) == Some(base);
    if !header_ok {
        return bad_header(fs, path, file, file_len, base, is_last);
    }
    let frames = read_frames(&file, path, base, file_len)?;
    let Frames {
        mut index,
        count,
        batch_end,
        damage,
        valid_end,
    } = frames;
    // A torn write leaves nothing valid behind the damage, except pages of the same unsynced
    // group written back out of order. Complete batches of valid records right behind a
    // damaged one whose length field is intact are bit rot in acknowledged data: they are
    // kept (moved to a segment of their own by the caller), and only the damaged record is
    // lost.
    let rest = match damage {
        Some((at, _)) if is_last => valid_frame_after(&*file, at, file_len, base + count)
            .and_then(|next| rest_after(&*file, next, file_len, base + count + 1)),
        _ => None,
    };
    if let (Some(r), Some((at, reason))) = (&rest, damage) {
        tracing::error!(
            path = %path.display(),
            position = at,
            reason,
            lost_offset = base + count,
            kept_after = r.first_offset,
            "damaged record in the last spool segment with intact records behind it: one record is lost, the ones after it move to a new segment"
        );
        index.retain(|e| e.rel < count);
        return Ok(Scanned {
            segment: Segment {
                base,
                count,
                valid_len: valid_end,
                file_len,
                path: path.to_path_buf(),
                file,
                index,
            },
            damage,
            rest,
        });
    }
    let (valid_len, count, file_len) = if is_last {
        let (keep_len, keep_count) = batch_end;
        if keep_len < file_len {
            let reason = damage.map(|d| d.1).unwrap_or("incomplete batch");
            tracing::warn!(
                path = %path.display(),
                reason,
                kept_records = keep_count,
                dropped_records = count - keep_count,
                dropped_bytes = file_len - keep_len,
                "cutting the spool's torn or corrupt tail (never acknowledged to the writer)"
            );
            file.set_len(keep_len).map_err(|e| io_err(path, e))?;
            file.sync_data().map_err(|e| io_err(path, e))?;
        }
        index.retain(|e| e.rel < keep_count);
        (keep_len, keep_count, keep_len)
    } else {
        (valid_end, count, file_len)
    };
    Ok(Scanned {
        segment: Segment {
            base,
            count,
            valid_len,
            file_len,
            path: path.to_path_buf(),
            file,
            index,
        },
        damage: if is_last { None } else { damage },
        rest: None,
    })
}

/// What reading a segment's records from the header on found.
struct Frames {
    index: Vec<IndexEntry>,
    /// Valid records.
    count: u64,
    /// End and count of the last complete batch.
    batch_end: (u64, u64),
    /// Why the read stopped before the end of the file, and where.
    damage: Option<(u64, &'static str)>,
    /// End of the last valid record.
    valid_end: u64,
}

/// Reads and verifies every record of a segment whose header is good.
fn read_frames(
    file: &SharedFile,
    path: &Path,
    base: u64,
    file_len: u64,
) -> Result<Frames, SpoolError> {
    let mut reader = FrameReader::new(&**file, SEGMENT_HEADER_LEN as u64, file_len);
    let mut index = Vec::new();
    let mut count = 0u64;
    let mut batch_end = (SEGMENT_HEADER_LEN as u64, 0u64);
    let damage = loop {
        let at = reader.pos();
        match reader.next(base + count).map_err(|e| io_err(path, e))? {
            Frame::Record { record, end } => {
                if count.is_multiple_of(INDEX_EVERY) {
                    index.push(IndexEntry {
                        rel: count,
                        pos: at,
                        accepted_at_ms: record.accepted_at_ms,
                    });
                }
                count += 1;
                if record.flags & FLAG_BATCH_END != 0 {
                    batch_end = (end, count);
                }
            }
            Frame::End => break None,
            Frame::Torn => break Some((at, "torn record")),
            Frame::Corrupt(reason) => break Some((at, reason)),
        }
    };
    Ok(Frames {
        index,
        count,
        batch_end,
        damage,
        valid_end: reader.pos(),
    })
}

/// A segment whose header is not its own: the last one is started over (kept aside first
/// if records follow the header), an older one is reported damaged from its start.
fn bad_header(
    fs: &dyn Fs,
    path: &Path,
    file: SharedFile,
    file_len: u64,
    base: u64,
    is_last: bool,
) -> Result<Scanned, SpoolError> {
    let empty = |path: PathBuf, file: SharedFile| Scanned {
        segment: Segment {
            base,
            count: 0,
            valid_len: SEGMENT_HEADER_LEN as u64,
            file_len: SEGMENT_HEADER_LEN as u64,
            path,
            file,
            index: Vec::new(),
        },
        damage: None,
        rest: None,
    };
    if !is_last {
        return Ok(Scanned {
            segment: Segment {
                base,
                count: 0,
                valid_len: 0,
                file_len,
                path: path.to_path_buf(),
                file,
                index: Vec::new(),
            },
            damage: Some((0, "bad segment header")),
            rest: None,
        });
    }
    if file_len > SEGMENT_HEADER_LEN as u64 {
        // The header is fsynced before any record is written, so records behind a bad
        // header mean the file itself is damaged: keep it aside for inspection.
        let aside = path.with_extension("seg.corrupt");
        tracing::error!(
            path = %path.display(),
            moved_to = %aside.display(),
            file_len,
            "last spool segment has a corrupt header; its records are lost, file kept aside"
        );
        drop(file);
        fs.rename(path, &aside).map_err(|e| io_err(path, e))?;
        let (path_new, file) =
            create_segment(fs, path.parent().unwrap_or_else(|| Path::new(".")), base)?;
        return Ok(empty(path_new, file));
    }
    tracing::warn!(path = %path.display(), file_len, "last segment has no valid header (torn creation); rewriting it empty");
    file.set_len(0).map_err(|e| io_err(path, e))?;
    file.write_all_at(&encode_segment_header(base), 0)
        .map_err(|e| io_err(path, e))?;
    file.sync_data().map_err(|e| io_err(path, e))?;
    Ok(empty(path.to_path_buf(), file))
}
