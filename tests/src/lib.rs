//! The end-to-end tests of activity-relay live in `tests/tests/`: the real binary, the
//! emulator and real brokers. What they share with the crates' own tests (broker
//! addresses, outage proxies, fixtures as messages) is the `relay-testkit` crate.
