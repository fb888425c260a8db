//! Behaviour of the spool on real disk.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig, SpoolError, StoredRecord};

fn config(dir: &Path, max_bytes: u64, segment_bytes: u64, sinks: &[&str]) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
        sinks: sinks.iter().map(|s| s.to_string()).collect(),
        min_free_bytes: None,
    }
}

fn payload(tag: &str, len: usize) -> Bytes {
    let mut s = format!("{{\"id\":\"{tag}\",\"pad\":\"");
    while s.len() + 2 < len {
        s.push('x');
    }
    s.push_str("\"}");
    Bytes::from(s)
}

fn rec(tag: &str, len: usize) -> NewRecord {
    NewRecord {
        kind: RecordKind::Envelope,
        accepted_at_ms: 1_700_000_000_000,
        payload: payload(tag, len),
        attachment: None,
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

async fn read_all(spool: &Spool, from: u64) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let batch = spool.read(next, 7).await.unwrap();
        let Some(last) = batch.last() else {
            return out;
        };
        next = last.offset + 1;
        out.extend(batch);
    }
}

/// Appends `batches` batches of `per` records tagged "b{batch}-{i}"; returns the tags in order.
async fn fill(spool: &Spool, batches: usize, per: usize, len: usize) -> Vec<String> {
    let mut tags = Vec::new();
    for b in 0..batches {
        let batch: Vec<NewRecord> = (0..per)
            .map(|i| {
                let tag = format!("b{b}-{i}");
                tags.push(tag.clone());
                rec(&tag, len)
            })
            .collect();
        spool.append(batch).await.unwrap();
    }
    tags
}

fn check(records: &[StoredRecord], first: u64, tags: &[String], len: usize) {
    assert_eq!(records.len(), tags.len());
    for (i, (r, tag)) in records.iter().zip(tags).enumerate() {
        assert_eq!(r.offset, first + i as u64);
        assert_eq!(r.payload, payload(tag, len), "record {}", r.offset);
        assert_eq!(r.kind, RecordKind::Envelope);
    }
}

#[tokio::test]
async fn round_trip_across_segment_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 30, 4096, &["a"]))
        .await
        .unwrap();
    let tags = fill(&spool, 60, 3, 300).await;
    let stats = spool.stats();
    assert_eq!(stats.next_offset, 180);
    assert_eq!(stats.records, 180);
    assert!(stats.segments > 5, "{stats:?}");
    assert_eq!(segment_files(dir.path()).len() as u64, stats.segments);
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(stats.bytes, on_disk);
    for f in segment_files(dir.path()) {
        assert!(std::fs::metadata(&f).unwrap().len() <= 4096);
    }
    check(&read_all(&spool, 0).await, 0, &tags, 300);
    // Reads starting mid-log and capped by max.
    let mid = spool.read(100, 5).await.unwrap();
    check(&mid, 100, &tags[100..105], 300);
    assert!(spool.read(180, 10).await.unwrap().is_empty());
    spool.close().await;
    drop(spool);

    // From disk (no tail cache after reopen), including reads that start mid-segment.
    let spool = Spool::open(config(dir.path(), 1 << 30, 4096, &["a"]))
        .await
        .unwrap();
    check(&read_all(&spool, 0).await, 0, &tags, 300);
    for from in [1u64, 33, 64, 99, 150, 179] {
        let got = spool.read(from, 40).await.unwrap();
        let end = (from as usize + 40).min(180);
        check(&got, from, &tags[from as usize..end], 300);
    }
}

#[tokio::test]
async fn offsets_survive_reopen_even_when_everything_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 2048, &["a"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    fill(&spool, 10, 2, 200).await;
    spool.close().await;
    drop(spool);

    let spool = Spool::open(cfg.clone()).await.unwrap();
    assert_eq!(spool.stats().next_offset, 20);
    let r = spool.append(vec![rec("x", 100)]).await.unwrap();
    assert_eq!((r.first_offset, r.last_offset), (20, 20));
    // Deliver everything: all data segments go, offsets must not restart.
    spool.commit("a", 21).await.unwrap();
    // The active segment is rolled away by the writer; wait for it via an append barrier.
    spool.close().await;
    drop(spool);

    let spool = Spool::open(cfg).await.unwrap();
    let stats = spool.stats();
    assert_eq!(stats.next_offset, 21);
    assert_eq!(stats.first_offset, 21);
    assert_eq!(stats.records, 0);
    assert_eq!(stats.segments, 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    let r = spool.append(vec![rec("y", 100)]).await.unwrap();
    assert_eq!(r.first_offset, 21);
    assert_eq!(spool.read(0, 10).await.unwrap()[0].offset, 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_many_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 30, 64 * 1024, &["a"]))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..64 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for seq in 0..10 {
                let n = 1 + (t + seq) % 3;
                let batch = (0..n)
                    .map(|i| rec(&format!("t{t}-s{seq}-{i}"), 400))
                    .collect();
                let r = spool.append(batch).await.unwrap();
                assert_eq!(r.last_offset - r.first_offset + 1, n as u64);
                got.push((r, t, seq, n));
            }
            got
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    receipts.sort_by_key(|(r, ..)| r.first_offset);
    let mut expected = 0u64;
    for (r, ..) in &receipts {
        assert_eq!(r.first_offset, expected, "offsets must be contiguous");
        expected = r.last_offset + 1;
    }
    assert_eq!(spool.stats().next_offset, expected);
    // 640 appends from 64 concurrent writers did share fsyncs.
    let (groups, batches) = spool.group_commits();
    assert_eq!(batches, 640);
    assert!(
        groups < batches,
        "{groups} fsync groups for {batches} appends"
    );
    let all = read_all(&spool, 0).await;
    assert_eq!(all.len() as u64, expected);
    for (r, t, seq, n) in &receipts {
        for i in 0..*n {
            let got = &all[(r.first_offset + i as u64) as usize];
            assert_eq!(got.payload, payload(&format!("t{t}-s{seq}-{i}"), 400));
        }
    }
}

async fn torn_case(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 8192, &["a"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    let tags = fill(&spool, 20, 3, 500).await;
    spool.close().await;
    drop(spool);
    let last = segment_files(dir.path()).pop().unwrap();
    damage(&last);

    let spool = Spool::open(cfg).await.unwrap();
    // The last batch (3 records) is cut whole; everything before it is kept.
    assert_eq!(spool.stats().next_offset, 57);
    check(&read_all(&spool, 0).await, 0, &tags[..57], 500);
    let r = spool.append(vec![rec("after", 500)]).await.unwrap();
    assert_eq!(r.first_offset, 57);
    let got = spool.read(57, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, payload("after", 500));
}

#[tokio::test]
async fn torn_tail_truncated_mid_record_is_cut() {
    torn_case(|last| {
        let f = OpenOptions::new().write(true).open(last).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 200).unwrap();
    })
    .await;
}

#[tokio::test]
async fn torn_tail_flipped_byte_in_last_record_is_cut() {
    torn_case(|last| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(last)
            .unwrap();
        let len = f.metadata().unwrap().len();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, len - 10).unwrap();
        b[0] ^= 0x40;
        f.write_all_at(&b, len - 10).unwrap();
    })
    .await;
}

#[tokio::test]
async fn torn_tail_garbage_appended_is_cut() {
    torn_case(|last| {
        // The last batch's final record is damaged AND zeros follow (a partially flushed
        // extension of the file).
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(last)
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.write_all_at(&[0u8; 4], len - 4).unwrap();
        f.write_all_at(&[0u8; 100], len).unwrap();
    })
    .await;
}

/// Damaged on disk after the spool verified it (open passed): the read hands the record
/// over as `Damaged` and goes on behind it, instead of failing every read from then on.
/// A flipped payload byte costs that record only (its length leads to the next frame); a
/// damaged length field too (the next frame is found by its checksum).
#[tokio::test]
async fn a_record_damaged_after_open_is_handed_over_as_damaged_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 1 << 20, &["a"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    let tags = fill(&spool, 10, 10, 300).await;
    spool.close().await;
    drop(spool);
    // Opened (and verified) first: the damage comes after.
    let spool = Spool::open(cfg).await.unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files[0])
        .unwrap();
    // Frames of 318 bytes after the 20-byte header: a payload byte of record 40, and the
    // length field of record 70.
    f.write_all_at(b"Z", 20 + 40 * 318 + 100).unwrap();
    f.write_all_at(&[0xff, 0xff, 0x00, 0x10], 20 + 70 * 318)
        .unwrap();

    let all = read_all(&spool, 0).await;
    assert_eq!(all.len(), 100, "every offset handed over once");
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        if i == 40 || i == 70 {
            assert_eq!(r.kind, RecordKind::Damaged, "record {i}");
        } else {
            assert_eq!(r.kind, RecordKind::Envelope, "record {i}");
            assert_eq!(r.payload, payload(&tags[i], 300), "record {i}");
        }
    }
    // The damaged record's own bytes, as far as they can be told apart, come with it.
    assert_eq!(all[40].payload.len(), 318);
    assert!(
        all[40].payload.windows(5).any(|w| w == b"b4-0\""),
        "{:?}",
        all[40].payload
    );
    // Reading from the damaged record itself works too.
    let again = spool.read(70, 3).await.unwrap();
    assert_eq!(again.len(), 3);
    assert_eq!(again[0].kind, RecordKind::Damaged);
    assert_eq!(again[1].payload, payload(&tags[71], 300));
    spool.close().await;
}

#[tokio::test]
async fn corrupt_record_in_older_segment_skips_rest_of_that_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 4096, &["a"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    let tags = fill(&spool, 30, 2, 300).await;
    spool.close().await;
    drop(spool);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    // Damage the second record of the first segment (header 20 bytes, records 318 bytes).
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files[0])
        .unwrap();
    f.write_all_at(b"ZZ", 20 + 318 + 50).unwrap();
    let second_base: u64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    let spool = Spool::open(cfg).await.unwrap();
    let all = read_all(&spool, 0).await;
    // Record 0 survives, 1..second_base are skipped, everything after is intact.
    assert_eq!(all[0].offset, 0);
    assert_eq!(all[0].payload, payload(&tags[0], 300));
    assert_eq!(all[1].offset, second_base);
    check(&all[1..], second_base, &tags[second_base as usize..], 300);
    assert_eq!(spool.stats().next_offset, 60);
    // The damaged file itself is left as it was.
    let mut b = [0u8; 2];
    f.read_exact_at(&mut b, 20 + 318 + 50).unwrap();
    assert_eq!(&b, b"ZZ");
}

#[tokio::test]
async fn cursors_are_independent_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 4096, &["kafka", "nats", "rabbit"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    fill(&spool, 10, 1, 100).await;
    spool.commit("kafka", 7).await.unwrap();
    spool.commit("nats", 3).await.unwrap();
    // Cursors never move backwards.
    spool.commit("kafka", 5).await.unwrap();
    assert_eq!(spool.cursor("kafka").unwrap(), 7);
    assert_eq!(spool.cursor("nats").unwrap(), 3);
    assert_eq!(spool.cursor("rabbit").unwrap(), 0);
    assert!(matches!(
        spool.commit("nope", 1).await,
        Err(SpoolError::UnknownSink(s)) if s == "nope"
    ));
    assert!(matches!(
        spool.cursor("nope"),
        Err(SpoolError::UnknownSink(_))
    ));
    let stats = spool.stats();
    let lag: Vec<(String, u64, u64)> = stats
        .sinks
        .iter()
        .map(|l| (l.sink.clone(), l.cursor, l.pending_records))
        .collect();
    assert_eq!(
        lag,
        vec![
            ("kafka".to_string(), 7, 3),
            ("nats".to_string(), 3, 7),
            ("rabbit".to_string(), 0, 10)
        ]
    );
    drop(spool);

    let spool = Spool::open(cfg).await.unwrap();
    assert_eq!(spool.cursor("kafka").unwrap(), 7);
    assert_eq!(spool.cursor("nats").unwrap(), 3);
    assert_eq!(spool.cursor("rabbit").unwrap(), 0);
    // Delivery resumes from each cursor.
    assert_eq!(
        spool.read(spool.cursor("nats").unwrap(), 1).await.unwrap()[0].offset,
        3
    );
}

#[tokio::test]
async fn concurrent_commits_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let sinks: Vec<String> = (0..16).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = sinks.iter().map(|s| s.as_str()).collect();
    let cfg = config(dir.path(), 1 << 30, 4096, &refs);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    fill(&spool, 40, 1, 100).await;
    let mut tasks = Vec::new();
    for (i, s) in sinks.iter().enumerate() {
        let spool = spool.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for c in 1..=(i as u64 + 10) {
                spool.commit(&s, c).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(spool);
    let spool = Spool::open(cfg).await.unwrap();
    for (i, s) in sinks.iter().enumerate() {
        assert_eq!(spool.cursor(s).unwrap(), i as u64 + 10);
    }
}

#[tokio::test]
async fn segments_deleted_only_after_every_sink_passed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 2048, &["a", "b"]);
    let spool = Spool::open(cfg).await.unwrap();
    fill(&spool, 20, 1, 400).await;
    let before = segment_files(dir.path());
    assert!(before.len() >= 5);
    let second_base: u64 = before[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let third_base: u64 = before[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    spool.commit("a", 20).await.unwrap();
    assert_eq!(
        segment_files(dir.path()),
        before,
        "b has not passed anything"
    );
    spool.commit("b", second_base - 1).await.unwrap();
    assert_eq!(
        segment_files(dir.path()),
        before,
        "b is inside the first segment"
    );
    spool.commit("b", second_base).await.unwrap();
    assert_eq!(segment_files(dir.path()), before[1..].to_vec());
    assert_eq!(spool.stats().first_offset, second_base);
    // Reads below the first retained offset start at the first retained record.
    assert_eq!(spool.read(0, 1).await.unwrap()[0].offset, second_base);
    spool.commit("b", third_base + 1).await.unwrap();
    assert_eq!(segment_files(dir.path()), before[2..].to_vec());
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(spool.stats().bytes, on_disk);
}

#[tokio::test]
async fn full_when_max_bytes_reached_then_ok_after_commits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 8192, 2048, &["a"]);
    let spool = Spool::open(cfg).await.unwrap();
    let mut accepted = 0u64;
    let err = loop {
        match spool.append(vec![rec(&format!("r{accepted}"), 500)]).await {
            Ok(r) => {
                assert_eq!(r.first_offset, accepted);
                accepted += 1;
            }
            Err(e) => break e,
        }
        assert!(accepted < 100, "never became full");
    };
    match err {
        SpoolError::Full { used, max } => {
            assert_eq!(max, 8192);
            assert!(used <= 8192);
            assert_eq!(used, spool.stats().bytes);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(spool.stats().bytes <= 8192);
    // Nothing was dropped: every accepted record is still readable.
    let all = read_all(&spool, 0).await;
    assert_eq!(all.len() as u64, accepted);
    // Still full on retry.
    assert!(matches!(
        spool.append(vec![rec("again", 500)]).await,
        Err(SpoolError::Full { .. })
    ));
    spool.commit("a", accepted).await.unwrap();
    let r = spool.append(vec![rec("after", 500)]).await.unwrap();
    assert_eq!(r.first_offset, accepted);
    assert!(spool.stats().bytes <= 8192);
}

#[tokio::test]
async fn record_larger_than_segment_is_rejected_and_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 4096, &["a"]))
        .await
        .unwrap();
    let batch = vec![rec("ok", 100), rec("huge", 5000)];
    assert!(matches!(
        spool.append(batch).await,
        Err(SpoolError::RecordTooLarge { max: 4096, .. })
    ));
    assert_eq!(spool.stats().next_offset, 0);
    let r = spool.append(vec![rec("ok", 100)]).await.unwrap();
    assert_eq!(r.first_offset, 0);
}

#[tokio::test]
async fn new_sink_starts_at_oldest_and_removed_sink_releases_segments() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 30, 2048, &["a", "b"]))
        .await
        .unwrap();
    fill(&spool, 20, 1, 400).await;
    let files = segment_files(dir.path());
    let second_base: u64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    spool.commit("a", 20).await.unwrap();
    spool.commit("b", second_base).await.unwrap();
    spool.close().await;
    drop(spool);

    // "b" removed, "c" added: c starts at the oldest retained record.
    let spool = Spool::open(config(dir.path(), 1 << 30, 2048, &["a", "c"]))
        .await
        .unwrap();
    assert_eq!(spool.cursor("a").unwrap(), 20);
    assert_eq!(spool.cursor("c").unwrap(), second_base);
    assert!(matches!(spool.cursor("b"), Err(SpoolError::UnknownSink(_))));
    drop(spool);

    // "c" removed too: only "a", which passed everything, holds segments now.
    let spool = Spool::open(config(dir.path(), 1 << 30, 2048, &["a"]))
        .await
        .unwrap();
    spool.close().await;
    let stats = spool.stats();
    assert_eq!(stats.records, 0);
    assert_eq!(stats.next_offset, 20);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[tokio::test]
async fn close_finishes_pending_appends_then_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 30, 1 << 20, &["a"]))
        .await
        .unwrap();
    let pending: Vec<_> = (0..20)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(vec![rec(&format!("p{i}"), 100)]).await })
        })
        .collect();
    // Let every task enqueue its append before closing.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    spool.close().await;
    let mut ok = 0;
    for p in pending {
        match p.await.unwrap() {
            Ok(_) => ok += 1,
            Err(SpoolError::Closed) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Every acknowledged append is readable; nothing else was written.
    assert_eq!(spool.stats().next_offset, ok);
    assert!(matches!(
        spool.append(vec![rec("late", 10)]).await,
        Err(SpoolError::Closed)
    ));
}

#[tokio::test]
async fn wait_for_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 30, 1 << 20, &["a"]))
        .await
        .unwrap();
    assert!(!spool.wait_for(0, Duration::from_millis(1)).await);
    let waiter = {
        let spool = spool.clone();
        tokio::spawn(async move { spool.wait_for(1, Duration::from_secs(3600)).await })
    };
    spool
        .append(vec![rec("a", 10), rec("b", 10)])
        .await
        .unwrap();
    assert!(waiter.await.unwrap());
    assert!(spool.wait_for(0, Duration::ZERO).await);
    assert!(!spool.wait_for(2, Duration::from_millis(1)).await);
}

#[tokio::test]
async fn stats_report_oldest_pending_age() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 1 << 20, &["a", "b"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    for i in 0..100u64 {
        spool
            .append(vec![NewRecord {
                kind: RecordKind::DeadLetter,
                accepted_at_ms: 1000 + i,
                payload: Bytes::from_static(b"{}"),
                attachment: None,
            }])
            .await
            .unwrap();
    }
    spool.commit("a", 40).await.unwrap();
    spool.commit("b", 100).await.unwrap();
    let lag = |s: &relay_spool::SpoolStats, n: &str| {
        s.sinks.iter().find(|l| l.sink == n).cloned().unwrap()
    };
    let stats = spool.stats();
    assert_eq!(lag(&stats, "a").oldest_accepted_at_ms, Some(1040));
    assert_eq!(lag(&stats, "a").pending_records, 60);
    assert_eq!(lag(&stats, "b").oldest_accepted_at_ms, None);
    assert_eq!(lag(&stats, "b").pending_records, 0);
    drop(spool);
    // From disk (approximate to the sparse index: never younger than the true record).
    let spool = Spool::open(cfg).await.unwrap();
    let stats = spool.stats();
    let oldest = lag(&stats, "a").oldest_accepted_at_ms.unwrap();
    assert!((1000..=1040).contains(&oldest), "{oldest}");
    let r = spool.read(40, 1).await.unwrap();
    assert_eq!(r[0].kind, RecordKind::DeadLetter);
    assert_eq!(r[0].accepted_at_ms, 1040);
}

#[tokio::test]
async fn dispatcher_keeping_up_does_not_roll_a_segment_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 30, 1 << 20, &["a"]))
        .await
        .unwrap();
    for i in 0..50 {
        let r = spool
            .append(vec![rec(&format!("r{i}"), 200)])
            .await
            .unwrap();
        spool.commit("a", r.last_offset + 1).await.unwrap();
    }
    spool.close().await;
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(spool.stats().next_offset, 50);
}

#[tokio::test]
async fn full_single_segment_spool_frees_space_once_delivered() {
    // max_bytes == segment_bytes: the only segment is the active one; once every sink has
    // passed it, a full append rolls it away instead of failing forever.
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 4096, 4096, &["a"]))
        .await
        .unwrap();
    let mut n = 0u64;
    while spool.append(vec![rec(&format!("r{n}"), 300)]).await.is_ok() {
        n += 1;
    }
    assert!(n > 5);
    assert!(matches!(
        spool.append(vec![rec("x", 300)]).await,
        Err(SpoolError::Full { max: 4096, .. })
    ));
    spool.commit("a", n - 1).await.unwrap();
    // Not everything delivered yet: still full, nothing dropped.
    assert!(matches!(
        spool.append(vec![rec("x", 300)]).await,
        Err(SpoolError::Full { .. })
    ));
    assert_eq!(spool.read(n - 1, 10).await.unwrap().len(), 1);
    spool.commit("a", n).await.unwrap();
    let r = spool.append(vec![rec("x", 300)]).await.unwrap();
    assert_eq!(r.first_offset, n);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[tokio::test]
async fn crash_during_segment_creation_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 1 << 20, &["a"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    let tags = fill(&spool, 10, 1, 100).await;
    spool.close().await;
    drop(spool);
    // A successor segment whose header never fully reached the disk.
    std::fs::write(dir.path().join(format!("{:020}.seg", 10)), b"ARSP").unwrap();

    let spool = Spool::open(cfg).await.unwrap();
    assert_eq!(spool.stats().next_offset, 10);
    check(&read_all(&spool, 0).await, 0, &tags, 100);
    let r = spool.append(vec![rec("next", 100)]).await.unwrap();
    assert_eq!(r.first_offset, 10);
    assert_eq!(segment_files(dir.path()).len(), 2);
}

#[tokio::test]
async fn corrupt_header_of_last_segment_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 2048, &["a"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    let tags = fill(&spool, 12, 1, 400).await;
    spool.close().await;
    drop(spool);
    let files = segment_files(dir.path());
    let last = files.last().unwrap().clone();
    let last_base: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let f = OpenOptions::new().write(true).open(&last).unwrap();
    f.write_all_at(b"XX", 0).unwrap();
    drop(f);

    let spool = Spool::open(cfg).await.unwrap();
    // Records of the damaged segment are gone, the file is kept aside, the rest is intact.
    assert!(dir
        .path()
        .join(format!("{last_base:020}.seg.corrupt"))
        .exists());
    assert_eq!(spool.stats().next_offset, last_base);
    check(
        &read_all(&spool, 0).await,
        0,
        &tags[..last_base as usize],
        400,
    );
    let r = spool.append(vec![rec("next", 400)]).await.unwrap();
    assert_eq!(r.first_offset, last_base);
}

#[tokio::test]
async fn damaged_cursor_file_restarts_sinks_at_oldest_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 2048, &["a", "b"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    fill(&spool, 12, 1, 400).await;
    spool.commit("a", 9).await.unwrap();
    spool.commit("b", 5).await.unwrap();
    let first = spool.stats().first_offset;
    assert!(first > 0);
    spool.close().await;
    drop(spool);
    let cursors = dir.path().join("cursors");
    let mut bytes = std::fs::read(&cursors).unwrap();
    // Both copies (the file keeps two slots of 16 KiB; one torn slot falls back to the
    // other, see the cursors module's tests).
    bytes[10] ^= 0xff;
    bytes[(16 << 10) + 10] ^= 0xff;
    std::fs::write(&cursors, bytes).unwrap();

    // Duplicates, never loss: both sinks go back to the oldest retained record.
    let spool = Spool::open(cfg).await.unwrap();
    assert_eq!(spool.cursor("a").unwrap(), first);
    assert_eq!(spool.cursor("b").unwrap(), first);
    assert_eq!(spool.stats().next_offset, 12);
}

#[tokio::test]
async fn commit_beyond_end_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 30, 1 << 20, &["a"]))
        .await
        .unwrap();
    fill(&spool, 3, 1, 10).await;
    spool.commit("a", 1000).await.unwrap();
    assert_eq!(spool.cursor("a").unwrap(), 3);
    // The next append is still delivered to "a".
    let r = spool.append(vec![rec("n", 10)]).await.unwrap();
    assert_eq!(r.first_offset, 3);
    assert_eq!(spool.stats().sinks[0].pending_records, 1);
}

#[tokio::test]
async fn invalid_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for (max, seg) in [(1 << 20, 10), (1000, 4096)] {
        assert!(matches!(
            Spool::open(config(dir.path(), max, seg, &["a"])).await,
            Err(SpoolError::Io { .. })
        ));
    }
}

#[tokio::test]
async fn a_second_open_of_a_held_directory_is_refused_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let first = Spool::open(config(dir.path(), 1 << 20, 1 << 16, &["a"]))
        .await
        .unwrap();
    let second = Spool::open(config(dir.path(), 1 << 20, 1 << 16, &["a"])).await;
    assert!(
        matches!(second, Err(SpoolError::Locked { .. })),
        "a held spool directory was opened twice: {:?}",
        second.err()
    );
    first.close().await;
    let again = Spool::open(config(dir.path(), 1 << 20, 1 << 16, &["a"])).await;
    assert!(again.is_ok(), "{:?}", again.err());
}

/// Bit rot in an acknowledged record of the last segment: only that record is lost; the
/// intact ones after it are kept (they used to be cut away with it).
#[tokio::test]
async fn damage_in_the_last_segment_keeps_the_intact_records_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30, 1 << 20, &["a"]);
    let spool = Spool::open(cfg.clone()).await.unwrap();
    for tag in ["first", "second", "third", "fourth"] {
        spool.append(vec![rec(tag, 300)]).await.unwrap();
    }
    spool.close().await;
    drop(spool);
    // Damage the second record's body.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"second")
        .expect("record in the file");
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[bytes[at + 20] ^ 0xff], (at + 20) as u64)
        .unwrap();
    drop(f);

    let spool = Spool::open(cfg.clone()).await.unwrap();
    let got = spool.read(0, 10).await.unwrap();
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 2, 3], "only the damaged record is lost");
    assert!(got[1].payload.starts_with(b"{\"id\":\"third\""));
    // Appends go on after the kept records, and everything survives another restart.
    let r = spool.append(vec![rec("fifth", 10)]).await.unwrap();
    assert_eq!(r.first_offset, 4);
    spool.close().await;
    drop(spool);
    let spool = Spool::open(cfg).await.unwrap();
    let offsets: Vec<u64> = spool
        .read(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, [0, 2, 3, 4]);
}
