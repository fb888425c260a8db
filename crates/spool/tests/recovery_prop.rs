//! Property test of recovery on real disk: truncating the last segment anywhere, or flipping
//! any byte in it, always reopens cleanly, keeps exactly the batches that end before the
//! damage, and appends continue at the right offset.

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
                        payload: payload(b, i, len),
                    })
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

        rt.block_on(async {
            let spool = Spool::open(cfg).await.unwrap();
            prop_assert_eq!(spool.stats().next_offset, kept_records as u64);
            let got = spool.read(0, 1000).await.unwrap();
            prop_assert_eq!(got.len(), kept_records);
            let mut n = 0;
            for (b, sizes) in batches[..kept_batches].iter().enumerate() {
                for (i, &len) in sizes.iter().enumerate() {
                    prop_assert_eq!(got[n].offset, n as u64);
                    prop_assert_eq!(&got[n].payload, &payload(b, i, len));
                    n += 1;
                }
            }
            let r = spool
                .append(vec![NewRecord {
                    kind: RecordKind::DeadLetter,
                    accepted_at_ms: 0,
                    payload: Bytes::from_static(b"after"),
                }])
                .await
                .unwrap();
            prop_assert_eq!(r.first_offset, kept_records as u64);
            Ok(())
        })?;
    }
}
