//! The cursor file: every sink's cursor, replaced atomically (write a temporary file, fsync,
//! rename over `cursors`, fsync the directory).
//!
//! ```text
//! magic "ARCURS\x00\x01" (8) | count u32 LE | count × (name length u16 LE | name | cursor u64 LE)
//! | crc32 of everything before (4)
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::{io_err, SpoolError};

const MAGIC: [u8; 8] = *b"ARCURS\x00\x01";
pub(crate) const FILE_NAME: &str = "cursors";
const TMP_NAME: &str = "cursors.tmp";

pub(crate) fn encode(cursors: &BTreeMap<String, u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + cursors.len() * 32);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(cursors.len() as u32).to_le_bytes());
    for (name, cursor) in cursors {
        let name = name.as_bytes();
        let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&name[..len as usize]);
        out.extend_from_slice(&cursor.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
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
    let mut pos = 8;
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

/// Reads the cursor file: `Ok(None)` if there is none, `Err` with a reason if it is damaged.
pub(crate) fn load(dir: &Path) -> Result<Option<BTreeMap<String, u64>>, SpoolError> {
    let path = dir.join(FILE_NAME);
    match fs::read(&path) {
        Ok(buf) => decode(&buf)
            .map(Some)
            .map_err(|reason| SpoolError::Corrupt {
                path,
                reason: format!("cursor file: {reason}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Durably replaces the cursor file.
pub(crate) fn store(dir: &Path, cursors: &BTreeMap<String, u64>) -> Result<(), SpoolError> {
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(FILE_NAME);
    let buf = encode(cursors);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(&buf).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir)
}

/// fsyncs a directory so that entries created, renamed or removed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
