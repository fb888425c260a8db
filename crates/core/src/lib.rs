//! `relay-core`: the relay's core, readable apart from its binary (ARCHITECTURE.md).
//!
//! * [`pipeline`]: a delivery's way to durability: normalize, dedup (this process's window
//!   and, in a fleet, the shared store through [`pipeline::Fleet`]), spool; what the
//!   ingresses call.
//! * [`dedup`]: the window of accepted event ids, with its journal.
//! * [`dispatch`]: one dispatcher per sink: spool to broker, retries, dead letters.
//! * [`decoded`]: records decoded once for every dispatcher (the spool's attachments).
//! * [`filter`]: a sink's `types` / `exclude_types`.
//! * [`metrics`]: the Prometheus metrics of all of these.
//!
//! The relay crate (`activity-relay`) builds these from its configuration, adds the
//! ingresses, the fleet, gap recovery, admin and the CLI, and re-exports these modules
//! under its own name.

pub mod decoded;
pub mod dedup;
pub mod dispatch;
pub mod filter;
pub mod metrics;
pub mod pipeline;
