//! Property test of recovery on real disk: truncating the last segment anywhere, or flipping
//! any byte in it, always reopens cleanly and keeps every batch that ends before the damage;
//! when intact batches follow a damaged record (bit rot, not a torn write) they are kept too
//! and only that record is lost; nothing read back differs from what was written; and
//! appends continue after the last record kept.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use proptest::prelude::*;
use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig};

const HEADER: u64 = 20;
const OVERHEAD: u64 = 18;

#[derive(Debug, Clone)]
enum Damage {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Damage::Flip(i, x)),
    ]
}

fn payload(b: usize, i: usize, len: usize) -> Bytes {
    let mut v = format!("b{b}-r{i}-").into_bytes();
    v.resize(len.max(v.len()), b'.');
    Bytes::from(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn damaged_last_segment_recovers_to_a_batch_boundary(
        batches in proptest::collection::vec(proptest::collection::vec(1usize..300, 1..4), 1..8),
        damage in damage(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            dir: dir.path().to_path_buf(),
            max_bytes: 1 << 30,
            segment_bytes: 1 << 20,
            sinks: vec!["a".to_string()],
            min_free_bytes: None,
        };
        // Write, remembering where each batch ends in the (single) segment file.
        let mut ends = Vec::new();
        let mut pos = HEADER;
        rt.block_on(async {
            let spool = Spool::open(cfg.clone()).await.unwrap();
            for (b, sizes) in batches.iter().enumerate() {
                let recs = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &len)| NewRecord {
                        kind: RecordKind::Envelope,
                        accepted_at_ms: b as u64,
                        payload: payload(b, i, len), attachment: None, })
                    .collect();
                spool.append(recs).await.unwrap();
                for (i, &len) in sizes.iter().enumerate() {
                    pos += OVERHEAD + payload(b, i, len).len() as u64;
                }
                ends.push(pos);
            }
            spool.close().await;
        });
        let path = dir.path().join(format!("{:020}.seg", 0));
        let file_len = std::fs::metadata(&path).unwrap().len();
        prop_assert_eq!(file_len, pos);

        // Damage somewhere after the header.
        let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let at = match damage {
            Damage::Truncate(i) => {
                let at = HEADER + i.index((file_len - HEADER) as usize) as u64;
                f.set_len(at).unwrap();
                at
            }
            Damage::Flip(i, x) => {
                let at = HEADER + i.index((file_len - HEADER) as usize) as u64;
                let mut b = [0u8; 1];
                f.read_exact_at(&mut b, at).unwrap();
                b[0] ^= x;
                f.write_all_at(&b, at).unwrap();
                at
            }
        };
        drop(f);
        let kept_batches = ends.iter().filter(|&&e| e <= at).count();
        let kept_records: usize = batches[..kept_batches].iter().map(|b| b.len()).sum();
        let written: Vec<Bytes> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, sizes)| sizes.iter().enumerate().map(move |(i, &len)| payload(b, i, len)))
            .collect();
        // The record holding the damaged byte.
        let mut start = HEADER;
        let mut damaged = written.len();
        for (n, p) in written.iter().enumerate() {
            let end = start + OVERHEAD + p.len() as u64;
            if at < end {
                damaged = n;
                break;
            }
            start = end;
        }

        rt.block_on(async {
            let spool = Spool::open(cfg).await.unwrap();
            let got = spool.read(0, 1000).await.unwrap();
            for w in got.windows(2) {
                prop_assert!(w[0].offset < w[1].offset);
            }
            for r in &got {
                prop_assert_eq!(&r.payload, &written[r.offset as usize], "record {} differs", r.offset);
            }
            let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
            // Every batch that ends before the damage is kept.
            for n in 0..kept_records as u64 {
                prop_assert!(offsets.contains(&n), "record {} of a complete batch lost", n);
            }
            // Kept behind the damage: then only the damaged record is missing before them.
            if offsets.iter().any(|&o| o as usize > damaged) {
                for n in 0..damaged as u64 {
                    prop_assert!(offsets.contains(&n), "record {} before the damage lost", n);
                }
                prop_assert!(!offsets.contains(&(damaged as u64)));
            }
            let next = offsets.last().map_or(kept_records as u64, |o| o + 1).max(kept_records as u64);
            prop_assert_eq!(spool.stats().next_offset, next);
            let r = spool
                .append(vec![NewRecord {
                    kind: RecordKind::DeadLetter,
                    accepted_at_ms: 0,
                    payload: Bytes::from_static(b"after"), attachment: None, }])
                .await
                .unwrap();
            prop_assert_eq!(r.first_offset, next);
            Ok(())
        })?;
    }
}
