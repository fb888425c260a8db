//! `activity-relay normalize`: deliveries in, envelopes out (NDJSON). (Built under issue 2.)
