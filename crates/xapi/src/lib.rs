//! `relay-xapi`: a typed client for X's management endpoints (webhooks, AAA and
//! activity/XAA subscriptions, replay), OAuth 1.0a signing, and the `x` CLI.

pub mod cli;
pub mod client;
pub mod error;
pub mod oauth;
pub mod replay;

pub use client::{
    AaaSubscriptions, AccessToken, ActivitySubscription, ActivitySubscriptionPage,
    ActivitySubscriptionUpdate, BulkDeleteReport, ClientOptions, NewActivitySubscription,
    ReplayJob, SubscriptionCount, Webhook, XClient, DEFAULT_BASE_URL,
};
pub use error::{RateLimit, XapiError};
pub use replay::{ReplayError, ReplayRules, Window};
