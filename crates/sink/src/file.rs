//! The embedded default sink: NDJSON envelopes to rotating files, or stdout.
