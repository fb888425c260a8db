use std::path::{Path, PathBuf};

use relay_sink::file::{FileSink, FileSinkConfig, FileSinkError};
use relay_sink::{Message, Sink};
use relay_testkit::fixtures;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn lines(dir: &Path) -> Vec<String> {
    files(dir)
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn batch(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| fixtures::message(0, fixtures::sample("post.create", &format!("{i:04}"))))
        .collect()
}

#[tokio::test]
async fn lines_round_trip_dead_letters_included() {
    let dir = tempfile::tempdir().unwrap();
    let sink =
        FileSink::open("events", &FileSinkConfig::new(dir.path().to_str().unwrap())).unwrap();
    assert_eq!(sink.name(), "events");
    let mut msgs = batch(3);
    msgs.push(fixtures::dead_letter(0, b"\xff\xfe not json", "not JSON"));
    let results = sink.publish(&msgs).await;
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert!(sink.ready().await);
    sink.close().await.unwrap();

    let got = lines(dir.path());
    let want: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8(m.json.to_vec()).unwrap())
        .collect();
    assert_eq!(got, want);
    // Each line parses back to the same envelope / dead letter.
    let env: relay_envelope::Envelope = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(env.subject, "0000");
    let dl: relay_envelope::DeadLetter = serde_json::from_str(&got[3]).unwrap();
    assert_eq!(dl.raw, b"\xff\xfe not json");

    let name = files(dir.path())[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        name.starts_with("events-") && name.ends_with("-000000.ndjson"),
        "{name}"
    );
}

#[tokio::test]
async fn rotates_by_size_without_losing_or_splitting_lines() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = batch(20);
    let line_len = msgs[0].json.len() as u64 + 1;
    let cfg = FileSinkConfig {
        max_file_bytes: line_len * 3,
        fsync: false,
        ..FileSinkConfig::new(dir.path().to_str().unwrap())
    };
    let sink = FileSink::open("s", &cfg).unwrap();
    for chunk in msgs.chunks(7) {
        assert!(sink.publish(chunk).await.iter().all(|r| r.is_ok()));
    }
    sink.close().await.unwrap();
    let fs = files(dir.path());
    assert_eq!(fs.len(), 7, "20 lines at most 3 per file: {fs:?}");
    for f in &fs {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= line_len * 3, "{f:?} has {len} bytes");
    }
    let want: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8(m.json.to_vec()).unwrap())
        .collect();
    assert_eq!(lines(dir.path()), want, "order kept across files");
}

#[tokio::test]
async fn oversized_line_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileSinkConfig {
        max_file_bytes: 10,
        ..FileSinkConfig::new(dir.path().to_str().unwrap())
    };
    let sink = FileSink::open("s", &cfg).unwrap();
    assert!(sink.publish(&batch(2)).await.iter().all(|r| r.is_ok()));
    assert_eq!(lines(dir.path()).len(), 2);
    // The empty first file is reused for the first line, so just two files.
    assert_eq!(files(dir.path()).len(), 2);
}

#[tokio::test]
async fn max_files_prunes_oldest_and_restart_continues_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = batch(10);
    let line_len = msgs[0].json.len() as u64 + 1;
    let cfg = FileSinkConfig {
        max_file_bytes: line_len,
        max_files: Some(3),
        ..FileSinkConfig::new(dir.path().to_str().unwrap())
    };
    // Another sink's files in the same directory are left alone.
    std::fs::write(dir.path().join("s-1-20250101T000000Z-000000.ndjson"), "x\n").unwrap();
    let sink = FileSink::open("s", &cfg).unwrap();
    assert!(sink.publish(&msgs).await.iter().all(|r| r.is_ok()));
    let ours: Vec<String> = files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .filter(|n| !n.starts_with("s-1-"))
        .collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert!(ours[2].ends_with("-000009.ndjson"), "{ours:?}");
    assert!(dir
        .path()
        .join("s-1-20250101T000000Z-000000.ndjson")
        .exists());
    let last = sink.current_path().unwrap();
    drop(sink);

    let sink = FileSink::open("s", &cfg).unwrap();
    let now = sink.current_path().unwrap();
    assert_ne!(now, last);
    assert!(now.to_str().unwrap().ends_with("-000010.ndjson"), "{now:?}");
}

#[test]
fn missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = FileSink::open("events", &FileSinkConfig::new(missing.to_str().unwrap()))
        .err()
        .unwrap();
    assert!(
        matches!(err, FileSinkError::MissingDirectory { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("does not exist") && msg.contains("nope"),
        "{msg}"
    );
}

#[test]
fn a_file_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, "").unwrap();
    let err = FileSink::open("events", &FileSinkConfig::new(f.to_str().unwrap()))
        .err()
        .unwrap();
    assert!(matches!(err, FileSinkError::NotADirectory { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn read_only_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    // root ignores permissions: then there is nothing to test.
    if std::fs::write(dir.path().join("probe"), "").is_ok() {
        eprintln!("running as a user that can write to read-only directories; skipped");
        return;
    }
    let err = FileSink::open("events", &FileSinkConfig::new(dir.path().to_str().unwrap()))
        .err()
        .unwrap();
    assert!(matches!(err, FileSinkError::NotWritable { .. }), "{err}");
    assert!(err.to_string().contains("cannot create a file"), "{err}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn config_defaults_and_unknown_fields() {
    #[derive(serde::Deserialize)]
    struct Wrap {
        sink: FileSinkConfig,
    }
    let w: Wrap = serde_json::from_str(r#"{"sink":{"path":"/tmp"}}"#).unwrap();
    assert_eq!(w.sink.max_file_bytes, 64 * 1024 * 1024);
    assert_eq!(w.sink.max_files, None);
    assert!(w.sink.fsync);
    assert!(serde_json::from_str::<Wrap>(r#"{"sink":{"path":"/tmp","fsynk":true}}"#).is_err());
    // No path: parses (the defaults live in one place) and validate() names it.
    let missing: Wrap = serde_json::from_str(r#"{"sink":{}}"#).unwrap();
    let err = missing.sink.validate("f").unwrap_err().to_string();
    assert!(err.contains("path is required"), "{err}");
}

#[test]
fn invalid_limits_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = FileSinkConfig::new(dir.path().to_str().unwrap());
    cfg.max_files = Some(0);
    assert!(matches!(
        FileSink::open("s", &cfg),
        Err(FileSinkError::Config { .. })
    ));
}

#[tokio::test]
async fn stdout_mode_confirms_writes() {
    let sink = FileSink::open("out", &FileSinkConfig::new("-")).unwrap();
    assert_eq!(sink.current_path(), None);
    let r = sink.publish(&batch(2)).await;
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    assert!(sink.publish(&[]).await.is_empty());
    sink.close().await.unwrap();
}

#[test]
fn sink_names_are_made_file_name_safe() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::open(
        "../evil/name",
        &FileSinkConfig::new(dir.path().to_str().unwrap()),
    )
    .unwrap();
    let p = sink.current_path().unwrap();
    assert_eq!(
        p.parent().unwrap(),
        dir.path(),
        "stays inside the directory: {p:?}"
    );
    let name = p.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("_.._evil_name-"),
        "no hidden files: {name}"
    );
}
