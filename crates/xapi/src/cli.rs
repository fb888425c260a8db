//! The `x` CLI.
