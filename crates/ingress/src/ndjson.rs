//! Incremental NDJSON line reader for the activity stream.
//!
//! Pure (no I/O): feed it whatever chunks the network delivers, take complete lines out.
//! A line ends at `\n`; one `\r` right before it is dropped too, so `\r\n` and `\n` both end
//! lines. A line that is empty or only ASCII whitespace is a heartbeat. A line longer than
//! the configured maximum is an error (the caller drops the connection) instead of growing
//! the buffer without bound; the limit is applied identically however the input is chunked.

use bytes::{Bytes, BytesMut};

/// Default maximum line length: 16 MiB.
pub const DEFAULT_MAX_LINE: usize = 16 << 20;

/// One complete line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// An empty (or whitespace-only) keep-alive line.
    Heartbeat,
    /// A line's bytes without its terminator.
    Data(Bytes),
}

/// A line exceeded the maximum length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stream line longer than {max} bytes")]
pub struct LineTooLong {
    pub max: usize,
}

/// Splits a byte stream into lines; see the module docs.
#[derive(Debug)]
pub struct LineReader {
    buf: BytesMut,
    /// Bytes of `buf` already searched for `\n` without finding one.
    scanned: usize,
    max_line: usize,
    failed: bool,
}

impl LineReader {
    /// A reader rejecting lines longer than `max_line` bytes (terminator excluded).
    pub fn new(max_line: usize) -> Self {
        LineReader {
            buf: BytesMut::new(),
            scanned: 0,
            max_line,
            failed: false,
        }
    }

    /// Appends a chunk. Lines are taken out with [`LineReader::next_line`].
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete line, `Ok(None)` when more input is needed. After an error the
    /// reader stays failed (the connection must be dropped).
    pub fn next_line(&mut self) -> Result<Option<Line>, LineTooLong> {
        if self.failed {
            return Err(LineTooLong { max: self.max_line });
        }
        let found = self.buf[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| self.scanned + i);
        match found {
            Some(nl) => {
                let mut line = self.buf.split_to(nl + 1);
                self.scanned = 0;
                line.truncate(nl);
                if line.last() == Some(&b'\r') {
                    line.truncate(nl - 1);
                }
                if line.len() > self.max_line {
                    self.failed = true;
                    return Err(LineTooLong { max: self.max_line });
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    Ok(Some(Line::Heartbeat))
                } else {
                    Ok(Some(Line::Data(line.freeze())))
                }
            }
            None => {
                self.scanned = self.buf.len();
                // The shortest this line can still turn out to be: a trailing `\r` may be
                // the first half of its terminator.
                let min_len = self.buf.len() - usize::from(self.buf.last() == Some(&b'\r'));
                if min_len > self.max_line {
                    self.failed = true;
                    self.buf = BytesMut::new();
                    return Err(LineTooLong { max: self.max_line });
                }
                Ok(None)
            }
        }
    }

    /// Bytes of an incomplete line waiting for its terminator.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Ends the input: returns the unterminated remainder, if any (a connection cut
    /// mid-line leaves a truncated object; the stream client discards it).
    pub fn finish(self) -> Option<Bytes> {
        if self.buf.is_empty() || self.failed {
            None
        } else {
            Some(self.buf.freeze())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(r: &mut LineReader) -> Vec<Line> {
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn splits_crlf_and_lf_and_heartbeats() {
        let mut r = LineReader::new(100);
        r.push(b"{\"a\":1}\r\n\r\n{\"b\"");
        assert_eq!(
            all(&mut r),
            vec![
                Line::Data(Bytes::from_static(b"{\"a\":1}")),
                Line::Heartbeat
            ]
        );
        r.push(b":2}\n \n");
        assert_eq!(
            all(&mut r),
            vec![
                Line::Data(Bytes::from_static(b"{\"b\":2}")),
                Line::Heartbeat
            ]
        );
        assert_eq!(r.finish(), None);
    }

    #[test]
    fn lone_cr_is_content() {
        let mut r = LineReader::new(100);
        r.push(b"a\rb\r\r\n");
        assert_eq!(all(&mut r), vec![Line::Data(Bytes::from_static(b"a\rb\r"))]);
    }

    #[test]
    fn too_long_pending_line_fails_and_stays_failed() {
        let mut r = LineReader::new(4);
        r.push(b"abcd");
        assert_eq!(r.next_line(), Ok(None));
        r.push(b"\r");
        assert_eq!(
            r.next_line(),
            Ok(None),
            "a trailing CR may be the terminator"
        );
        r.push(b"\n");
        assert_eq!(
            r.next_line(),
            Ok(Some(Line::Data(Bytes::from_static(b"abcd"))))
        );
        r.push(b"abcde");
        assert_eq!(r.next_line(), Err(LineTooLong { max: 4 }));
        r.push(b"\n");
        assert_eq!(r.next_line(), Err(LineTooLong { max: 4 }));
        assert_eq!(r.finish(), None);
    }

    #[test]
    fn too_long_complete_line_fails() {
        let mut r = LineReader::new(2);
        r.push(b"ok\nabc\n");
        assert_eq!(
            r.next_line(),
            Ok(Some(Line::Data(Bytes::from_static(b"ok"))))
        );
        assert_eq!(r.next_line(), Err(LineTooLong { max: 2 }));
    }

    #[test]
    fn remainder_is_returned_by_finish() {
        let mut r = LineReader::new(100);
        r.push(b"x\n{\"trunc");
        assert_eq!(all(&mut r), vec![Line::Data(Bytes::from_static(b"x"))]);
        assert_eq!(r.pending(), 7);
        assert_eq!(r.finish(), Some(Bytes::from_static(b"{\"trunc")));
    }
}
