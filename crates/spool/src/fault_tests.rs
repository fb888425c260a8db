//! Property tests of the spool on the model file system ([`crate::sim`]): after any
//! sequence of appends, cursor commits, crashes (power loss), clean restarts, a full disk
//! and injected faults (ENOSPC, EIO, torn writes in any write, fsync, rename, create or
//! remove), every acknowledged record at or after a sink's cursor is read back once, in
//! order, with its bytes; a cursor never goes back behind a commit that was acknowledged;
//! and the spool always opens again (after a failure, as the relay does: it restarts).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use crate::sim::{Fault, SimFs};
use crate::{NewRecord, RecordKind, Spool, SpoolConfig, SpoolError};

#[derive(Clone, Debug)]
enum Op {
    /// A batch of records of these sizes.
    Append(Vec<u16>),
    /// Moves the cursor this many percent of the way to the end.
    Commit(u8),
    /// Power loss, then a restart.
    Crash,
    /// A clean restart.
    Reopen,
    /// Fails the n-th file operation from now.
    Fault(u8, Fault),
    /// Sets the file system's capacity (`None`: unlimited) to what is used plus this.
    Capacity(Option<u16>),
}

fn op() -> impl Strategy<Value = Op> {
    let fault = prop_oneof![Just(Fault::NoSpace), Just(Fault::Io), Just(Fault::Torn)];
    prop_oneof![
        6 => prop::collection::vec(1u16..600, 1..6).prop_map(Op::Append),
        3 => (0u8..=100).prop_map(Op::Commit),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
        2 => (0u8..12, fault).prop_map(|(n, f)| Op::Fault(n, f)),
        1 => prop::option::of(0u16..8192).prop_map(Op::Capacity),
    ]
}

fn config() -> SpoolConfig {
    SpoolConfig {
        dir: "/sim/spool".into(),
        max_bytes: 48 << 10,
        segment_bytes: 2048,
        sinks: vec!["s".into()],
        min_free_bytes: Some(1024),
    }
}

/// What the test knows was acknowledged.
#[derive(Default)]
struct Model {
    /// offset -> payload of every acknowledged record.
    acked: BTreeMap<u64, Bytes>,
    /// The highest cursor a commit was acknowledged for.
    committed: u64,
    next_payload: u64,
}

impl Model {
    fn payload(&mut self, size: u16) -> Bytes {
        self.next_payload += 1;
        let mut v = format!("{}:", self.next_payload).into_bytes();
        v.resize(
            usize::from(size).max(v.len()),
            b'a' + (self.next_payload % 26) as u8,
        );
        Bytes::from(v)
    }
}

/// Opens the spool, retrying (as a restarted relay would) while injected faults make the
/// open fail; any other failure to open is a bug.
async fn open(fs: &SimFs) -> Result<Spool, TestCaseError> {
    for _ in 0..20 {
        let hit = fs.faults_hit();
        match Spool::open_on(config(), Arc::new(fs.clone())).await {
            Ok(s) => return Ok(s),
            Err(e) if fs.faults_hit() > hit || matches!(e, SpoolError::Io { .. }) => {
                // A fault during open (or a full model disk): clear the space limit once
                // and try again.
                fs.set_capacity(None);
            }
            Err(e) => return Err(TestCaseError::fail(format!("open failed: {e}"))),
        }
    }
    Err(TestCaseError::fail("open kept failing"))
}

/// Everything at or after the cursor must be there, once, in order, with its bytes.
async fn check(spool: &Spool, m: &Model) -> Result<(), TestCaseError> {
    let cursor = spool
        .cursor("s")
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        cursor >= m.committed,
        "cursor {cursor} went back behind the acknowledged commit {}",
        m.committed
    );
    let next = spool.stats().next_offset;
    let mut read = Vec::new();
    let mut from = cursor;
    while from < next {
        let batch = spool
            .read(from, 256)
            .await
            .map_err(|e| TestCaseError::fail(format!("read at {from}: {e}")))?;
        let Some(last) = batch.last() else { break };
        from = last.offset + 1;
        read.extend(batch);
    }
    for w in read.windows(2) {
        prop_assert!(w[0].offset < w[1].offset, "offsets out of order");
    }
    let got: BTreeMap<u64, &Bytes> = read.iter().map(|r| (r.offset, &r.payload)).collect();
    for (offset, payload) in m.acked.range(cursor..) {
        match got.get(offset) {
            Some(p) => prop_assert_eq!(*p, payload, "record {} changed", offset),
            None => prop_assert!(
                false,
                "acknowledged record {} lost (cursor {})",
                offset,
                cursor
            ),
        }
    }
    Ok(())
}

async fn run(ops: Vec<Op>, seed: u64) -> Result<(), TestCaseError> {
    let fs = SimFs::new(seed, None);
    let mut m = Model::default();
    let mut spool = open(&fs).await?;
    for op in ops {
        // A writer that failed for good is restarted, as the relay does (it exits).
        if spool.failure().is_some() {
            spool.close().await;
            spool = open(&fs).await?;
            check(&spool, &m).await?;
        }
        match op {
            Op::Append(sizes) => {
                let batch: Vec<NewRecord> = sizes
                    .iter()
                    .map(|s| NewRecord {
                        kind: RecordKind::Envelope,
                        accepted_at_ms: 1,
                        payload: m.payload(*s),
                        attachment: None,
                    })
                    .collect();
                let payloads: Vec<Bytes> = batch.iter().map(|r| r.payload.clone()).collect();
                if let Ok(r) = spool.append(batch).await {
                    prop_assert_eq!(r.last_offset - r.first_offset + 1, payloads.len() as u64);
                    for (i, p) in payloads.into_iter().enumerate() {
                        let prev = m.acked.insert(r.first_offset + i as u64, p);
                        prop_assert!(
                            prev.is_none(),
                            "offset {} reused",
                            r.first_offset + i as u64
                        );
                    }
                }
            }
            Op::Commit(pct) => {
                let cursor = spool.cursor("s").unwrap_or(0);
                let next = spool.stats().next_offset;
                let to = cursor + (next.saturating_sub(cursor)) * u64::from(pct) / 100;
                if spool.commit("s", to).await.is_ok() {
                    m.committed = m.committed.max(to);
                }
            }
            Op::Crash => {
                spool.close().await;
                fs.crash();
                spool = open(&fs).await?;
                check(&spool, &m).await?;
            }
            Op::Reopen => {
                spool.close().await;
                spool = open(&fs).await?;
                check(&spool, &m).await?;
            }
            Op::Fault(n, f) => fs.fail_in(u64::from(n), f),
            Op::Capacity(extra) => {
                let used = fs.used_bytes();
                fs.set_capacity(extra.map(|e| used + u64::from(e)));
            }
        }
    }
    spool.close().await;
    fs.crash();
    let spool = open(&fs).await?;
    check(&spool, &m).await?;
    spool.close().await;
    Ok(())
}

fn cases() -> u32 {
    std::env::var("SPOOL_FAULT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_records_survive_any_sequence_of_faults_and_crashes(
        ops in prop::collection::vec(op(), 1..60),
        seed in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        rt.block_on(run(ops, seed))?;
    }
}

/// After a failed fsync the writer stops for good and says so; only a reopen recovers.
#[test]
fn a_failed_fsync_stops_the_writer_and_is_reported() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let fs = SimFs::new(1, None);
        let spool = Spool::open_on(config(), Arc::new(fs.clone()))
            .await
            .unwrap();
        let rec = |n: u8| NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(vec![n; 10]),
            attachment: None,
        };
        spool.append(vec![rec(1)]).await.unwrap();
        assert!(spool.failure().is_none());
        // The append's write is operation 0, its fsync operation 1.
        fs.fail_in(1, Fault::Io);
        assert!(spool.append(vec![rec(2)]).await.is_err());
        let reason = tokio::time::timeout(std::time::Duration::from_secs(5), spool.failed())
            .await
            .expect("failure reported");
        assert!(
            matches!(reason, crate::SpoolFailure::Fsync { .. }),
            "{reason}"
        );
        assert!(reason.to_string().contains("fsync"), "{reason}");
        assert!(spool.failure().is_some());
        // No retry in this process: every later append fails too.
        assert!(spool.append(vec![rec(3)]).await.is_err());
        spool.close().await;
        let spool = Spool::open_on(config(), Arc::new(fs.clone()))
            .await
            .unwrap();
        assert!(spool.failure().is_none());
        spool.append(vec![rec(4)]).await.unwrap();
        spool.close().await;
    });
}
