//! `activity-relay normalize`: deliveries in, envelopes out (NDJSON).
//!
//! Reads each FILE (or stdin when none) as a sequence of JSON values, pretty-printed or one
//! per line, normalizes every value as one delivery and writes one envelope per line to
//! stdout. A value that gives no envelope is reported on stderr with the file name, its
//! index in the file and the byte offset where it starts (after the previous value), and
//! processing goes on. A stretch that is not JSON is reported and ends that file (there is
//! no reliable way to find the next value in it). [`run`] returns `Ok(false)` when anything
//! was reported, `Err` only when writing the output fails.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use relay_envelope::{normalize, Context, IngressKind};
use serde_json::value::RawValue;

/// The `source` used when none is given.
pub const DEFAULT_SOURCE: &str = "/x/account-activity/webhook/cli";

/// Arguments of `activity-relay normalize`.
#[derive(Debug, Clone, clap::Args)]
pub struct NormalizeArgs {
    /// How the deliveries arrived: webhook, stream or replay (sets the `ingress` attribute).
    #[arg(long, value_name = "INGRESS", default_value = "webhook")]
    pub ingress: IngressKind,
    /// The CloudEvents `source` of the envelopes.
    #[arg(long, value_name = "SOURCE", default_value = DEFAULT_SOURCE)]
    pub source: String,
    /// Receive time (RFC 3339) for events that carry no time of their own; default now.
    #[arg(long = "receive-time", value_name = "RFC3339")]
    pub receive_time: Option<DateTime<Utc>>,
    /// Files of deliveries (JSON values, pretty-printed or NDJSON); stdin when none.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Runs the command. `Ok(true)`: every value gave envelopes; `Ok(false)`: something was
/// reported on `stderr`; `Err`: writing to `stdout` or `stderr` failed.
pub fn run<R: Read, W: Write, E: Write>(
    args: &NormalizeArgs,
    stdin: R,
    mut stdout: W,
    mut stderr: E,
) -> io::Result<bool> {
    let ctx = Context {
        ingress: args.ingress,
        source: args.source.clone(),
        received_at: args.receive_time.unwrap_or_else(Utc::now),
        formats: relay_envelope::Formats::ALL,
    };
    let mut ok = true;
    if args.files.is_empty() {
        ok &= normalize_input("<stdin>", stdin, &ctx, &mut stdout, &mut stderr)?;
    } else {
        for path in &args.files {
            let name = path.display().to_string();
            match File::open(path) {
                Ok(f) => ok &= normalize_input(&name, f, &ctx, &mut stdout, &mut stderr)?,
                Err(e) => {
                    writeln!(stderr, "{name}: cannot open: {e}")?;
                    ok = false;
                }
            }
        }
    }
    stdout.flush()?;
    stderr.flush()?;
    Ok(ok)
}

/// One input: every JSON value in it, in order.
fn normalize_input<R: Read, W: Write, E: Write>(
    name: &str,
    input: R,
    ctx: &Context,
    out: &mut W,
    err: &mut E,
) -> io::Result<bool> {
    let mut values =
        serde_json::Deserializer::from_reader(BufReader::new(input)).into_iter::<Box<RawValue>>();
    let mut ok = true;
    let mut index = 0usize;
    loop {
        let offset = values.byte_offset();
        match values.next() {
            None => break,
            Some(Ok(raw)) => {
                match normalize(raw.get().as_bytes(), ctx) {
                    Ok(envelopes) => {
                        for e in envelopes {
                            out.write_all(&e.to_json())?;
                            out.write_all(b"\n")?;
                        }
                    }
                    Err(e) => {
                        writeln!(err, "{name}: value {index} (from byte {offset}): {e}")?;
                        ok = false;
                    }
                }
                // Envelopes appear as their delivery is read (useful with `tail -f`).
                out.flush()?;
            }
            Some(Err(e)) => {
                let what = if e.is_io() { "read error" } else { "not JSON" };
                writeln!(
                    err,
                    "{name}: value {index} (from byte {offset}): {what}: {e}; rest of {name} skipped"
                )?;
                ok = false;
                break;
            }
        }
        index += 1;
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use relay_envelope::Envelope;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn args(files: Vec<PathBuf>) -> NormalizeArgs {
        NormalizeArgs {
            ingress: IngressKind::Stream,
            source: "/x/activity/stream/test".to_owned(),
            receive_time: Some("2030-01-02T03:04:05Z".parse().unwrap()),
            files,
        }
    }

    /// Runs on `input` as stdin; returns (result, stdout lines as envelopes, stderr).
    fn run_stdin(input: &[u8]) -> (bool, Vec<Envelope>, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let ok = run(&args(vec![]), input, &mut out, &mut err).unwrap();
        let text = String::from_utf8(out).unwrap();
        let envs = text
            .lines()
            .map(|l| Envelope::from_json(l.as_bytes()).unwrap())
            .collect();
        (ok, envs, String::from_utf8(err).unwrap())
    }

    #[test]
    fn pretty_and_ndjson_values_give_one_envelope_per_line() {
        let pretty_batch = fixture("aaa/tweet_create.batch3.json");
        let compact_dm: serde_json::Value =
            serde_json::from_str(&fixture("aaa/direct_message.sent.json")).unwrap();
        let input = format!(
            "{pretty_batch}\n\r\n{}\n{}",
            serde_json::to_string(&compact_dm).unwrap(),
            fixture("xaa/like.create.json")
        );
        let (ok, envs, err) = run_stdin(input.as_bytes());
        assert!(ok, "{err}");
        assert_eq!(err, "");
        let types: Vec<_> = envs.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "post.create",
                "post.create",
                "post.create",
                "dm.sent",
                "like.create"
            ]
        );
        assert!(envs.iter().all(|e| e.ingress == IngressKind::Stream));
        assert!(envs.iter().all(|e| e.source == "/x/activity/stream/test"));
    }

    #[test]
    fn a_failing_value_is_reported_and_the_rest_processed() {
        let input = concat!(
            "{\"for_user_id\":\"1\",\"tweet_create_events\":[{\"id_str\":\"5\",\"user\":{\"id_str\":\"1\"}}]}\n",
            "{\"errors\":[{\"title\":\"operational-disconnect\"}]}\n",
            "{\"something\":\"new\"}\n"
        );
        let (ok, envs, err) = run_stdin(input.as_bytes());
        assert!(!ok);
        assert_eq!(envs.len(), 2);
        assert_eq!(envs[0].event_type, "post.create");
        assert_eq!(envs[1].event_type, "unknown");
        assert_eq!(envs[1].time.to_rfc3339(), "2030-01-02T03:04:05+00:00");
        assert!(
            err.starts_with("<stdin>: value 1 (from byte 80): "),
            "{err}"
        );
        assert!(err.contains("operational-disconnect"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn a_non_json_stretch_ends_the_file_without_looping() {
        let input = b"{\"a\":1}\nthis is not json {\"b\":2}\n{\"c\":3}\n";
        let (ok, envs, err) = run_stdin(input);
        assert!(!ok);
        assert_eq!(envs.len(), 1);
        assert!(err.contains("value 1 (from byte 7): not JSON"), "{err}");
        assert!(err.contains("rest of <stdin> skipped"), "{err}");
        assert_eq!(err.lines().count(), 1);
        // Invalid UTF-8 is reported the same way.
        let (ok, envs, err) = run_stdin(b"{\"a\":\"\xff\"}\n{\"b\":1}");
        assert!(!ok);
        assert!(envs.is_empty());
        assert!(err.contains("value 0 (from byte 0): not JSON"), "{err}");
        // Empty input and blank lines only: nothing to do, nothing failed.
        let (ok, envs, err) = run_stdin(b"\r\n\r\n  \n");
        assert!(ok && envs.is_empty() && err.is_empty());
    }

    #[test]
    fn files_are_read_in_order_and_missing_ones_reported() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.ndjson");
        std::fs::write(&a, fixture("aaa/follow.json")).unwrap();
        std::fs::write(
            &b,
            format!(
                "{}\nnot json\n",
                serde_json::to_string(
                    &serde_json::from_str::<serde_json::Value>(&fixture("xaa/post.create.json"))
                        .unwrap()
                )
                .unwrap()
            ),
        )
        .unwrap();
        let missing = dir.path().join("missing.json");
        let mut out = Vec::new();
        let mut err = Vec::new();
        let ok = run(
            &args(vec![a.clone(), missing.clone(), b.clone()]),
            &b"{\"ignored\":1}"[..],
            &mut out,
            &mut err,
        )
        .unwrap();
        assert!(!ok);
        let out = String::from_utf8(out).unwrap();
        let types: Vec<_> = out
            .lines()
            .map(|l| Envelope::from_json(l.as_bytes()).unwrap().event_type)
            .collect();
        assert_eq!(types, ["follow.follow", "post.create"]);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains(&format!("{}: cannot open", missing.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!("{}: value 1 (from byte", b.display())),
            "{err}"
        );
        assert_eq!(err.lines().count(), 2, "{err}");
    }

    #[test]
    fn write_errors_are_returned() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let r = run(&args(vec![]), &b"{\"a\":1}"[..], Broken, Vec::new());
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: NormalizeArgs,
    }

    #[test]
    fn arguments_parse_with_defaults() {
        let cli = Cli::try_parse_from(["normalize"]).unwrap();
        assert_eq!(cli.args.ingress, IngressKind::Webhook);
        assert_eq!(cli.args.source, DEFAULT_SOURCE);
        assert!(cli.args.receive_time.is_none());
        assert!(cli.args.files.is_empty());
        let cli = Cli::try_parse_from([
            "normalize",
            "--ingress",
            "replay",
            "--source",
            "/x/s",
            "--receive-time",
            "2025-05-19T14:01:46Z",
            "a.json",
            "b.json",
        ])
        .unwrap();
        assert_eq!(cli.args.ingress, IngressKind::Replay);
        assert_eq!(cli.args.source, "/x/s");
        assert_eq!(
            cli.args.receive_time.map(|t| t.timestamp()),
            Some(1_747_663_306)
        );
        assert_eq!(cli.args.files.len(), 2);
        assert!(Cli::try_parse_from(["normalize", "--ingress", "carrier-pigeon"]).is_err());
        assert!(Cli::try_parse_from(["normalize", "--receive-time", "yesterday"]).is_err());
    }
}
