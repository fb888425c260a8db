//! Snowflake-like ids with real timestamps, and X's float-rounded numeric ids.

use parking_lot::Mutex;

/// X's Snowflake epoch (ms since the Unix epoch).
pub const TWEPOCH_MS: u64 = 1_288_834_974_657;

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(TWEPOCH_MS)
}

/// The time (ms since the Unix epoch) a Snowflake id encodes.
pub fn snowflake_ms(id: u64) -> u64 {
    (id >> 22) + TWEPOCH_MS
}

/// The value X's JSON encoder writes for a numeric id: the id rounded to the nearest
/// `f64`, printed with the shortest round-trip digits and zero-padded, as X does
/// (`1924465506158878979` → `1924465506158879000`).
pub fn rounded(id: u64) -> u64 {
    let s = format!("{}", id as f64);
    s.parse::<u64>().unwrap_or(id)
}

/// A JSON number holding [`rounded`]`(id)`.
pub fn rounded_json(id: u64) -> serde_json::Value {
    serde_json::Value::from(rounded(id))
}

/// Hands out unique Snowflake ids (41-bit ms time, 10-bit worker, 12-bit sequence).
#[derive(Debug)]
pub struct IdGen {
    worker: u64,
    state: Mutex<(u64, u64)>,
}

impl IdGen {
    /// A generator for one worker (0–1023).
    pub fn new(worker: u64) -> Self {
        Self {
            worker: worker & 0x3ff,
            state: Mutex::new((0, 0)),
        }
    }

    /// A new id, never repeated by this generator, with the current time.
    pub fn next(&self) -> u64 {
        let mut st = self.state.lock();
        let now = now_ms().max(st.0);
        if now == st.0 {
            st.1 += 1;
            if st.1 > 0xfff {
                st.0 += 1;
                st.1 = 0;
            }
        } else {
            st.0 = now;
            st.1 = 0;
        }
        ((st.0 - TWEPOCH_MS) << 22) | (self.worker << 12) | st.1
    }

    /// A new id whose millisecond differs from every id handed out before (for events
    /// identified only by their `created_timestamp`).
    pub fn next_distinct_ms(&self) -> u64 {
        let mut st = self.state.lock();
        let now = now_ms().max(st.0 + 1);
        st.0 = now;
        st.1 = 0;
        ((st.0 - TWEPOCH_MS) << 22) | (self.worker << 12)
    }

    /// A new id as a string.
    pub fn next_str(&self) -> String {
        self.next().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_x() {
        assert_eq!(
            rounded(1_924_465_506_158_878_979),
            1_924_465_506_158_879_000
        );
        assert_eq!(
            rounded(1_661_523_610_111_193_088),
            1_661_523_610_111_193_000
        );
        assert_eq!(rounded(2_244_994_945), 2_244_994_945);
    }

    #[test]
    fn ids_are_unique_and_timed() {
        let g = IdGen::new(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = g.next();
            assert!(seen.insert(id));
            assert!(snowflake_ms(id).abs_diff(now_ms()) < 60_000);
        }
        let a = g.next_distinct_ms();
        let b = g.next_distinct_ms();
        assert_ne!(snowflake_ms(a), snowflake_ms(b));
    }
}
