//! Spooled records decoded once for every dispatcher.
//!
//! The pipeline hands over the envelopes it has just spooled ([`Decoded::seed`]): it built
//! them, so nothing is parsed again. A dispatcher asks for each record it read
//! ([`Decoded::message`]); a record not held (after a restart, or read by a dispatcher that
//! fell further behind than the window) is parsed once and kept for the others. The window
//! holds the newest records, at most [`WINDOW_BYTES`] of their JSON.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use parking_lot::Mutex;
use relay_envelope::{Context, DeadLetter, Envelope, IngressKind};
use relay_sink::{Message, Payload};
use relay_spool::{RecordKind, StoredRecord};

/// The most JSON (bytes) of the records held decoded; about the spool's own tail cache.
pub const WINDOW_BYTES: usize = 8 << 20;

/// The most offsets the window spans (held or not).
const MAX_SLOTS: usize = 1 << 20;

/// The `source` of dead letters made from spool records that cannot be parsed.
pub const SPOOL_SOURCE: &str = "/activity-relay/spool";

/// The shared window of decoded records (see the module documentation).
pub struct Decoded {
    window: Mutex<Window>,
    max_bytes: usize,
    /// Records parsed from their JSON (not found in the window).
    parsed: AtomicU64,
}

#[derive(Default)]
struct Window {
    /// Offset of `items[0]`.
    first: u64,
    /// One slot per offset from `first`; `None` where nothing is held.
    items: VecDeque<Option<(Payload, usize)>>,
    bytes: usize,
}

impl Window {
    fn get(&self, offset: u64) -> Option<Payload> {
        let i = usize::try_from(offset.checked_sub(self.first)?).ok()?;
        self.items.get(i)?.as_ref().map(|(p, _)| p.clone())
    }

    fn put(&mut self, offset: u64, payload: Payload, len: usize, max_bytes: usize) {
        if self.items.is_empty() {
            self.first = offset;
        }
        let Some(i) = offset.checked_sub(self.first) else {
            return; // older than the window: not worth holding
        };
        // A record far ahead of the window (a reader that skipped) starts it afresh.
        let i = match usize::try_from(i) {
            Ok(i) if i <= MAX_SLOTS => i,
            _ => {
                self.clear(offset);
                0
            }
        };
        while self.items.len() <= i {
            self.items.push_back(None);
        }
        if let Some((_, old)) = self.items[i].replace((payload, len)) {
            self.bytes -= old;
        }
        self.bytes += len;
        while self.bytes > max_bytes || self.items.len() > MAX_SLOTS {
            match self.items.pop_front() {
                Some(slot) => {
                    if let Some((_, l)) = slot {
                        self.bytes -= l;
                    }
                    self.first += 1;
                }
                None => break,
            }
        }
    }

    fn clear(&mut self, first: u64) {
        self.items.clear();
        self.bytes = 0;
        self.first = first;
    }
}

impl Default for Decoded {
    fn default() -> Self {
        Decoded::new(WINDOW_BYTES)
    }
}

impl Decoded {
    pub fn new(max_bytes: usize) -> Decoded {
        Decoded {
            window: Mutex::default(),
            max_bytes,
            parsed: AtomicU64::new(0),
        }
    }

    /// The records of one append, `first_offset` onwards, as the pipeline built them, each
    /// with the length of its spooled JSON.
    pub fn seed(&self, first_offset: u64, records: impl IntoIterator<Item = (Payload, usize)>) {
        let mut w = self.window.lock();
        for (i, (payload, len)) in records.into_iter().enumerate() {
            w.put(first_offset + i as u64, payload, len, self.max_bytes);
        }
    }

    /// The sink message of a spooled record: decoded from the window when held, parsed
    /// (and then held) otherwise. An unparseable record becomes a dead letter.
    pub fn message(&self, record: StoredRecord) -> Message {
        if let Some(payload) = self.window.lock().get(record.offset) {
            return Message {
                offset: record.offset,
                accepted_at_ms: record.accepted_at_ms,
                payload,
                json: record.payload,
            };
        }
        self.parsed.fetch_add(1, Ordering::Relaxed);
        let (message, parsed) = decode(record);
        if parsed {
            let len = message.json.len();
            self.window
                .lock()
                .put(message.offset, message.payload.clone(), len, self.max_bytes);
        }
        message
    }

    /// How many records were parsed rather than found decoded.
    pub fn parsed(&self) -> u64 {
        self.parsed.load(Ordering::Relaxed)
    }
}

/// Turns a spooled record into a sink message by parsing it; an unparseable record becomes
/// a dead letter.
pub fn to_message(record: StoredRecord) -> Message {
    decode(record).0
}

/// The message, and whether it is the record itself (false: the dead letter of a record
/// that cannot be parsed).
fn decode(record: StoredRecord) -> (Message, bool) {
    let parsed = match record.kind {
        RecordKind::Envelope => {
            serde_json::from_slice::<Envelope>(&record.payload).map(|e| Payload::Event(Arc::new(e)))
        }
        RecordKind::DeadLetter => serde_json::from_slice::<DeadLetter>(&record.payload)
            .map(|d| Payload::DeadLetter(Arc::new(d))),
    };
    match parsed {
        Ok(payload) => (
            Message {
                offset: record.offset,
                accepted_at_ms: record.accepted_at_ms,
                payload,
                json: record.payload,
            },
            true,
        ),
        Err(e) => {
            tracing::error!(offset = record.offset, error = %e, "spooled record cannot be parsed; publishing it as a dead letter");
            let ctx = Context {
                ingress: IngressKind::Webhook,
                source: SPOOL_SOURCE.to_string(),
                received_at: accepted_at(record.accepted_at_ms),
                formats: relay_envelope::Formats::ALL,
            };
            let dl = DeadLetter::new(
                &record.payload,
                format!("spooled record {} cannot be parsed: {e}", record.offset),
                &ctx,
            );
            let message = Message {
                offset: record.offset,
                accepted_at_ms: record.accepted_at_ms,
                json: Bytes::from(dl.to_json()),
                payload: Payload::DeadLetter(Arc::new(dl)),
            };
            (message, false)
        }
    }
}

/// A record's accepted time (ms since the epoch) as a timestamp.
pub fn accepted_at(ms: u64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(i64::try_from(ms).unwrap_or(0))
        .single()
        .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64, json: &str) -> StoredRecord {
        StoredRecord {
            offset,
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(json.to_owned()),
        }
    }

    #[test]
    fn parses_once_and_bounds_the_window() {
        let d = Decoded::new(1000);
        let bad = "not json at all";
        // Unparseable: a dead letter, every time (not held: its JSON is the dead letter's).
        assert!(d.message(record(0, bad)).is_dead_letter());
        let dl = match d.message(record(0, bad)).payload {
            Payload::DeadLetter(dl) => dl,
            Payload::Event(_) => panic!("expected a dead letter"),
        };
        d.seed(
            1,
            [
                (Payload::DeadLetter(dl.clone()), 400),
                (Payload::DeadLetter(dl), 400),
            ],
        );
        let before = d.parsed();
        // Held: not parsed again (the seeded payload is returned even for other bytes).
        assert!(d.message(record(1, bad)).is_dead_letter());
        assert!(d.message(record(2, bad)).is_dead_letter());
        assert_eq!(d.parsed(), before);
        // 400 more bytes push offset 1 out (1200 > 1000).
        let m = d.message(record(0, bad));
        assert!(m.is_dead_letter());
        let dl = match m.payload {
            Payload::DeadLetter(dl) => dl,
            Payload::Event(_) => unreachable!(),
        };
        d.seed(3, [(Payload::DeadLetter(dl), 400)]);
        let before = d.parsed();
        d.message(record(1, bad));
        assert_eq!(d.parsed(), before + 1, "offset 1 left the window");
        d.message(record(3, bad));
        assert_eq!(d.parsed(), before + 1, "offset 3 is held");
    }
}
