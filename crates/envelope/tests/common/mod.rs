//! Helpers of the envelope test files: fixtures, a fixed context, spot checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use relay_envelope::{normalize, Context, Envelope, IngressKind};
use serde_json::Value;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

pub fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(FIXTURES).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
}

pub fn ctx(ingress: IngressKind) -> Context {
    Context {
        ingress,
        source: "/x/account-activity/webhook/test-app".to_owned(),
        received_at: received(),
        formats: relay_envelope::Formats::ALL,
    }
}

pub fn norm(name: &str) -> Vec<Envelope> {
    normalize(&fixture(name), &ctx(IngressKind::Webhook)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn one(name: &str) -> Envelope {
    let mut v = norm(name);
    assert_eq!(v.len(), 1, "{name}");
    v.remove(0)
}

pub fn payload(e: &Envelope) -> Value {
    serde_json::from_str(e.data.payload.get()).unwrap()
}

pub fn expected_types() -> BTreeMap<String, Vec<String>> {
    serde_json::from_slice(&fixture("expected-types.json")).unwrap()
}

/// (type, subject, time, actorid, targetid, objectid)
pub type Spot = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

pub fn check(name: &str, e: &Envelope, want: Spot) {
    let (ty, subject, time, actor, target, object) = want;
    assert_eq!(e.event_type, ty, "{name} type");
    assert_eq!(e.subject, subject, "{name} subject");
    assert_eq!(
        e.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        time,
        "{name} time"
    );
    assert_eq!(e.actorid.as_deref(), actor, "{name} actorid");
    assert_eq!(e.targetid.as_deref(), target, "{name} targetid");
    assert_eq!(e.objectid.as_deref(), object, "{name} objectid");
}
