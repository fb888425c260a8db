//! Fuzz target: `normalize` on arbitrary bytes never panics, and every envelope it returns
//! follows the id rule and survives a serialize/parse round trip.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use relay_envelope::{is_valid_id, normalize, Context, Envelope, IngressKind};

fuzz_target!(|data: &[u8]| {
    let ctx = Context {
        ingress: IngressKind::Webhook,
        source: "/x/account-activity/webhook/fuzz".to_owned(),
        received_at: Utc.timestamp_opt(1_900_000_000, 0).unwrap(),
        formats: relay_envelope::Formats::ALL,
    };
    if let Ok(envelopes) = normalize(data, &ctx) {
        assert!(!envelopes.is_empty(), "Ok without an envelope");
        for e in &envelopes {
            assert!(is_valid_id(&e.id), "bad id {:?}", e.id);
            let json = e.to_json();
            assert!(!json.contains(&b'\n'), "envelope spans lines");
            let back = Envelope::from_json(&json).expect("envelope JSON parses back");
            assert_eq!(back.id, e.id);
            assert_eq!(back.to_json(), json);
        }
    }
});
