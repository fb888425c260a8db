//! Fuzzes the activity-stream NDJSON line reader: no panic on any input, lines never hold a
//! newline or exceed the limit, and the result does not depend on how the bytes are chunked.
//!
//! Input layout: byte 0 = max line length (0..=255, so the limit is exercised), byte 1 =
//! chunk-size seed, the rest = the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_ingress::ndjson::{Line, LineReader};

fn run<'a>(
    chunks: impl Iterator<Item = &'a [u8]>,
    max: usize,
) -> (Vec<Line>, bool, Option<Vec<u8>>) {
    let mut r = LineReader::new(max);
    let mut lines = Vec::new();
    for chunk in chunks {
        r.push(chunk);
        loop {
            match r.next_line() {
                Ok(Some(l)) => {
                    if let Line::Data(b) = &l {
                        assert!(!b.contains(&b'\n'));
                        assert!(b.len() <= max);
                    }
                    lines.push(l);
                }
                Ok(None) => break,
                Err(_) => return (lines, true, None),
            }
        }
    }
    (lines, false, r.finish().map(|b| b.to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let [max, seed, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*max);
    let whole = run(std::iter::once(stream), max);
    // Variable chunk sizes derived from the seed.
    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut s = u32::from(*seed) | 1;
    while !rest.is_empty() {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (s as usize >> 16) % 17 + 1;
        let (a, b) = rest.split_at(n.min(rest.len()));
        chunks.push(a);
        rest = b;
    }
    let chunked = run(chunks.into_iter(), max);
    assert_eq!(whole, chunked);
});
