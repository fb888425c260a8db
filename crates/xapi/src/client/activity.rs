//! The X Activity API's subscriptions (`/2/activity/subscriptions`): create (with the app's
//! Bearer token or a user's OAuth 2.0 token), list every page, update, delete one or in
//! bulk.

use std::collections::HashSet;

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    bool_field, many, missing, one, scalar, seg, str_field, u64_field, Auth, XClient,
    BULK_DELETE_MAX,
};
use crate::error::XapiError;

/// An activity-stream or XAA subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActivitySubscription {
    /// Subscription id.
    pub id: String,
    /// XAA event type (e.g. `post.create`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Activity-stream event types (AAA keys).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Activity-stream user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// XAA filter (`user_id`, `keyword`, `direction`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// Caller's tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Delivery webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Last update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// What to subscribe to: both of X's body shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewActivitySubscription {
    /// Activity stream: `{"user_id", "event_types":[...]}`.
    UserEvents {
        /// The user.
        user_id: String,
        /// AAA event keys.
        event_types: Vec<String>,
    },
    /// XAA: `{"event_type", "filter":{...}, "tag"?, "webhook_id"?}`.
    Filtered {
        /// XAA event type.
        event_type: String,
        /// Filter object (e.g. `{"user_id":"…"}`).
        filter: Value,
        /// Optional tag.
        tag: Option<String>,
        /// Optional delivery webhook.
        webhook_id: Option<String>,
    },
}

impl NewActivitySubscription {
    fn body(&self) -> Value {
        match self {
            Self::UserEvents {
                user_id,
                event_types,
            } => json!({"user_id": user_id, "event_types": event_types}),
            Self::Filtered {
                event_type,
                filter,
                tag,
                webhook_id,
            } => {
                let mut body = json!({"event_type": event_type, "filter": filter});
                if let Some(tag) = tag {
                    body["tag"] = json!(tag);
                }
                if let Some(id) = webhook_id {
                    body["webhook_id"] = json!(id);
                }
                body
            }
        }
    }
}

/// What an update changes (X allows only these two).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivitySubscriptionUpdate {
    /// New tag.
    pub tag: Option<String>,
    /// New delivery webhook.
    pub webhook_id: Option<String>,
}

/// One page of subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActivitySubscriptionPage {
    /// The subscriptions on this page.
    pub subscriptions: Vec<ActivitySubscription>,
    /// Token for the next page (`meta.next_token`).
    pub next_token: Option<String>,
    /// `meta.result_count`, if sent.
    pub result_count: Option<u64>,
}

/// Outcome of a bulk delete (split into calls of at most 100 ids).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BulkDeleteReport {
    /// Distinct ids asked for.
    pub requested: usize,
    /// Calls made.
    pub calls: usize,
    /// Whether every id asked for was reported deleted.
    pub all_deleted: bool,
    /// The ids X reported deleted (`data[].subscription_id` with `deleted: true`).
    pub deleted: Vec<String>,
    /// The ids X did not delete, with its reason (`errors[]`, or `deleted: false`).
    pub failed: Vec<BulkDeleteFailure>,
    /// `meta.total_subscriptions` after the last call, when sent.
    pub total_subscriptions: Option<u64>,
    /// Per-id problems X reported, as text.
    pub errors: Vec<String>,
}

/// One id of a bulk delete that X did not delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BulkDeleteFailure {
    pub subscription_id: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

impl XClient {
    /// `POST /2/activity/subscriptions`.
    pub async fn create_activity_subscription(
        &self,
        new: &NewActivitySubscription,
    ) -> Result<ActivitySubscription, XapiError> {
        self.post_activity_subscription(new, Auth::Bearer).await
    }

    async fn post_activity_subscription(
        &self,
        new: &NewActivitySubscription,
        auth: Auth<'_>,
    ) -> Result<ActivitySubscription, XapiError> {
        let body = new.body();
        let (status, v) = self
            .call(
                Method::POST,
                "/2/activity/subscriptions",
                &[],
                Some(&body),
                auth,
            )
            .await?;
        one(&v)
            .and_then(activity_from)
            .ok_or_else(|| missing(status, "data.id"))
    }

    /// `POST /2/activity/subscriptions` with the right credential: the app's Bearer token for
    /// a public event type; for a private one, `user`'s OAuth 2.0 access token, whose
    /// scopes are checked first ([`XapiError::UserTokenRequired`],
    /// [`XapiError::MissingScope`]: no call is made).
    pub async fn create_activity_subscription_as(
        &self,
        new: &NewActivitySubscription,
        user: Option<&crate::scopes::UserToken>,
    ) -> Result<ActivitySubscription, XapiError> {
        let (event_type, user_id) = match new {
            NewActivitySubscription::Filtered {
                event_type, filter, ..
            } => (
                event_type.as_str(),
                filter
                    .get("user_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            NewActivitySubscription::UserEvents { .. } => {
                return self.create_activity_subscription(new).await
            }
        };
        let Some(scope) = crate::scopes::required_scope(event_type) else {
            return self.create_activity_subscription(new).await;
        };
        let Some(token) = user else {
            return Err(XapiError::UserTokenRequired {
                event_type: event_type.to_string(),
                user_id,
                scope,
            });
        };
        token
            .allows(event_type)
            .map_err(|scope| XapiError::MissingScope {
                event_type: event_type.to_string(),
                user_id: user_id.clone(),
                scope,
            })?;
        self.post_activity_subscription(new, Auth::OAuth2(token.access_token.expose()))
            .await
    }

    /// `GET /2/activity/subscriptions` (one page).
    pub async fn list_activity_subscriptions(
        &self,
        max_results: Option<u32>,
        pagination_token: Option<&str>,
    ) -> Result<ActivitySubscriptionPage, XapiError> {
        let mut query = Vec::new();
        if let Some(n) = max_results {
            query.push(("max_results", n.to_string()));
        }
        if let Some(t) = pagination_token {
            query.push(("pagination_token", t.to_string()));
        }
        let (_, v) = self
            .call(
                Method::GET,
                "/2/activity/subscriptions",
                &query,
                None,
                Auth::Bearer,
            )
            .await?;
        let meta = v.get("meta");
        Ok(ActivitySubscriptionPage {
            subscriptions: many(&v).iter().filter_map(|s| activity_from(s)).collect(),
            next_token: meta
                .and_then(|m| str_field(m, "next_token"))
                .filter(|t| !t.is_empty()),
            result_count: meta.and_then(|m| u64_field(m, "result_count")),
        })
    }

    /// Every subscription, following `meta.next_token` page after page.
    pub async fn list_all_activity_subscriptions(
        &self,
        page_size: Option<u32>,
    ) -> Result<Vec<ActivitySubscription>, XapiError> {
        let mut all = Vec::new();
        let mut seen = HashSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_activity_subscriptions(page_size, token.as_deref())
                .await?;
            all.extend(page.subscriptions);
            match page.next_token {
                Some(next) => {
                    if !seen.insert(next.clone()) {
                        return Err(XapiError::BadResponse {
                            status: 200,
                            message: format!("pagination token {next:?} came back twice"),
                        });
                    }
                    token = Some(next);
                }
                None => return Ok(all),
            }
        }
    }

    /// `PUT /2/activity/subscriptions/:id`: changes `tag` and/or `webhook_id`.
    pub async fn update_activity_subscription(
        &self,
        id: &str,
        update: &ActivitySubscriptionUpdate,
    ) -> Result<ActivitySubscription, XapiError> {
        if update.tag.is_none() && update.webhook_id.is_none() {
            return Err(XapiError::InvalidArgument(
                "an update needs a tag or a webhook id".into(),
            ));
        }
        let mut body = json!({});
        if let Some(tag) = &update.tag {
            body["tag"] = json!(tag);
        }
        if let Some(w) = &update.webhook_id {
            body["webhook_id"] = json!(w);
        }
        let path = format!("/2/activity/subscriptions/{}", seg(id)?);
        let (_, v) = self
            .call(Method::PUT, &path, &[], Some(&body), Auth::Bearer)
            .await?;
        Ok(one(&v)
            .and_then(activity_from)
            .unwrap_or_else(|| ActivitySubscription {
                id: id.to_string(),
                tag: update.tag.clone(),
                webhook_id: update.webhook_id.clone(),
                ..ActivitySubscription::default()
            }))
    }

    /// `DELETE /2/activity/subscriptions/:id`.
    pub async fn delete_activity_subscription(&self, id: &str) -> Result<bool, XapiError> {
        self.delete_one(&format!("/2/activity/subscriptions/{}", seg(id)?))
            .await
    }

    /// `DELETE /2/activity/subscriptions?ids=…`, split into calls of at most 100 ids
    /// (duplicates dropped). Stops at the first call X refuses.
    pub async fn delete_activity_subscriptions(
        &self,
        ids: &[String],
    ) -> Result<BulkDeleteReport, XapiError> {
        let mut seen = HashSet::new();
        let ids: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
        let mut report = BulkDeleteReport {
            requested: ids.len(),
            all_deleted: ids.is_empty(),
            ..BulkDeleteReport::default()
        };
        for chunk in ids.chunks(BULK_DELETE_MAX) {
            let joined = chunk
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let (_, v) = self
                .call(
                    Method::DELETE,
                    "/2/activity/subscriptions",
                    &[("ids", joined)],
                    None,
                    Auth::Bearer,
                )
                .await?;
            report.calls += 1;
            let items = many(&v);
            let has_errors = v
                .get("errors")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty());
            // An older flat answer, `{"data":{"deleted":true}}`, names no id: it covers
            // the whole call.
            if !has_errors
                && items
                    .iter()
                    .all(|i| str_field(i, "subscription_id").is_none())
                && items.iter().any(|i| bool_field(i, "deleted") == Some(true))
            {
                report.deleted.extend(chunk.iter().map(|s| s.to_string()));
                continue;
            }
            for item in items {
                let id = str_field(item, "subscription_id").or_else(|| str_field(item, "id"));
                match (bool_field(item, "deleted"), id) {
                    (Some(true), Some(id)) => report.deleted.push(id),
                    (Some(false), id) => report.failed.push(BulkDeleteFailure {
                        subscription_id: id,
                        reason: Some("NotDeleted".into()),
                        message: None,
                    }),
                    _ => {}
                }
            }
            if let Some(errors) = v.get("errors").and_then(Value::as_array) {
                for e in errors {
                    let (reason, message) = crate::error::problem_of(&json!({ "errors": [e] }));
                    report.failed.push(BulkDeleteFailure {
                        subscription_id: str_field(e, "subscription_id")
                            .or_else(|| str_field(e, "value"))
                            .or_else(|| str_field(e, "id")),
                        reason,
                        message,
                    });
                    report.errors.push(problem_text(e));
                }
            }
            if let Some(t) = v
                .get("meta")
                .and_then(|m| u64_field(m, "total_subscriptions"))
            {
                report.total_subscriptions = Some(t);
            }
        }
        let deleted: HashSet<&str> = report.deleted.iter().map(String::as_str).collect();
        report.all_deleted =
            report.failed.is_empty() && ids.iter().all(|id| deleted.contains(id.as_str()));
        Ok(report)
    }
}

pub(super) fn activity_from(v: &Value) -> Option<ActivitySubscription> {
    let id = str_field(v, "id").or_else(|| str_field(v, "subscription_id"))?;
    let event_types = v
        .get("event_types")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(scalar).collect())
        .unwrap_or_default();
    Some(ActivitySubscription {
        id,
        event_type: str_field(v, "event_type"),
        event_types,
        user_id: str_field(v, "user_id"),
        filter: v.get("filter").filter(|f| !f.is_null()).cloned(),
        tag: str_field(v, "tag"),
        webhook_id: str_field(v, "webhook_id"),
        created_at: str_field(v, "created_at"),
        updated_at: str_field(v, "updated_at"),
    })
}

fn problem_text(e: &Value) -> String {
    let id = str_field(e, "subscription_id")
        .or_else(|| str_field(e, "value"))
        .or_else(|| str_field(e, "resource_id"))
        .or_else(|| str_field(e, "id"));
    let (reason, detail) = crate::error::problem_of(&json!({ "errors": [e] }));
    let mut out = String::new();
    if let Some(id) = id {
        out.push_str(&id);
        out.push_str(": ");
    }
    out.push_str(reason.as_deref().unwrap_or("error"));
    if let Some(d) = detail {
        out.push_str(": ");
        out.push_str(&d);
    }
    out
}
