//! Property tests for the record decoder: arbitrary or corrupted bytes never panic and never
//! yield a record whose checksum did not match.

use proptest::prelude::*;
use relay_spool::record::{decode_record, encode_record, Decoded, FLAG_BATCH_END};
use relay_spool::RecordKind;

fn kind() -> impl Strategy<Value = RecordKind> {
    prop_oneof![Just(RecordKind::Envelope), Just(RecordKind::DeadLetter)]
}

fn encode(offset: u64, kind: RecordKind, flags: u8, at: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(&mut out, offset, kind, flags, at, payload);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the decoder accepts is exactly what the encoder produces for that record at
    /// that offset, i.e. its stored checksum matched.
    #[test]
    fn arbitrary_bytes_never_panic_or_pass_unchecked(
        buf in proptest::collection::vec(any::<u8>(), 0..256),
        offset in any::<u64>(),
        max_body in 0u64..512,
    ) {
        if let Decoded::Record { record, len } = decode_record(&buf, offset, max_body) {
            prop_assert!(len <= buf.len());
            let again = encode(offset, record.kind, record.flags, record.accepted_at_ms, &record.payload);
            prop_assert_eq!(&again[..], &buf[..len]);
        }
    }

    #[test]
    fn round_trip(
        offset in any::<u64>(),
        kind in kind(),
        flags in any::<u8>(),
        at in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..2048),
        trailing in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut buf = encode(offset, kind, flags, at, &payload);
        let len = buf.len();
        buf.extend_from_slice(&trailing);
        match decode_record(&buf, offset, 1 << 20) {
            Decoded::Record { record, len: got } => {
                prop_assert_eq!(got, len);
                prop_assert_eq!(record.kind, kind);
                prop_assert_eq!(record.flags, flags);
                prop_assert_eq!(record.accepted_at_ms, at);
                prop_assert_eq!(&record.payload[..], &payload[..]);
            }
            other => prop_assert!(false, "decode failed: {:?}", other),
        }
        // The same bytes are not a record at any other offset.
        let other = offset.wrapping_add(1);
        let wrong_offset_ok = matches!(decode_record(&buf, other, 1 << 20), Decoded::Record { .. });
        prop_assert!(!wrong_offset_ok);
    }

    /// A flipped byte anywhere in the frame is detected; a truncated frame is never a record.
    #[test]
    fn corruption_and_truncation_detected(
        offset in any::<u64>(),
        kind in kind(),
        at in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1024),
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let buf = encode(offset, kind, FLAG_BATCH_END, at, &payload);
        let mut bad = buf.clone();
        let i = pos.index(bad.len());
        bad[i] ^= xor;
        let corrupted_accepted = matches!(decode_record(&bad, offset, 1 << 20), Decoded::Record { .. });
        prop_assert!(!corrupted_accepted, "flip at {} accepted", i);

        let short = &buf[..cut.index(buf.len())];
        let truncated_accepted = matches!(decode_record(short, offset, 1 << 20), Decoded::Record { .. });
        prop_assert!(!truncated_accepted);
    }

    /// A stream of records with damage somewhere: everything decoded before the damage is
    /// the original, and nothing decoded is ever different from what was written.
    #[test]
    fn stream_with_damage_yields_only_originals(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20),
        base in 0u64..1_000_000,
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut buf = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut buf, base + i as u64, RecordKind::Envelope, 0, i as u64, p);
        }
        let damaged_at = pos.index(buf.len());
        buf[damaged_at] ^= xor;
        let mut at = 0usize;
        let mut n = 0usize;
        while let Decoded::Record { record, len } = decode_record(&buf[at..], base + n as u64, 1 << 20) {
            prop_assert!(n < payloads.len());
            prop_assert_eq!(&record.payload[..], &payloads[n][..]);
            prop_assert_eq!(record.accepted_at_ms, n as u64);
            prop_assert!(at + len <= damaged_at, "a damaged frame was accepted");
            at += len;
            n += 1;
        }
        prop_assert!(n < payloads.len());
    }
}
