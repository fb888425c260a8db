//! Crash safety with a real process: a child appends in a loop and prints every
//! acknowledged offset; it is killed with SIGKILL; every acknowledged record must survive.
//!
//! The child is this test binary re-executed with `RELAY_SPOOL_CRASH_DIR` set, running only
//! the `crash_child` test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use bytes::Bytes;
use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig};

const DIR_ENV: &str = "RELAY_SPOOL_CRASH_DIR";
const ROUND_ENV: &str = "RELAY_SPOOL_CRASH_ROUND";
const ACKS_BEFORE_KILL: usize = 400;
const ROUNDS: u32 = 3;

fn config(dir: &str) -> SpoolConfig {
    SpoolConfig {
        dir: dir.into(),
        max_bytes: 1 << 32,
        segment_bytes: 64 * 1024,
        sinks: vec!["a".to_string()],
        min_free_bytes: None,
    }
}

fn payload(round: u32, task: u32, seq: u64, i: u32) -> Bytes {
    let mut s = format!("{{\"round\":{round},\"task\":{task},\"seq\":{seq},\"i\":{i},\"pad\":\"");
    while s.len() < 1400 {
        s.push_str("abcdefghij");
    }
    s.push_str("\"}");
    Bytes::from(s)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Runs only inside the child process.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(round)) = (std::env::var(DIR_ENV), std::env::var(ROUND_ENV)) else {
        return;
    };
    let round: u32 = round.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let spool = Spool::open(config(&dir)).await.unwrap();
        let mut tasks = Vec::new();
        for task in 0..6u32 {
            let spool = spool.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0u64.. {
                    let n = 1 + (seq % 4) as u32;
                    let batch = (0..n)
                        .map(|i| NewRecord {
                            kind: RecordKind::Envelope,
                            accepted_at_ms: seq,
                            payload: payload(round, task, seq, i),
                            attachment: None,
                        })
                        .collect();
                    let r = spool.append(batch).await.unwrap();
                    say(&format!("ACK {task} {seq} {} {n}", r.first_offset));
                }
            }));
        }
        // A committer moving the cursor to half of what exists, so segments get deleted
        // while appends run.
        let committer = tokio::spawn(async move {
            loop {
                let next = spool.stats().next_offset / 2;
                spool.commit("a", next).await.unwrap();
                say(&format!("COMMIT {next}"));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        for t in tasks {
            t.await.unwrap();
        }
        committer.await.unwrap();
    });
}

#[test]
fn acknowledged_records_survive_sigkill() {
    if std::env::var(DIR_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_string();
    let exe = std::env::current_exe().unwrap();
    // offset -> (round, task, seq, i)
    let mut acked: BTreeMap<u64, (u32, u32, u64, u32)> = BTreeMap::new();
    let mut committed = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, &dir_s)
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut acks_this_round = 0;
        let mut killed = false;
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // A line cut by the kill (no newline) was not fully printed: ignore it.
            let Some(l) = line.strip_suffix('\n') else {
                continue;
            };
            let parts: Vec<&str> = l.split(' ').collect();
            match parts.as_slice() {
                ["ACK", task, seq, first, n] => {
                    let (task, seq, first, n): (u32, u64, u64, u32) = (
                        task.parse().unwrap(),
                        seq.parse().unwrap(),
                        first.parse().unwrap(),
                        n.parse().unwrap(),
                    );
                    for i in 0..n {
                        let prev = acked.insert(first + u64::from(i), (round, task, seq, i));
                        assert!(
                            prev.is_none(),
                            "offset {} acknowledged twice",
                            first + u64::from(i)
                        );
                    }
                    acks_this_round += 1;
                }
                ["COMMIT", c] => committed = committed.max(c.parse().unwrap()),
                _ => {}
            }
            if acks_this_round == ACKS_BEFORE_KILL && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(killed, "child exited on its own: {status:?}");
        assert!(!status.success());
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let spool = Spool::open(config(&dir_s)).await.unwrap();
        let cursor = spool.cursor("a").unwrap();
        assert!(
            cursor >= committed,
            "cursor {cursor} < committed {committed}"
        );
        let first = spool.stats().first_offset;
        assert!(first <= cursor);
        let mut checked = 0;
        for (&offset, &(round, task, seq, i)) in acked.range(cursor..) {
            let got = spool.read(offset, 1).await.unwrap();
            assert_eq!(got.len(), 1, "acknowledged offset {offset} missing");
            assert_eq!(got[0].offset, offset);
            assert_eq!(got[0].accepted_at_ms, seq);
            assert_eq!(
                got[0].payload,
                payload(round, task, seq, i),
                "offset {offset}"
            );
            checked += 1;
        }
        eprintln!(
            "checked {checked} acknowledged records, {} acked in total, cursor {cursor}",
            acked.len()
        );
        assert!(checked > 0, "nothing left to check");
        // Appends continue after the last surviving record.
        let next = spool.stats().next_offset;
        assert!(acked.keys().all(|&o| o < next));
        let r = spool
            .append(vec![NewRecord {
                kind: RecordKind::Envelope,
                accepted_at_ms: 0,
                payload: Bytes::from_static(b"{}"),
                attachment: None,
            }])
            .await
            .unwrap();
        assert_eq!(r.first_offset, next);
    });
}
