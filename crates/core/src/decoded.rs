//! Spooled records decoded once for every dispatcher.
//!
//! The pipeline attaches each record's decoded form (a [`Payload`]) when it appends it;
//! the spool promises to hand that attachment to its readers for as long as the record
//! is in its tail cache ([`relay_spool::Attachment`]), so a dispatcher reading a new
//! record takes it decoded, without parsing. A record read from disk (after a restart,
//! or by a dispatcher far behind) has no attachment: it is parsed once and kept here by
//! its offset for the other dispatchers (offsets are never reused), in a window of the
//! newest such records, at most [`WINDOW_BYTES`] of their JSON.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use parking_lot::Mutex;
use relay_envelope::{Context, DeadLetter, Envelope, IngressKind};
use relay_sink::{Message, Payload};
use relay_spool::{Attachment, RecordKind, StoredRecord};

/// The most JSON (bytes) of the parsed records held; about the spool's own tail cache.
pub const WINDOW_BYTES: usize = 8 << 20;

/// The `source` of dead letters made from spool records that cannot be parsed.
pub const SPOOL_SOURCE: &str = "/activity-relay/spool";

/// What the pipeline attaches to a record it appends: its decoded form.
pub fn attach(payload: Payload) -> Option<Attachment> {
    Some(Attachment::new(payload))
}

/// The records parsed from disk, shared by the dispatchers (see the module documentation).
pub struct Decoded {
    window: Mutex<Window>,
    max_bytes: usize,
    /// Records parsed from their JSON (neither attached nor in the window); registered as
    /// `activity_relay_records_parsed_total` by the relay ([`Decoded::counting`]).
    parsed: prometheus::IntCounter,
}

#[derive(Default)]
struct Window {
    /// By offset: the payload and its JSON's length.
    held: HashMap<u64, (Payload, usize)>,
    /// Oldest first.
    order: VecDeque<u64>,
    bytes: usize,
}

impl Window {
    fn get(&self, offset: u64) -> Option<Payload> {
        self.held.get(&offset).map(|(p, _)| p.clone())
    }

    fn put(&mut self, offset: u64, payload: Payload, len: usize, max_bytes: usize) {
        if self.held.contains_key(&offset) {
            return;
        }
        self.bytes += len;
        self.held.insert(offset, (payload, len));
        self.order.push_back(offset);
        while self.bytes > max_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some((_, n)) = self.held.remove(&old) {
                self.bytes -= n;
            }
        }
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
            parsed: prometheus::IntCounter::new("records_parsed", "records parsed")
                .unwrap_or_else(|_| unreachable!("a valid metric name")),
        }
    }

    /// Counts the records parsed in `counter` (a registered metric).
    pub fn counting(mut self, counter: prometheus::IntCounter) -> Decoded {
        self.parsed = counter;
        self
    }

    /// The sink message of a spooled record: its attachment when it has one, else from
    /// the window, else parsed (and then held). An unparseable record becomes a dead
    /// letter.
    pub fn message(&self, record: StoredRecord) -> Message {
        let known = match record.attachment.as_ref().and_then(|a| a.get::<Payload>()) {
            Some(p) => Some(p.clone()),
            None => self.window.lock().get(record.offset),
        };
        if let Some(payload) = known {
            return Message {
                offset: record.offset,
                accepted_at_ms: record.accepted_at_ms,
                payload,
                json: record.payload,
            };
        }
        self.parsed.inc();
        let (offset, len) = (record.offset, record.payload.len());
        let (message, parsed) = decode(record);
        if parsed {
            self.window
                .lock()
                .put(offset, message.payload.clone(), len, self.max_bytes);
        }
        message
    }

    /// How many records were parsed rather than found decoded.
    pub fn parsed(&self) -> u64 {
        self.parsed.get()
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
        RecordKind::Envelope => serde_json::from_slice::<Envelope>(&record.payload)
            .map(|e| Payload::Event(Arc::new(e)))
            .map_err(|e| format!("cannot be parsed: {e}")),
        RecordKind::DeadLetter => serde_json::from_slice::<DeadLetter>(&record.payload)
            .map(|d| Payload::DeadLetter(Arc::new(d)))
            .map_err(|e| format!("cannot be parsed: {e}")),
        // Never published as it is, even if its bytes still parse: they may be mangled.
        RecordKind::Damaged => Err(
            "was damaged on disk after it was verified (its bytes, as far as they could be \
             told apart, are kept here)"
                .to_string(),
        ),
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
            tracing::error!(offset = record.offset, error = %e, "spooled record is not a message; publishing it as a dead letter");
            let ctx = Context {
                ingress: IngressKind::Webhook,
                source: SPOOL_SOURCE.to_string(),
                received_at: accepted_at(record.accepted_at_ms),
                formats: relay_envelope::Formats::ALL,
            };
            let dl = DeadLetter::new(
                &record.payload,
                format!("spooled record {} {e}", record.offset),
                &ctx,
            );
            (
                Message::dead_letter(record.offset, record.accepted_at_ms, dl),
                false,
            )
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
    use bytes::Bytes;

    fn record(offset: u64, json: &Bytes, attachment: Option<Attachment>) -> StoredRecord {
        StoredRecord {
            offset,
            kind: RecordKind::DeadLetter,
            accepted_at_ms: 1,
            payload: json.clone(),
            attachment,
        }
    }

    fn dead_letter(n: usize) -> (Bytes, Payload) {
        let ctx = Context {
            ingress: IngressKind::Webhook,
            source: "/t".into(),
            received_at: accepted_at(1),
            formats: relay_envelope::Formats::ALL,
        };
        let dl = DeadLetter::new(format!("body {n}").as_bytes(), "test", &ctx);
        (Bytes::from(dl.to_json()), Payload::DeadLetter(Arc::new(dl)))
    }

    #[test]
    fn attached_records_are_not_parsed_others_once_within_the_window() {
        let (a, pa) = dead_letter(1);
        let (b, _) = dead_letter(2);
        let (c, _) = dead_letter(3);
        assert_eq!(a.len(), b.len());
        let d = Decoded::new(2 * a.len());
        // Attached: taken as attached (the same Arc), never parsed.
        let m = d.message(record(7, &a, attach(pa.clone())));
        let (Payload::DeadLetter(got), Payload::DeadLetter(want)) = (&m.payload, &pa) else {
            panic!("not a dead letter: {m:?}");
        };
        assert!(Arc::ptr_eq(got, want));
        assert_eq!(d.parsed(), 0);
        // From disk: parsed once, then found by offset by the next dispatcher.
        assert_eq!(
            d.message(record(8, &b, None)).id(),
            d.message(record(8, &b, None)).id()
        );
        assert_eq!(d.parsed(), 1);
        // The window holds two records' JSON: a third pushes the oldest out.
        d.message(record(9, &c, None));
        d.message(record(10, &a, None));
        assert_eq!(d.parsed(), 3);
        d.message(record(8, &b, None));
        assert_eq!(d.parsed(), 4, "8 left the window");
        // Not JSON: a dead letter of the record, never held.
        let junk = Bytes::from_static(b"not json at all");
        for _ in 0..2 {
            let m = d.message(StoredRecord {
                kind: RecordKind::Envelope,
                ..record(11, &junk, None)
            });
            assert!(m.is_dead_letter());
        }
        assert_eq!(d.parsed(), 6);
    }

    #[test]
    fn a_damaged_record_is_a_dead_letter_even_when_its_bytes_parse() {
        let (json, _) = dead_letter(5);
        let m = to_message(StoredRecord {
            kind: RecordKind::Damaged,
            ..record(11, &json, None)
        });
        let Payload::DeadLetter(dl) = &m.payload else {
            panic!("published as it was: {m:?}");
        };
        assert!(dl.reason.contains("damaged on disk"), "{}", dl.reason);
        assert_eq!(dl.raw, json.to_vec(), "its bytes are kept");
        assert_eq!(m.offset, 11);
    }
}
