//! The `activity-relay` service: config, pipeline, dedup, dispatch, metrics, CLI.
//!
//! The core (pipeline, dedup, dispatch, decoded records, filters, metrics) is the crate
//! `relay-core`, re-exported here under the same module names.
//!
//! Public: what the binary (`main.rs`: `cli`, `cli_normalize`, `probe`) and the tests and
//! benches drive (`run`, `config`, `pipeline`, `dedup`, `dispatch`, `decoded`, `filter`,
//! `metrics`, `admin`, `cluster`, `recovery`). Private: the parts only `run` and the CLI
//! use (the sink registry, logging, the AsyncAPI schema, dead-letter replay).

pub mod admin;
pub mod cli;
pub mod cli_normalize;
pub mod cluster;
pub mod config;
mod logging;
pub mod probe;
pub mod recovery;
mod replay_dead;
pub mod run;
mod schema;
mod sinks;

pub use relay_core::{decoded, dedup, dispatch, filter, metrics, pipeline};
