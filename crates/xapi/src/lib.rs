//! `relay-xapi`: a typed client for X's management endpoints. (Contract; built under issue 7.)

pub mod oauth;
