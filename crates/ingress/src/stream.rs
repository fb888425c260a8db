//! The activity stream client (spec §1b, §3). (Being written.)
