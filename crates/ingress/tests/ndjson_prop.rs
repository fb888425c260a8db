//! The NDJSON line reader yields the same lines (and the same error, and the same
//! remainder) however the byte stream is chunked, and agrees with a simple oracle.

use bytes::Bytes;
use proptest::prelude::*;
use relay_ingress::ndjson::{Line, LineReader, LineTooLong};

/// Everything a reader produces for `chunks`: lines up to the first error, the error, and
/// the unterminated remainder.
fn run(chunks: &[&[u8]], max: usize) -> (Vec<Line>, Option<LineTooLong>, Option<Bytes>) {
    let mut r = LineReader::new(max);
    let mut lines = Vec::new();
    for chunk in chunks {
        r.push(chunk);
        loop {
            match r.next_line() {
                Ok(Some(l)) => lines.push(l),
                Ok(None) => break,
                Err(e) => return (lines, Some(e), None),
            }
        }
    }
    (lines, None, r.finish())
}

/// Reference: split on `\n`, drop one `\r` before it, classify, check the length.
fn oracle(input: &[u8], max: usize) -> (Vec<Line>, Option<LineTooLong>, Option<Bytes>) {
    let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let rest = parts.pop().unwrap_or_default();
    let mut lines = Vec::new();
    for p in parts {
        let p = p.strip_suffix(b"\r").unwrap_or(p);
        if p.len() > max {
            return (lines, Some(LineTooLong { max }), None);
        }
        lines.push(if p.iter().all(u8::is_ascii_whitespace) {
            Line::Heartbeat
        } else {
            Line::Data(Bytes::copy_from_slice(p))
        });
    }
    let min_rest = rest.len() - usize::from(rest.last() == Some(&b'\r'));
    if min_rest > max {
        return (lines, Some(LineTooLong { max }), None);
    }
    let rest = (!rest.is_empty()).then(|| Bytes::copy_from_slice(rest));
    (lines, None, rest)
}

fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Lines of JSON-ish bytes (a small alphabet so `\r`, `\n` and spaces are frequent),
    // joined by `\n` or `\r\n`.
    let line = prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(b"{}\":,abc0123".to_vec()),
            1 => Just(b' '),
            1 => Just(b'\r'),
            1 => any::<u8>(),
        ],
        0..40,
    );
    let term = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(Vec::new())
    ];
    prop::collection::vec((line, term), 0..20).prop_map(|v| {
        v.into_iter()
            .flat_map(|(mut l, t)| {
                l.extend(t);
                l
            })
            .collect()
    })
}

fn chunked(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in cuts {
        out.push(input[prev..c].to_vec());
        prev = c;
    }
    out.push(input[prev..].to_vec());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn chunking_never_changes_the_lines(
        input in stream_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
        max in prop_oneof![Just(usize::MAX), 0usize..48],
    ) {
        let whole = run(&[input.as_slice()], max);
        let chunks = chunked(&input, &cuts);
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(&run(&refs, max), &whole);
        // One byte at a time, the worst case.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&run(&bytes, max), &whole);
        prop_assert_eq!(&oracle(&input, max), &whole);
    }

    #[test]
    fn data_lines_never_contain_a_newline(input in stream_bytes()) {
        let (lines, err, _) = run(&[input.as_slice()], usize::MAX);
        prop_assert!(err.is_none());
        for l in lines {
            if let Line::Data(b) = l {
                prop_assert!(!b.contains(&b'\n'));
                prop_assert!(!b.iter().all(u8::is_ascii_whitespace));
            }
        }
    }
}
