//! `relay-xapi`: a typed client for X's management endpoints (webhooks, AAA and
//! activity/XAA subscriptions, replay), OAuth 1.0a signing, and the `x` CLI.
//!
//! ```no_run
//! # async fn demo() -> Result<(), relay_xapi::XapiError> {
//! use relay_xapi::{replay, XClient};
//!
//! let client = XClient::new(relay_xapi::DEFAULT_BASE_URL)?.bearer_token("…");
//! for w in client.list_webhooks().await? {
//!     println!("{} {} valid={}", w.id, w.url, w.valid);
//! }
//! // Automatic gap recovery: plan windows X accepts, replay them one after the other
//! // (X runs one job per webhook at a time; wait for each `replay_job_status`).
//! let now = chrono::Utc::now();
//! let windows = replay::plan_windows(now - chrono::Duration::hours(5), now, now);
//! if let Some(first) = windows.first() {
//!     let job = client.replay_account_activity("1146654567674912769", first).await?;
//!     println!("replay job {}", job.job_id);
//! }
//! if let Some(rl) = client.rate_limit() {
//!     println!("rate limit: {rl}");
//! }
//! # Ok(()) }
//! ```

pub mod cli;
pub mod client;
pub mod error;
mod json_out;
pub mod migrate;
pub mod oauth;
pub mod replay;
pub mod scopes;

pub use client::{
    AaaSubscriptions, AccessToken, ActivitySubscription, ActivitySubscriptionPage,
    ActivitySubscriptionUpdate, BulkDeleteFailure, BulkDeleteReport, ClientOptions,
    NewActivitySubscription, ReplayJob, SubscriptionCount, Webhook, XClient, DEFAULT_BASE_URL,
};
pub use error::{RateLimit, XapiError};
pub use replay::{ReplayError, ReplayRules, Window};
pub use scopes::{required_scope, UserToken, UserTokens};
