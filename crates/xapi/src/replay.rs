//! X's replay date rules, checked client-side before any call, and gap planning.
//!
//! Rules (all UTC, minute precision): `from_date` is inclusive, within the last 24 h, at
//! least 31 minutes ago, not in the future and before `to_date`; `to_date` is exclusive,
//! within the last 24 h and at least 10 minutes ago; the window is at most 2 h
//! (configurable through [`ReplayRules`]).

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone as _, Timelike as _, Utc};

/// X's wire format for replay dates.
pub const DATE_FORMAT: &str = "%Y%m%d%H%M";

/// The limits a replay window must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRules {
    /// Longest window (default 2 h).
    pub max_window: Duration,
    /// How far back `from_date` and `to_date` may lie (24 h).
    pub max_age: Duration,
    /// How recent `from_date` may be at the latest (31 min).
    pub from_min_age: Duration,
    /// How recent `to_date` may be at the latest (10 min).
    pub to_min_age: Duration,
}

impl Default for ReplayRules {
    fn default() -> Self {
        Self {
            max_window: Duration::hours(2),
            max_age: Duration::hours(24),
            from_min_age: Duration::minutes(31),
            to_min_age: Duration::minutes(10),
        }
    }
}

/// A replay window `[from, to)` in UTC at minute precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Window {
    /// Inclusive start.
    pub from: DateTime<Utc>,
    /// Exclusive end.
    pub to: DateTime<Utc>,
}

impl Window {
    /// `from` as X wants it (`yyyymmddhhmm`).
    pub fn from_date(&self) -> String {
        self.from.format(DATE_FORMAT).to_string()
    }

    /// `to` as X wants it (`yyyymmddhhmm`).
    pub fn to_date(&self) -> String {
        self.to.format(DATE_FORMAT).to_string()
    }

    /// Length of the window.
    pub fn duration(&self) -> Duration {
        self.to - self.from
    }
}

/// Which rule a replay window broke. The message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Not `yyyymmddhhmm` nor RFC 3339.
    #[error("replay {field}: cannot read {input:?}: expected yyyymmddhhmm (UTC) or RFC 3339")]
    Unparseable {
        /// `from_date` or `to_date`.
        field: &'static str,
        /// What was given.
        input: String,
    },
    /// Seconds or fractions given: X takes whole minutes.
    #[error(
        "replay rule \"minute precision\": {field} {at} has seconds; X takes whole UTC minutes"
    )]
    NotMinutePrecision {
        /// `from_date` or `to_date`.
        field: &'static str,
        /// The value.
        at: String,
    },
    /// `from_date` is after now.
    #[error("replay rule \"from_date not in the future\": {from} is after now ({now})")]
    FromInFuture {
        /// from_date.
        from: String,
        /// now.
        now: String,
    },
    /// `from_date` is less than 31 minutes ago.
    #[error("replay rule \"from_date at least {min_minutes} minutes ago\": {from} is too recent (now {now})")]
    FromTooRecent {
        /// from_date.
        from: String,
        /// now.
        now: String,
        /// the rule's minutes.
        min_minutes: i64,
    },
    /// `from_date` is more than 24 h ago.
    #[error(
        "replay rule \"from_date within the last {max_hours} h\": {from} is too old (now {now})"
    )]
    FromTooOld {
        /// from_date.
        from: String,
        /// now.
        now: String,
        /// the rule's hours.
        max_hours: i64,
    },
    /// `to_date` is after now.
    #[error("replay rule \"to_date not in the future\": {to} is after now ({now})")]
    ToInFuture {
        /// to_date.
        to: String,
        /// now.
        now: String,
    },
    /// `to_date` is less than 10 minutes ago.
    #[error("replay rule \"to_date at least {min_minutes} minutes ago\": {to} is too recent (now {now})")]
    ToTooRecent {
        /// to_date.
        to: String,
        /// now.
        now: String,
        /// the rule's minutes.
        min_minutes: i64,
    },
    /// `to_date` is more than 24 h ago.
    #[error("replay rule \"to_date within the last {max_hours} h\": {to} is too old (now {now})")]
    ToTooOld {
        /// to_date.
        to: String,
        /// now.
        now: String,
        /// the rule's hours.
        max_hours: i64,
    },
    /// `from_date` is not before `to_date` (`to_date` is exclusive, so equal is empty).
    #[error("replay rule \"from_date before to_date\": {from} is not before {to} (to_date is exclusive)")]
    FromNotBeforeTo {
        /// from_date.
        from: String,
        /// to_date.
        to: String,
    },
    /// The window is longer than allowed.
    #[error(
        "replay rule \"window at most {max_minutes} minutes\": {from}..{to} is {minutes} minutes"
    )]
    WindowTooLong {
        /// from_date.
        from: String,
        /// to_date.
        to: String,
        /// the window's length.
        minutes: i64,
        /// the rule's length.
        max_minutes: i64,
    },
}

fn show(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses `yyyymmddhhmm` (UTC) or RFC 3339 (any offset, converted to UTC). Seconds are kept
/// so that [`validate`] can reject them by name.
pub fn parse_date(field: &'static str, input: &str) -> Result<DateTime<Utc>, ReplayError> {
    let s = input.trim();
    let bad = || ReplayError::Unparseable {
        field,
        input: input.to_string(),
    };
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        let naive = NaiveDateTime::parse_from_str(s, DATE_FORMAT).map_err(|_| bad())?;
        return Ok(Utc.from_utc_datetime(&naive));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad())
}

/// Parses both ends and checks every rule at `now`.
pub fn parse_window(
    from: &str,
    to: &str,
    now: DateTime<Utc>,
    rules: &ReplayRules,
) -> Result<Window, ReplayError> {
    let window = Window {
        from: parse_date("from_date", from)?,
        to: parse_date("to_date", to)?,
    };
    validate(&window, now, rules)?;
    Ok(window)
}

fn whole_minute(t: DateTime<Utc>) -> bool {
    t.second() == 0 && t.nanosecond() == 0
}

/// Checks every date rule at `now`; the error names the first rule broken.
pub fn validate(w: &Window, now: DateTime<Utc>, rules: &ReplayRules) -> Result<(), ReplayError> {
    let (from, to) = (w.from, w.to);
    if !whole_minute(from) {
        return Err(ReplayError::NotMinutePrecision {
            field: "from_date",
            at: show(from),
        });
    }
    if !whole_minute(to) {
        return Err(ReplayError::NotMinutePrecision {
            field: "to_date",
            at: show(to),
        });
    }
    let now_s = show(now);
    if from > now {
        return Err(ReplayError::FromInFuture {
            from: show(from),
            now: now_s,
        });
    }
    if from > now - rules.from_min_age {
        return Err(ReplayError::FromTooRecent {
            from: show(from),
            now: now_s,
            min_minutes: rules.from_min_age.num_minutes(),
        });
    }
    if from < now - rules.max_age {
        return Err(ReplayError::FromTooOld {
            from: show(from),
            now: now_s,
            max_hours: rules.max_age.num_hours(),
        });
    }
    if to > now {
        return Err(ReplayError::ToInFuture {
            to: show(to),
            now: now_s,
        });
    }
    if to > now - rules.to_min_age {
        return Err(ReplayError::ToTooRecent {
            to: show(to),
            now: now_s,
            min_minutes: rules.to_min_age.num_minutes(),
        });
    }
    if to < now - rules.max_age {
        return Err(ReplayError::ToTooOld {
            to: show(to),
            now: now_s,
            max_hours: rules.max_age.num_hours(),
        });
    }
    if from >= to {
        return Err(ReplayError::FromNotBeforeTo {
            from: show(from),
            to: show(to),
        });
    }
    if to - from > rules.max_window {
        return Err(ReplayError::WindowTooLong {
            from: show(from),
            to: show(to),
            minutes: (to - from).num_minutes(),
            max_minutes: rules.max_window.num_minutes(),
        });
    }
    Ok(())
}

fn floor_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp().div_euclid(60) * 60;
    Utc.timestamp_opt(secs, 0).single().unwrap_or(t)
}

fn ceil_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let f = floor_minute(t);
    if f == t {
        t
    } else {
        f + Duration::minutes(1)
    }
}

/// Plans replay calls for a missed gap `[from, to)` with the default rules.
/// See [`plan_windows_with`].
pub fn plan_windows(from: DateTime<Utc>, to: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Window> {
    plan_windows_with(from, to, now, &ReplayRules::default())
}

/// Plans replay calls for a missed gap `[from, to)`: widens it to whole minutes, clamps it to
/// what X accepts at `now` (the part older than 24 h, with one minute of margin, is lost; the
/// part newer than X allows yet is left out: plan again later) and splits it into
/// consecutive windows of at most `rules.max_window`. Every window passes [`validate`] at
/// `now`. Empty when nothing of the gap can be replayed now.
pub fn plan_windows_with(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    rules: &ReplayRules,
) -> Vec<Window> {
    let mut out = Vec::new();
    if from >= to || rules.max_window < Duration::minutes(1) {
        return out;
    }
    let earliest = ceil_minute(now - rules.max_age + Duration::minutes(1));
    let latest_from = floor_minute(now - rules.from_min_age);
    let latest_to = floor_minute(now - rules.to_min_age);
    let mut start = floor_minute(from).max(earliest);
    let end = ceil_minute(to).min(latest_to);
    while start < end && start <= latest_from {
        let stop = (start + rules.max_window).min(end);
        out.push(Window {
            from: start,
            to: stop,
        });
        start = stop;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_date("t", s).expect("test date")
    }

    #[test]
    fn parses_both_formats() {
        assert_eq!(t("202611220300"), t("2026-11-22T03:00:00Z"));
        assert_eq!(t("2026-11-22T05:00:00+02:00"), t("202611220300"));
        assert!(parse_date("from_date", "2026-11-22").is_err());
        assert!(parse_date("from_date", "202613220300").is_err());
        let w = Window {
            from: t("202611220300"),
            to: t("202611220455"),
        };
        assert_eq!(w.from_date(), "202611220300");
        assert_eq!(w.to_date(), "202611220455");
    }

    #[test]
    fn floor_and_ceil() {
        assert_eq!(floor_minute(t("2026-11-22T03:00:59Z")), t("202611220300"));
        assert_eq!(ceil_minute(t("2026-11-22T03:00:01Z")), t("202611220301"));
        assert_eq!(ceil_minute(t("202611220300")), t("202611220300"));
    }
}
