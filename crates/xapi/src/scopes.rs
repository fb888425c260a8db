//! Which XAA event types are private (a subscription needs an OAuth 2.0 access token of the
//! filtered user, with a scope) and which are public (the app's Bearer token), from
//! `docs/spec/x-activity.md` §1c; and the user tokens an operator hands to `x migrate` and
//! `x activity-subscriptions create`.

use std::collections::BTreeMap;
use std::path::Path;

use relay_secret::Secret;
use serde::Deserialize;

use crate::error::XapiError;

/// The OAuth 2.0 scope a subscription to `event_type` needs, `None` for a public type
/// (created with the app's Bearer token).
pub fn required_scope(event_type: &str) -> Option<&'static str> {
    match event_type {
        "post.mention.create"
        | "post.reply.create"
        | "post.quote.create"
        | "post.repost.create" => Some("tweet.read"),
        "like.create" => Some("like.read"),
        "mute.mute" | "mute.unmute" => Some("mute.read"),
        "block.block" | "block.unblock" => Some("block.read"),
        "broadcast.chat" => Some("broadcast.read"),
        t if t.starts_with("dm.") || t.starts_with("chat.") => Some("dm.read"),
        _ => None,
    }
}

/// An OAuth 2.0 user access token (sent as `Authorization: Bearer`) and the scopes it was
/// granted, when known. `Debug` hides the token.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct UserToken {
    pub access_token: Secret,
    /// The granted scopes; `None` when unknown (X then decides).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

impl UserToken {
    /// Whether the token may subscribe to `event_type`: `Err(scope)` names the missing
    /// scope. Unknown scopes pass (X checks).
    pub fn allows(&self, event_type: &str) -> Result<(), &'static str> {
        match (required_scope(event_type), &self.scopes) {
            (Some(scope), Some(granted)) if !granted.iter().any(|g| g == scope) => Err(scope),
            _ => Ok(()),
        }
    }
}

/// User id → token, read from a JSON file: `{"<user id>": {"access_token": "…", "scopes":
/// ["tweet.read", …]}}` or `{"<user id>": "<token>"}` (scopes unknown).
#[derive(Clone, Debug, Default)]
pub struct UserTokens(BTreeMap<String, UserToken>);

#[derive(Deserialize)]
#[serde(untagged)]
enum TokenEntry {
    Plain(String),
    Full(UserToken),
}

/// Why a tokens file's text is not usable (it never holds a token's value: serde's
/// message, which may quote the input, is left out).
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("not a JSON object of user id to token (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("{0:?} is not an X user id")]
    NotAUserId(String),
    #[error("user {0}: empty access_token")]
    EmptyToken(String),
}

impl UserTokens {
    /// Reads the file at `path`. The error names the file, never a token.
    pub fn load(path: &Path) -> Result<Self, XapiError> {
        let text = std::fs::read(path)
            .map_err(|e| crate::migrate::file_err("user tokens file", path, e))?;
        Self::parse(&text).map_err(|e| crate::migrate::file_err("user tokens file", path, e))
    }

    /// Parses the JSON text of a tokens file.
    pub fn parse(text: &[u8]) -> Result<Self, TokensError> {
        let raw: BTreeMap<String, TokenEntry> =
            serde_json::from_slice(text).map_err(|e| TokensError::NotJson {
                line: e.line(),
                column: e.column(),
            })?;
        let mut out = BTreeMap::new();
        for (user, entry) in raw {
            if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TokensError::NotAUserId(user));
            }
            let token = match entry {
                TokenEntry::Plain(t) => UserToken {
                    access_token: Secret::new(t),
                    scopes: None,
                },
                TokenEntry::Full(t) => t,
            };
            if token.access_token.expose().trim().is_empty() {
                return Err(TokensError::EmptyToken(user));
            }
            out.insert(user, token);
        }
        Ok(UserTokens(out))
    }

    /// The token of `user_id`.
    pub fn get(&self, user_id: &str) -> Option<&UserToken> {
        self.0.get(user_id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_public_types() {
        assert_eq!(required_scope("post.create"), None);
        assert_eq!(required_scope("post.delete"), None);
        assert_eq!(required_scope("follow.follow"), None);
        assert_eq!(required_scope("profile.update.bio"), None);
        assert_eq!(required_scope("post.reply.create"), Some("tweet.read"));
        assert_eq!(required_scope("like.create"), Some("like.read"));
        assert_eq!(required_scope("dm.sent"), Some("dm.read"));
        assert_eq!(required_scope("chat.received"), Some("dm.read"));
        assert_eq!(required_scope("block.unblock"), Some("block.read"));
        assert_eq!(required_scope("broadcast.chat"), Some("broadcast.read"));
        assert_eq!(required_scope("broadcast.start"), None);
    }

    #[test]
    fn tokens_file_shapes_and_scope_checks() {
        let t = UserTokens::parse(
            br#"{"1": {"access_token": "secret-a", "scopes": ["tweet.read"]}, "2": "secret-b"}"#,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        let a = t.get("1").unwrap();
        assert_eq!(a.allows("post.reply.create"), Ok(()));
        assert_eq!(a.allows("like.create"), Err("like.read"));
        assert_eq!(a.allows("post.create"), Ok(()));
        assert_eq!(
            t.get("2").unwrap().allows("dm.sent"),
            Ok(()),
            "unknown scopes pass"
        );
        assert!(!format!("{t:?}").contains("secret"), "{t:?}");
        let e = UserTokens::parse(br#"{"x": "t"}"#).unwrap_err();
        assert!(matches!(e, TokensError::NotAUserId(_)), "{e}");
        assert!(e.to_string().contains("not an X user id"), "{e}");
        let e = UserTokens::parse(br#"{"1": "secret-c""#).unwrap_err();
        assert!(!e.to_string().contains("secret-c"), "{e}");
        assert!(UserTokens::parse(br#"{"1": {"access_token": " "}}"#).is_err());
    }
}
