//! Spooled records decoded once for every dispatcher.
//!
//! The pipeline hands over the envelopes it is about to spool ([`Decoded::seed`]), with
//! the very `Bytes` of their JSON: the spool keeps those in its tail and gives them to its
//! readers, so a dispatcher asking for a record ([`Decoded::message`]) finds it by that
//! allocation, without parsing. Keyed by allocation rather than by offset because a
//! dispatcher can read a record before the pipeline learns its offset (the spool wakes
//! readers before it answers the writer). A record not held (read back from disk after a
//! restart, or past the window) is parsed, and kept for the dispatchers that read the same
//! bytes. The window holds the newest records, at most [`WINDOW_BYTES`] of their JSON;
//! an entry keeps its `Bytes` alive, so its allocation cannot be reused by other bytes
//! while it is held.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use parking_lot::Mutex;
use relay_envelope::{Context, DeadLetter, Envelope, IngressKind};
use relay_sink::{Message, Payload};
use relay_spool::{RecordKind, StoredRecord};

/// The most JSON (bytes) of the records held decoded; about the spool's own tail cache.
pub const WINDOW_BYTES: usize = 8 << 20;

/// The `source` of dead letters made from spool records that cannot be parsed.
pub const SPOOL_SOURCE: &str = "/activity-relay/spool";

/// A record's JSON, identified by its allocation (address and length).
type Key = (usize, usize);

fn key(json: &Bytes) -> Key {
    (json.as_ptr() as usize, json.len())
}

/// The shared window of decoded records (see the module documentation).
pub struct Decoded {
    window: Mutex<Window>,
    max_bytes: usize,
    /// Records parsed from their JSON (not found in the window); registered as
    /// `activity_relay_records_parsed_total` by the relay ([`Decoded::counting`]).
    parsed: prometheus::IntCounter,
}

#[derive(Default)]
struct Window {
    held: HashMap<Key, (Bytes, Payload)>,
    /// Oldest first.
    order: VecDeque<Key>,
    bytes: usize,
}

impl Window {
    fn get(&self, json: &Bytes) -> Option<Payload> {
        let (held, payload) = self.held.get(&key(json))?;
        // Same address and length, and `held` keeps that allocation alive: the same bytes.
        (held.as_ptr() == json.as_ptr()).then(|| payload.clone())
    }

    fn put(&mut self, json: Bytes, payload: Payload, max_bytes: usize) {
        let k = key(&json);
        if json.is_empty() || self.held.contains_key(&k) {
            return;
        }
        self.bytes += json.len();
        self.held.insert(k, (json, payload));
        self.order.push_back(k);
        while self.bytes > max_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some((b, _)) = self.held.remove(&old) {
                self.bytes -= b.len();
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

    /// The records of one delivery as the pipeline built them, each with the `Bytes` it
    /// hands to the spool. Called before the append: a record whose append then fails is
    /// never read and leaves the window in turn.
    pub fn seed(&self, records: impl IntoIterator<Item = (Bytes, Payload)>) {
        let mut w = self.window.lock();
        for (json, payload) in records {
            w.put(json, payload, self.max_bytes);
        }
    }

    /// The sink message of a spooled record: decoded from the window when held, parsed
    /// (and then held) otherwise. An unparseable record becomes a dead letter.
    pub fn message(&self, record: StoredRecord) -> Message {
        if let Some(payload) = self.window.lock().get(&record.payload) {
            return Message {
                offset: record.offset,
                accepted_at_ms: record.accepted_at_ms,
                payload,
                json: record.payload,
            };
        }
        self.parsed.inc();
        let json = record.payload.clone();
        let (message, parsed) = decode(record);
        if parsed {
            self.window
                .lock()
                .put(json, message.payload.clone(), self.max_bytes);
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

    fn record(offset: u64, json: &Bytes) -> StoredRecord {
        StoredRecord {
            offset,
            kind: RecordKind::DeadLetter,
            accepted_at_ms: 1,
            payload: json.clone(),
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
    fn found_by_allocation_parsed_once_and_bounded() {
        let (a, pa) = dead_letter(1);
        let (b, pb) = dead_letter(2);
        assert_eq!(a.len(), b.len());
        let d = Decoded::new(3 * a.len());
        d.seed([(a.clone(), pa), (b.clone(), pb)]);
        // Held: not parsed, whatever the offset.
        assert!(d.message(record(7, &a)).is_dead_letter());
        assert!(d.message(record(8, &b)).is_dead_letter());
        assert_eq!(d.parsed(), 0);
        // Equal bytes in another allocation are not taken for them: parsed.
        let copy = Bytes::from(a.to_vec());
        assert_eq!(
            d.message(record(7, &copy)).id(),
            d.message(record(7, &a)).id()
        );
        assert_eq!(d.parsed(), 1);
        // A third record pushes the oldest out (the window holds two).
        let (c, pc) = dead_letter(3);
        d.seed([(c.clone(), pc)]);
        d.message(record(9, &c));
        assert_eq!(d.parsed(), 1, "c is held");
        d.message(record(7, &a));
        assert_eq!(d.parsed(), 2, "a left the window");
        // Not JSON: a dead letter of the record, never held.
        let junk = Bytes::from_static(b"not json at all");
        let m = d.message(StoredRecord {
            kind: RecordKind::Envelope,
            ..record(10, &junk)
        });
        assert!(m.is_dead_letter());
        d.message(StoredRecord {
            kind: RecordKind::Envelope,
            ..record(10, &junk)
        });
        assert_eq!(d.parsed(), 4);
    }

    #[test]
    fn a_damaged_record_is_a_dead_letter_even_when_its_bytes_parse() {
        let (json, _) = dead_letter(5);
        let m = to_message(StoredRecord {
            kind: RecordKind::Damaged,
            ..record(11, &json)
        });
        let Payload::DeadLetter(dl) = &m.payload else {
            panic!("published as it was: {m:?}");
        };
        assert!(dl.reason.contains("damaged on disk"), "{}", dl.reason);
        assert_eq!(dl.raw, json.to_vec(), "its bytes are kept");
        assert_eq!(m.offset, 11);
    }
}
