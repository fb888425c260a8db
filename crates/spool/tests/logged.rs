//! Damage that loses acknowledged data is never silent: it is logged at ERROR level.
//! (A separate test binary: it installs a global tracing subscriber that counts events.)

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

static ERRORS: AtomicUsize = AtomicUsize::new(0);
static NEXT_SPAN: AtomicUsize = AtomicUsize::new(1);
/// The tests in this binary share the error counter: run them one at a time. Each closes
/// every spool it opens before releasing this: a spool only dropped leaves its
/// `relay-spool-writer` thread working (and maybe logging, in a deleted directory) while
/// the next test counts errors.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct CountErrors;

impl Subscriber for CountErrors {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(NEXT_SPAN.fetch_add(1, Ordering::Relaxed) as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::ERROR {
            ERRORS.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn install() {
    let _ = tracing::subscriber::set_global_default(CountErrors);
}

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        segment_bytes: 2048,
        sinks: vec!["a".to_string()],
        min_free_bytes: None,
    }
}

async fn filled(dir: &Path, n: usize) -> Vec<PathBuf> {
    let spool = Spool::open(config(dir)).await.unwrap();
    for i in 0..n {
        spool
            .append(vec![NewRecord {
                kind: RecordKind::Envelope,
                accepted_at_ms: i as u64,
                payload: Bytes::from(vec![b'x'; 400]),
                attachment: None,
            }])
            .await
            .unwrap();
    }
    spool.close().await;
    seg_files(dir)
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn corruption_in_older_segment_is_logged_as_error() {
    let _serial = SERIAL.lock().await;
    install();
    let dir = tempfile::tempdir().unwrap();
    let files = filled(dir.path(), 12).await;
    assert!(files.len() >= 3);

    // A clean reopen logs no error.
    let before = ERRORS.load(Ordering::SeqCst);
    Spool::open(config(dir.path())).await.unwrap().close().await;
    assert_eq!(ERRORS.load(Ordering::SeqCst), before);

    let f = OpenOptions::new().write(true).open(&files[0]).unwrap();
    f.write_all_at(b"!!", 20 + 418 + 30).unwrap();
    drop(f);
    let spool = Spool::open(config(dir.path())).await.unwrap();
    assert!(ERRORS.load(Ordering::SeqCst) > before);
    // Offset 0 survives, the rest of the first segment is skipped, the log goes on.
    let got = spool.read(0, 2).await.unwrap();
    assert_eq!(got[0].offset, 0);
    assert_eq!(got[1].offset, 4);
    spool.close().await;
}

#[tokio::test]
async fn torn_tail_is_not_an_error_but_lost_cursor_position_is() {
    let _serial = SERIAL.lock().await;
    install();
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 12).await;
    {
        let spool = Spool::open(config(dir.path())).await.unwrap();
        spool.commit("a", 12).await.unwrap();
        spool.close().await;
    }
    // Torn tail of never-acknowledged data: cut with a warning, not an error.
    let last = seg_files(dir.path()).pop().unwrap();
    let f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all_at(&[7u8; 9], f.metadata().unwrap().len())
        .unwrap();
    drop(f);
    let before = ERRORS.load(Ordering::SeqCst);
    let spool = Spool::open(config(dir.path())).await.unwrap();
    assert_eq!(spool.stats().next_offset, 12);
    // Closed first: whatever its writer thread does after the open is counted too.
    spool.close().await;
    assert_eq!(ERRORS.load(Ordering::SeqCst), before);

    // Every segment file deleted behind the spool's back: the sink's cursor (12) keeps the
    // offsets from being reused, and that is reported.
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "seg") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let spool = Spool::open(config(dir.path())).await.unwrap();
    assert!(ERRORS.load(Ordering::SeqCst) > before);
    assert_eq!(spool.stats().next_offset, 12);
    let r = spool
        .append(vec![NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 0,
            payload: Bytes::from_static(b"{}"),
            attachment: None,
        }])
        .await
        .unwrap();
    assert_eq!(r.first_offset, 12);
    spool.close().await;
}

#[tokio::test]
async fn bit_rot_inside_last_segment_is_logged_as_error() {
    let _serial = SERIAL.lock().await;
    install();
    let dir = tempfile::tempdir().unwrap();
    // Segments hold 4 records of 418 bytes; 11 records leave 3 in the last segment (base 8).
    let files = filled(dir.path(), 11).await;
    let last = files.last().unwrap();
    assert!(last.ends_with(format!("{:020}.seg", 8)));
    let before = ERRORS.load(Ordering::SeqCst);
    // Flip a payload byte of the first record of the last segment; records 9 and 10 behind
    // it are intact.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(last)
        .unwrap();
    f.write_all_at(b"?", 20 + 100).unwrap();
    drop(f);
    let spool = Spool::open(config(dir.path())).await.unwrap();
    assert!(ERRORS.load(Ordering::SeqCst) > before);
    // Only the damaged record is lost: 9 and 10 are kept (in a segment of their own).
    assert_eq!(spool.stats().next_offset, 11);
    let offsets: Vec<u64> = spool
        .read(7, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, [7, 9, 10]);
    spool.close().await;
}
