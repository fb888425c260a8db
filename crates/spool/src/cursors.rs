//! The cursor file: every sink's cursor, written so that it never needs new disk space.
//!
//! The file has two fixed slots of [`SLOT_LEN`] bytes, written out in full (so its blocks
//! are allocated) when the spool is opened. A commit overwrites the older slot in place
//! and fsyncs it; loading takes the valid slot with the higher sequence number. A torn
//! write damages only the slot being written, and the other still holds the previous
//! cursors (a sink then repeats a few records, never skips any). Because nothing is
//! created, renamed or extended, cursors can still be committed on a full disk, so the
//! segments they free can be deleted: a full disk is a state the spool leaves by itself.
//! (On copy-on-write file systems, btrfs or ZFS, an overwrite still needs free blocks:
//! there the free-space reserve, `min_free_bytes`, is what keeps it possible.)
//!
//! ```text
//! slot: magic "ARCURS\x00\x02" (8) | sequence u64 LE | body length u32 LE | body | crc32 (4)
//!       of everything before in the slot
//! body: count u32 LE | count × (name length u16 LE | name | cursor u64 LE)
//! ```
//!
//! A file of the first format (`"ARCURS\x00\x01" | body | crc32`, replaced by rename) is
//! read once and rewritten in this one.

use std::collections::BTreeMap;
use std::path::Path;

use crate::fs::{Fs, SharedFile};
use crate::{io_err, SpoolError};

const MAGIC: [u8; 8] = *b"ARCURS\x00\x01";
const SLOT_MAGIC: [u8; 8] = *b"ARCURS\x00\x02";
pub(crate) const FILE_NAME: &str = "cursors";
const TMP_NAME: &str = "cursors.tmp";
/// Bytes of one slot: room for about 200 sinks with 64-character names.
pub(crate) const SLOT_LEN: usize = 16 << 10;
const SLOT_HEADER_LEN: usize = 8 + 8 + 4;

/// The legacy single-copy encoding (magic, body, crc): read at open, written only by tests.
#[cfg(test)]
pub(crate) fn encode(cursors: &BTreeMap<String, u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + cursors.len() * 32);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&encode_body(cursors));
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn encode_body(cursors: &BTreeMap<String, u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + cursors.len() * 32);
    out.extend_from_slice(&(cursors.len() as u32).to_le_bytes());
    for (name, cursor) in cursors {
        let name = name.as_bytes();
        let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&name[..len as usize]);
        out.extend_from_slice(&cursor.to_le_bytes());
    }
    out
}

/// A slot holding `cursors` with sequence number `seq`; `None` when it does not fit.
fn encode_slot(seq: u64, cursors: &BTreeMap<String, u64>) -> Option<Vec<u8>> {
    let body = encode_body(cursors);
    let mut out = Vec::with_capacity(SLOT_HEADER_LEN + body.len() + 4);
    out.extend_from_slice(&SLOT_MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    (out.len() <= SLOT_LEN).then_some(out)
}

/// The sequence number and cursors of a valid slot.
fn decode_slot(slot: &[u8]) -> Option<(u64, BTreeMap<String, u64>)> {
    if slot.get(..8) != Some(&SLOT_MAGIC[..]) {
        return None;
    }
    let seq = u64::from_le_bytes(slot.get(8..16)?.try_into().ok()?);
    let len = u32::from_le_bytes(slot.get(16..20)?.try_into().ok()?) as usize;
    let end = SLOT_HEADER_LEN.checked_add(len)?;
    let crc = u32::from_le_bytes(slot.get(end..end + 4)?.try_into().ok()?);
    if crc32fast::hash(&slot[..end]) != crc {
        return None;
    }
    decode_body(&slot[SLOT_HEADER_LEN..end])
        .ok()
        .map(|c| (seq, c))
}

/// Whether `cursors` fit a slot (checked when the spool is opened).
pub(crate) fn fits(cursors: &BTreeMap<String, u64>) -> bool {
    encode_slot(0, cursors).is_some()
}

pub(crate) fn decode(buf: &[u8]) -> Result<BTreeMap<String, u64>, &'static str> {
    let body_len = buf.len().checked_sub(4).ok_or("file too short")?;
    let (body, crc) = buf.split_at(body_len);
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(crc);
    if crc32fast::hash(body) != u32::from_le_bytes(crc_bytes) {
        return Err("checksum mismatch");
    }
    if body.get(..8) != Some(&MAGIC[..]) {
        return Err("bad magic");
    }
    decode_body(&body[8..])
}

fn decode_body(body: &[u8]) -> Result<BTreeMap<String, u64>, &'static str> {
    let mut pos = 0;
    let mut take = |n: usize| -> Result<&[u8], &'static str> {
        let s = body.get(pos..pos + n).ok_or("truncated")?;
        pos += n;
        Ok(s)
    };
    let mut count = [0u8; 4];
    count.copy_from_slice(take(4)?);
    let count = u32::from_le_bytes(count);
    let mut out = BTreeMap::new();
    for _ in 0..count {
        let mut len = [0u8; 2];
        len.copy_from_slice(take(2)?);
        let name = take(u16::from_le_bytes(len) as usize)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| "sink name not UTF-8")?;
        let mut cursor = [0u8; 8];
        cursor.copy_from_slice(take(8)?);
        out.insert(name, u64::from_le_bytes(cursor));
    }
    Ok(out)
}

/// What the cursor file held at open.
pub(crate) struct Loaded {
    pub cursors: BTreeMap<String, u64>,
    /// Sequence number of the slot read (0 for none or the legacy format).
    pub seq: u64,
    /// Whether the file must be (re)created in the slot format before use.
    pub rewrite: bool,
}

/// Reads the cursor file: `Ok(None)` if there is none, `Err` with a reason if no slot of it
/// (nor the legacy format) is valid.
pub(crate) fn load(fs: &dyn Fs, dir: &Path) -> Result<Option<Loaded>, SpoolError> {
    let path = dir.join(FILE_NAME);
    let buf = match fs.read(&path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, e)),
    };
    if buf.starts_with(&MAGIC) {
        return decode(&buf)
            .map(|cursors| {
                Some(Loaded {
                    cursors,
                    seq: 0,
                    rewrite: true,
                })
            })
            .map_err(|reason| SpoolError::Corrupt {
                path,
                reason: format!("cursor file: {reason}"),
            });
    }
    let slots = [
        buf.get(..SLOT_LEN).and_then(decode_slot),
        buf.get(SLOT_LEN..2 * SLOT_LEN).and_then(decode_slot),
    ];
    let rewrite = buf.len() != 2 * SLOT_LEN;
    match slots.into_iter().flatten().max_by_key(|(seq, _)| *seq) {
        Some((seq, cursors)) => Ok(Some(Loaded {
            cursors,
            seq,
            rewrite,
        })),
        None => Err(SpoolError::Corrupt {
            path,
            reason: "cursor file: no valid slot".into(),
        }),
    }
}

/// Writes a new cursor file holding `cursors` in its first slot (the other zeroed), both
/// slots written out in full so their blocks are allocated: a temporary file, fsync,
/// rename, directory fsync. Used at open, when there is room.
pub(crate) fn create(
    fs: &dyn Fs,
    dir: &Path,
    seq: u64,
    cursors: &BTreeMap<String, u64>,
) -> Result<(), SpoolError> {
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(FILE_NAME);
    let slot = encode_slot(seq, cursors).ok_or_else(|| SpoolError::Corrupt {
        path: path.clone(),
        reason: format!(
            "{} sinks do not fit the cursor file's {SLOT_LEN}-byte slot",
            cursors.len()
        ),
    })?;
    let mut buf = vec![0u8; 2 * SLOT_LEN];
    buf[..slot.len()].copy_from_slice(&slot);
    let f = fs.open(&tmp, true).map_err(|e| io_err(&tmp, e))?;
    f.write_all_at(&buf, 0).map_err(|e| io_err(&tmp, e))?;
    f.sync_data().map_err(|e| io_err(&tmp, e))?;
    drop(f);
    fs.rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(fs, dir)
}

/// The open cursor file: commits overwrite its older slot in place.
pub(crate) struct CursorFile {
    file: SharedFile,
    path: std::path::PathBuf,
    /// Sequence number of the newest slot written.
    seq: u64,
}

impl CursorFile {
    pub(crate) fn open(fs: &dyn Fs, dir: &Path, seq: u64) -> Result<CursorFile, SpoolError> {
        let path = dir.join(FILE_NAME);
        let file = fs.open(&path, false).map_err(|e| io_err(&path, e))?;
        Ok(CursorFile { file, path, seq })
    }

    /// Durably records `cursors` (one positional write into allocated blocks, one fsync).
    pub(crate) fn store(&mut self, cursors: &BTreeMap<String, u64>) -> Result<(), SpoolError> {
        let seq = self.seq + 1;
        let slot = encode_slot(seq, cursors).ok_or_else(|| SpoolError::Corrupt {
            path: self.path.clone(),
            reason: "cursors do not fit a slot".into(),
        })?;
        let at = (seq % 2) * SLOT_LEN as u64;
        self.file
            .write_all_at(&slot, at)
            .map_err(|e| io_err(&self.path, e))?;
        self.file.sync_data().map_err(|e| io_err(&self.path, e))?;
        self.seq = seq;
        Ok(())
    }
}

/// fsyncs a directory so that entries created, renamed or removed in it survive a crash.
pub(crate) fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<(), SpoolError> {
    fs.sync_dir(dir).map_err(|e| io_err(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let fs = crate::fs::RealFs;
        let mut m = BTreeMap::new();
        m.insert("kafka".to_string(), 5);
        create(&fs, dir.path(), 0, &m).unwrap();
        let mut f = CursorFile::open(&fs, dir.path(), 0).unwrap();
        m.insert("kafka".to_string(), 6);
        f.store(&m).unwrap();
        m.insert("kafka".to_string(), 7);
        f.store(&m).unwrap();
        let loaded = load(&fs, dir.path()).unwrap().unwrap();
        assert_eq!(
            (loaded.seq, loaded.cursors["kafka"], loaded.rewrite),
            (2, 7, false)
        );
        // Tear the newest slot (seq 2, slot 0): the previous one (seq 1) is read.
        let path = dir.path().join(FILE_NAME);
        let mut buf = std::fs::read(&path).unwrap();
        buf[30] ^= 0xff;
        std::fs::write(&path, &buf).unwrap();
        let loaded = load(&fs, dir.path()).unwrap().unwrap();
        assert_eq!((loaded.seq, loaded.cursors["kafka"]), (1, 6));
        // Both torn: corrupt.
        buf[SLOT_LEN + 30] ^= 0xff;
        std::fs::write(&path, &buf).unwrap();
        assert!(load(&fs, dir.path()).is_err());
        // The legacy format is read and marked for rewriting.
        std::fs::write(&path, encode(&m)).unwrap();
        let loaded = load(&fs, dir.path()).unwrap().unwrap();
        assert!(loaded.rewrite);
        assert_eq!(loaded.cursors["kafka"], 7);
    }

    #[test]
    fn round_trip_and_damage() {
        let mut m = BTreeMap::new();
        m.insert("kafka".to_string(), 17);
        m.insert("nats".to_string(), u64::MAX);
        let buf = encode(&m);
        assert_eq!(decode(&buf), Ok(m));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(decode(&buf[..buf.len() - 1]).is_err());
    }
}
