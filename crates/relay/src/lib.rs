//! The `activity-relay` service: config, pipeline, dedup, dispatch, metrics, CLI.

pub mod cli_normalize;
