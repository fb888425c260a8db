//! The `activity-relay` service: config, pipeline, dedup, dispatch, metrics, CLI.

pub mod admin;
pub mod cli;
pub mod cli_normalize;
pub mod cluster;
pub mod config;
pub mod decoded;
pub mod dedup;
pub mod dispatch;
pub mod filter;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod probe;
pub mod recovery;
pub mod replay_dead;
pub mod run;
pub mod schema;
pub mod sinks;
