//! Bearer and OAuth 1.0a (user context) checks, as X makes them.

use axum::http::{HeaderMap, Method, Uri};

use crate::config::{AppConfig, UserConfig};
use crate::error::ApiError;
use crate::state::{ct_eq, Shared};

/// The app whose Bearer token the request carries.
pub(crate) fn bearer<'a>(st: &'a Shared, headers: &HeaderMap) -> Result<&'a AppConfig, ApiError> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer header"))?;
    let token = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("this endpoint needs app-only Bearer authentication")
        })?
        .trim();
    st.cfg
        .apps
        .iter()
        .find(|a| ct_eq(a.bearer_token.as_bytes(), token.as_bytes()))
        .ok_or_else(|| ApiError::unauthorized("invalid Bearer token"))
}

/// The app of an XAA subscription call, and the user when the call carries an OAuth 2.0
/// user access token instead of the app's Bearer token (the app is then the first).
pub(crate) fn bearer_or_user(
    st: &Shared,
    headers: &HeaderMap,
) -> Result<(String, Option<UserConfig>), ApiError> {
    match bearer(st, headers) {
        Ok(app) => Ok((app.name.clone(), None)),
        Err(e) => {
            let token = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(e)?;
            let user = st
                .cfg
                .users
                .iter()
                .find(|u| ct_eq(u.oauth2().as_bytes(), token.as_bytes()))
                .ok_or_else(|| ApiError::unauthorized("invalid Bearer token"))?;
            let app = st
                .cfg
                .apps
                .first()
                .ok_or_else(|| ApiError::unauthorized("no app"))?;
            Ok((app.name.clone(), Some(user.clone())))
        }
    }
}

/// X's rule for private XAA types (with `strict_scopes`): the caller is the filtered user
/// (OAuth 2.0) and its token has the type's scope. 403 otherwise.
pub(crate) fn check_scope(
    st: &Shared,
    event_type: &str,
    filter_user: Option<&str>,
    user: Option<&UserConfig>,
) -> Result<(), ApiError> {
    if !st.cfg.strict_scopes {
        return Ok(());
    }
    let Some(scope) = relay_xapi::required_scope(event_type) else {
        return Ok(());
    };
    let Some(user) = user else {
        return Err(ApiError::new(
            403,
            "client-forbidden",
            format!("{event_type} is private: it needs an OAuth 2.0 user access token"),
        ));
    };
    if filter_user != Some(user.user_id.as_str()) {
        return Err(ApiError::new(
            403,
            "client-forbidden",
            "a private subscription's filter user_id must be the authenticated user",
        ));
    }
    if !user.scopes.iter().any(|s| s == scope) {
        return Err(ApiError::new(
            403,
            "client-forbidden",
            format!("missing scope {scope} for {event_type}"),
        ));
    }
    Ok(())
}

/// Verifies an OAuth 1.0a user-context request: consumer key, access token and
/// HMAC-SHA1 signature (query parameters included, body not signed).
pub(crate) fn oauth<'a>(
    st: &'a Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(&'a AppConfig, &'a UserConfig), ApiError> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("this endpoint needs OAuth 1.0a user context"))?;
    let pairs = relay_xapi::oauth::parse_authorization_header(h)
        .ok_or_else(|| ApiError::unauthorized("this endpoint needs OAuth 1.0a user context"))?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for k in [
        "oauth_consumer_key",
        "oauth_token",
        "oauth_signature",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_nonce",
    ] {
        if get(k).is_none() {
            return Err(ApiError::unauthorized(format!("OAuth header lacks {k}")));
        }
    }
    if get("oauth_signature_method") != Some("HMAC-SHA1") {
        return Err(ApiError::unauthorized(
            "oauth_signature_method must be HMAC-SHA1",
        ));
    }
    let ck = get("oauth_consumer_key").unwrap_or_default();
    let app = st
        .cfg
        .apps
        .iter()
        .find(|a| a.consumer_key == ck)
        .ok_or_else(|| ApiError::unauthorized("unknown consumer key"))?;
    let token = get("oauth_token").unwrap_or_default();
    let user = st
        .cfg
        .users
        .iter()
        .find(|u| u.access_token == token)
        .ok_or_else(|| ApiError::unauthorized("unknown access token"))?;
    let mut params: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k.starts_with("oauth_") && k != "oauth_signature")
        .cloned()
        .collect();
    if let Some(q) = uri.query() {
        params.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .or_else(|| uri.authority().map(|a| a.as_str().to_ascii_lowercase()))
        .ok_or_else(|| ApiError::unauthorized("no Host header"))?;
    let given = get("oauth_signature").unwrap_or_default();
    let ok = ["http", "https"].iter().any(|scheme| {
        let base = format!("{scheme}://{host}{}", uri.path());
        let expected = relay_xapi::oauth::signature(
            method.as_str(),
            &base,
            &params,
            &app.consumer_secret,
            &user.access_token_secret,
        );
        ct_eq(expected.as_bytes(), given.as_bytes())
    });
    if !ok {
        tracing::info!(user_id = user.user_id, "OAuth signature rejected");
        return Err(ApiError::unauthorized("invalid OAuth signature"));
    }
    Ok((app, user))
}
