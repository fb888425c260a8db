//! On-disk framing of segment headers and records.
//!
//! A segment file is a [`SEGMENT_HEADER_LEN`]-byte header followed by records back to back:
//!
//! ```text
//! segment header: magic "ARSPOOL\x01" (8) | base offset u64 LE (8) | crc32 of the previous 16 bytes (4)
//! record frame:   body length u32 LE (4) | crc32 u32 LE (4) | body
//! record body:    kind u8 | flags u8 | accepted_at_ms u64 LE | payload
//! ```
//!
//! The checksum of a record covers its logical offset (u64 LE, not stored), the body length
//! and the body, so a frame is only accepted at the position it was written for: stale bytes
//! that happen to look like a valid frame at another offset are rejected. Flag bit 0 marks the
//! last record of an appended batch; recovery cuts a tail batch that lacks it.

use bytes::Bytes;

use crate::RecordKind;

/// Magic bytes opening every segment file (the last byte is the format version).
pub const SEGMENT_MAGIC: [u8; 8] = *b"ARSPOOL\x01";
/// Length of a segment file's header.
pub const SEGMENT_HEADER_LEN: usize = 20;
/// Length of a record frame's header (body length + checksum).
pub const FRAME_HEADER_LEN: usize = 8;
/// Length of the fixed part of a record body (kind, flags, accepted time).
pub const BODY_FIXED_LEN: usize = 10;
/// Bytes a record takes on disk besides its payload.
pub const RECORD_OVERHEAD: usize = FRAME_HEADER_LEN + BODY_FIXED_LEN;
/// Flag bit: this record is the last one of its batch.
pub const FLAG_BATCH_END: u8 = 0x01;

impl RecordKind {
    /// The kind for an on-disk tag, if it is a known one.
    pub fn from_u8(tag: u8) -> Option<RecordKind> {
        match tag {
            1 => Some(RecordKind::Envelope),
            2 => Some(RecordKind::DeadLetter),
            _ => None,
        }
    }
}

/// A record decoded from a frame whose checksum matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub kind: RecordKind,
    pub flags: u8,
    pub accepted_at_ms: u64,
    pub payload: Bytes,
}

/// The outcome of decoding one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record and the number of bytes its frame takes.
    Record { record: DecodedRecord, len: usize },
    /// The buffer ends inside the frame; `needed` is the whole frame's length if known.
    Incomplete { needed: Option<usize> },
    /// The bytes are not a valid frame for this offset.
    Corrupt(&'static str),
}

fn record_crc(offset: u64, len_bytes: [u8; 4], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&offset.to_le_bytes());
    h.update(&len_bytes);
    h.update(body);
    h.finalize()
}

/// The number of bytes a record with a payload of `payload_len` bytes takes on disk.
pub fn encoded_len(payload_len: usize) -> u64 {
    (RECORD_OVERHEAD as u64).saturating_add(payload_len as u64)
}

/// Appends the frame of a record at logical `offset` to `out`.
///
/// The payload must be shorter than `u32::MAX - BODY_FIXED_LEN` bytes (the spool checks this
/// against its segment size before encoding).
pub fn encode_record(
    out: &mut Vec<u8>,
    offset: u64,
    kind: RecordKind,
    flags: u8,
    accepted_at_ms: u64,
    payload: &[u8],
) {
    let body_len = BODY_FIXED_LEN + payload.len();
    let len_bytes = u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes();
    let start = out.len();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.push(flags);
    out.extend_from_slice(&accepted_at_ms.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = record_crc(offset, len_bytes, &out[start + FRAME_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the frame at the start of `buf`, expected to hold the record at logical `offset`.
/// Frames whose body is longer than `max_body` bytes are rejected as corrupt (a damaged length
/// field must not make the reader wait for gigabytes).
pub fn decode_record(buf: &[u8], offset: u64, max_body: u64) -> Decoded {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Decoded::Incomplete { needed: None };
    };
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&header[..4]);
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(&header[4..8]);
    let body_len = u32::from_le_bytes(len_bytes) as usize;
    if body_len < BODY_FIXED_LEN {
        return Decoded::Corrupt("record length below minimum");
    }
    if body_len as u64 > max_body {
        return Decoded::Corrupt("record length above maximum");
    }
    let total = FRAME_HEADER_LEN + body_len;
    let Some(body) = buf.get(FRAME_HEADER_LEN..total) else {
        return Decoded::Incomplete {
            needed: Some(total),
        };
    };
    if record_crc(offset, len_bytes, body) != u32::from_le_bytes(crc_bytes) {
        return Decoded::Corrupt("record checksum mismatch");
    }
    let Some(kind) = RecordKind::from_u8(body[0]) else {
        return Decoded::Corrupt("unknown record kind");
    };
    let mut accepted = [0u8; 8];
    accepted.copy_from_slice(&body[2..10]);
    Decoded::Record {
        record: DecodedRecord {
            kind,
            flags: body[1],
            accepted_at_ms: u64::from_le_bytes(accepted),
            payload: Bytes::copy_from_slice(&body[BODY_FIXED_LEN..]),
        },
        len: total,
    }
}

/// The header of a segment whose first record has logical offset `base`.
pub fn encode_segment_header(base: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..16].copy_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&out[..16]);
    out[16..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The base offset stored in a segment header, if the header is intact.
pub fn decode_segment_header(buf: &[u8]) -> Option<u64> {
    let header = buf.get(..SEGMENT_HEADER_LEN)?;
    if header[..8] != SEGMENT_MAGIC {
        return None;
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&header[16..20]);
    if crc32fast::hash(&header[..16]) != u32::from_le_bytes(crc) {
        return None;
    }
    let mut base = [0u8; 8];
    base.copy_from_slice(&header[8..16]);
    Some(u64::from_le_bytes(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_offset_binding() {
        let mut buf = Vec::new();
        encode_record(
            &mut buf,
            7,
            RecordKind::DeadLetter,
            FLAG_BATCH_END,
            42,
            b"hi",
        );
        assert_eq!(buf.len() as u64, encoded_len(2));
        match decode_record(&buf, 7, 1 << 20) {
            Decoded::Record { record, len } => {
                assert_eq!(len, buf.len());
                assert_eq!(record.kind, RecordKind::DeadLetter);
                assert_eq!(record.flags, FLAG_BATCH_END);
                assert_eq!(record.accepted_at_ms, 42);
                assert_eq!(&record.payload[..], b"hi");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            decode_record(&buf, 8, 1 << 20),
            Decoded::Corrupt("record checksum mismatch")
        );
        assert_eq!(
            decode_record(&buf[..buf.len() - 1], 7, 1 << 20),
            Decoded::Incomplete {
                needed: Some(buf.len())
            }
        );
    }

    #[test]
    fn segment_header_round_trip() {
        let h = encode_segment_header(123);
        assert_eq!(decode_segment_header(&h), Some(123));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(decode_segment_header(&bad), None);
    }
}
