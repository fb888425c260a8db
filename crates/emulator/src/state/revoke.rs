//! A user revoking the app: X tells the app, then removes the user's subscriptions.

use super::*;

impl Shared {
    /// Removes `user`'s AAA subscriptions from the webhooks of the app with `app_id`;
    /// returns those webhooks.
    pub fn apply_revoke(&self, app_id: &str, user: &str) -> Vec<String> {
        let apps: Vec<&str> = self
            .cfg
            .apps
            .iter()
            .filter(|a| a.app_id == app_id)
            .map(|a| a.name.as_str())
            .collect();
        let mut out = Vec::new();
        let mut db = self.db.lock();
        for w in db
            .webhooks
            .iter_mut()
            .filter(|w| apps.contains(&w.app.as_str()))
        {
            let before = w.subscriptions.len();
            w.subscriptions.retain(|u| u != user);
            if w.subscriptions.len() < before {
                out.push(w.id.clone());
            }
        }
        if !out.is_empty() {
            tracing::info!(user, app_id, webhooks = ?out, "app permission revoked: subscription removed");
        }
        out
    }
}

/// `(app_id, user_id)` of an app-permission revoke (AAA `user_event.revoke` or XAA
/// `oauth.revoke`).
pub(super) fn revoke_of(v: &Value) -> Option<(String, String)> {
    if let Some(r) = v.get("user_event").and_then(|u| u.get("revoke")) {
        let app = r.get("target")?.get("app_id")?.as_str()?;
        let user = r.get("source")?.get("user_id")?.as_str()?;
        return Some((app.to_owned(), user.to_owned()));
    }
    let d = v.get("data")?;
    if d.get("event_type")?.as_str()? != "oauth.revoke" {
        return None;
    }
    let p = d.get("payload")?;
    Some((
        p.get("app_id")?.as_str()?.to_owned(),
        p.get("user_id")?.as_str()?.to_owned(),
    ))
}
