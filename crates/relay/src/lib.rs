//! The `activity-relay` service: config, pipeline, dedup, dispatch, metrics, CLI.
