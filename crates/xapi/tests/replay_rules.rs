//! X's replay date rules at a fixed "now", and gap planning.

use chrono::{DateTime, Duration, Utc};
use relay_xapi::replay::{
    parse_date, parse_window, plan_windows, plan_windows_with, validate, ReplayError, ReplayRules,
    Window,
};

fn now() -> DateTime<Utc> {
    // Deliberately not on a minute boundary.
    parse_date("now", "2026-11-22T12:00:30Z").expect("now")
}

fn ago(minutes: i64) -> String {
    let t = now() - Duration::minutes(minutes);
    // Round down to the minute, as X's format does.
    let t = parse_date("t", &t.format("%Y%m%d%H%M").to_string()).expect("t");
    t.format("%Y%m%d%H%M").to_string()
}

fn check(from: &str, to: &str) -> Result<Window, ReplayError> {
    parse_window(from, to, now(), &ReplayRules::default())
}

#[test]
fn accepted_windows() {
    // (from, to) pairs that satisfy every rule.
    let ok = [
        (ago(60), ago(30)),
        (ago(31), ago(11)), // from exactly >= 31 min ago (12:00:30 - 31 m = 11:29:30 -> 11:29)
        (ago(130), ago(10)), // exactly 2 h
        (ago(24 * 60 - 1), ago(23 * 60)), // close to 24 h
        ("202611221100".into(), "202611221130".into()),
        ("2026-11-22T11:00:00Z".into(), "2026-11-22T11:30:00Z".into()),
        // RFC 3339 with an offset is converted to UTC.
        (
            "2026-11-22T12:00:00+01:00".into(),
            "2026-11-22T07:30:00-04:00".into(),
        ),
    ];
    for (from, to) in ok {
        let w = check(&from, &to).unwrap_or_else(|e| panic!("{from}..{to} rejected: {e}"));
        assert!(w.from < w.to);
        assert_eq!(w.from_date().len(), 12);
    }
    let w = check("2026-11-22T11:00:00Z", "2026-11-22T11:30:00Z").expect("ok");
    assert_eq!(w.from_date(), "202611221100");
    assert_eq!(w.to_date(), "202611221130");
}

#[test]
fn each_rule_rejects() {
    type Pred = fn(&ReplayError) -> bool;
    let cases: Vec<(String, String, Pred, &str)> = vec![
        (
            "2026-11-22".into(),
            ago(20),
            |e| {
                matches!(
                    e,
                    ReplayError::Unparseable {
                        field: "from_date",
                        ..
                    }
                )
            },
            "cannot read",
        ),
        (
            ago(60),
            "soon".into(),
            |e| {
                matches!(
                    e,
                    ReplayError::Unparseable {
                        field: "to_date",
                        ..
                    }
                )
            },
            "cannot read",
        ),
        (
            "202611221399".into(),
            ago(20),
            |e| matches!(e, ReplayError::Unparseable { .. }),
            "yyyymmddhhmm",
        ),
        (
            "2026-11-22T11:00:30Z".into(),
            ago(20),
            |e| {
                matches!(
                    e,
                    ReplayError::NotMinutePrecision {
                        field: "from_date",
                        ..
                    }
                )
            },
            "minute precision",
        ),
        (
            ago(60),
            "2026-11-22T11:40:00.5Z".into(),
            |e| {
                matches!(
                    e,
                    ReplayError::NotMinutePrecision {
                        field: "to_date",
                        ..
                    }
                )
            },
            "minute precision",
        ),
        (
            "202611221300".into(),
            ago(20),
            |e| matches!(e, ReplayError::FromInFuture { .. }),
            "from_date not in the future",
        ),
        (
            ago(30),
            ago(20),
            |e| matches!(e, ReplayError::FromTooRecent { .. }),
            "from_date at least 31 minutes ago",
        ),
        (
            "202611211159".into(),
            ago(23 * 60),
            |e| matches!(e, ReplayError::FromTooOld { .. }),
            "from_date within the last 24 h",
        ),
        (
            ago(60),
            "202611221300".into(),
            |e| matches!(e, ReplayError::ToInFuture { .. }),
            "to_date not in the future",
        ),
        (
            ago(60),
            ago(9),
            |e| matches!(e, ReplayError::ToTooRecent { .. }),
            "to_date at least 10 minutes ago",
        ),
        (
            ago(60),
            ago(0),
            |e| matches!(e, ReplayError::ToTooRecent { .. }),
            "to_date at least 10 minutes ago",
        ),
        (
            ago(60),
            ago(70),
            |e| matches!(e, ReplayError::FromNotBeforeTo { .. }),
            "from_date before to_date",
        ),
        (
            ago(60),
            ago(60),
            |e| matches!(e, ReplayError::FromNotBeforeTo { .. }),
            "to_date is exclusive",
        ),
        (
            ago(131),
            ago(10),
            |e| {
                matches!(
                    e,
                    ReplayError::WindowTooLong {
                        minutes: 121,
                        max_minutes: 120,
                        ..
                    }
                )
            },
            "window at most 120 minutes",
        ),
        (
            ago(600),
            ago(60),
            |e| matches!(e, ReplayError::WindowTooLong { .. }),
            "window at most",
        ),
    ];
    for (from, to, pred, words) in cases {
        match check(&from, &to) {
            Ok(w) => panic!("{from}..{to} accepted as {w:?}, expected {words}"),
            Err(e) => {
                assert!(pred(&e), "{from}..{to}: wrong rule {e:?}");
                assert!(
                    e.to_string().contains(words),
                    "{e} should mention {words:?}"
                );
            }
        }
    }
}

#[test]
fn to_date_too_old_is_named_before_the_order_rule() {
    // from passes its own rules; to lies more than 24 h back.
    let e = check(&ago(60), "202611211100").expect_err("to too old");
    assert!(
        matches!(e, ReplayError::ToTooOld { max_hours: 24, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("to_date within the last 24 h"));
}

#[test]
fn window_length_is_configurable() {
    let rules = ReplayRules {
        max_window: Duration::minutes(30),
        ..ReplayRules::default()
    };
    assert!(parse_window(&ago(60), &ago(30), now(), &rules).is_ok());
    let e = parse_window(&ago(61), &ago(30), now(), &rules).expect_err("too long");
    assert!(matches!(
        e,
        ReplayError::WindowTooLong {
            minutes: 31,
            max_minutes: 30,
            ..
        }
    ));
    let wide = ReplayRules {
        max_window: Duration::hours(6),
        ..ReplayRules::default()
    };
    assert!(parse_window(&ago(300), &ago(60), now(), &wide).is_ok());
}

#[test]
fn plan_splits_a_gap_into_valid_two_hour_windows() {
    let gap_from = now() - Duration::hours(5) - Duration::seconds(10);
    let gap_to = now() - Duration::minutes(45);
    let plan = plan_windows(gap_from, gap_to, now());
    assert_eq!(plan.len(), 3, "{plan:?}");
    // Contiguous, widened to whole minutes, each valid, each at most 2 h.
    assert_eq!(plan[0].from, parse_date("f", "202611220700").expect("t"));
    assert_eq!(plan[2].to, parse_date("t", "202611221116").expect("t"));
    for pair in plan.windows(2) {
        assert_eq!(pair[0].to, pair[1].from);
    }
    for w in &plan {
        assert!(w.duration() <= Duration::hours(2));
        validate(w, now(), &ReplayRules::default()).expect("planned window is valid");
    }
    assert_eq!(plan[0].duration(), Duration::hours(2));
}

#[test]
fn plan_clamps_to_the_last_24_hours_and_recent_limits() {
    // A gap from 30 h ago until now: the oldest part is lost, the newest part must wait.
    let plan = plan_windows(now() - Duration::hours(30), now(), now());
    assert!(!plan.is_empty());
    let first = plan[0];
    let last = plan[plan.len() - 1];
    assert!(first.from >= now() - Duration::hours(24));
    assert!(first.from <= now() - Duration::hours(24) + Duration::minutes(2));
    assert!(last.to <= now() - Duration::minutes(10));
    assert!(last.from <= now() - Duration::minutes(31));
    assert_eq!(plan.len(), 12, "{plan:?}");
    for w in &plan {
        validate(w, now(), &ReplayRules::default()).expect("valid");
    }
}

#[test]
fn plan_is_empty_when_nothing_can_be_replayed_yet_or_anymore() {
    // Too recent: from must be at least 31 minutes ago.
    assert!(plan_windows(now() - Duration::minutes(20), now(), now()).is_empty());
    // Too old: entirely before the last 24 h.
    assert!(plan_windows(
        now() - Duration::hours(30),
        now() - Duration::hours(25),
        now()
    )
    .is_empty());
    // Empty or inverted gap.
    assert!(plan_windows(
        now() - Duration::hours(2),
        now() - Duration::hours(2),
        now()
    )
    .is_empty());
    assert!(plan_windows(
        now() - Duration::hours(1),
        now() - Duration::hours(2),
        now()
    )
    .is_empty());
}

#[test]
fn plan_honours_a_custom_window() {
    let rules = ReplayRules {
        max_window: Duration::minutes(15),
        ..ReplayRules::default()
    };
    let plan = plan_windows_with(
        now() - Duration::minutes(100),
        now() - Duration::minutes(40),
        now(),
        &rules,
    );
    assert_eq!(plan.len(), 5, "{plan:?}");
    for w in &plan {
        assert!(w.duration() <= Duration::minutes(15));
        validate(w, now(), &rules).expect("valid");
    }
}
