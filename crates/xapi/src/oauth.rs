//! OAuth 1.0a (RFC 5849) HMAC-SHA1 request signing, as X's user-context endpoints need it.

/// RFC 3986 percent-encoding: only `A-Z a-z 0-9 - . _ ~` stay as they are; uppercase hex.
pub fn percent_encode(s: &str) -> String {
    let _ = s;
    unimplemented!("issue 7")
}

/// The signature (base64 of HMAC-SHA1) of a request. `url` may carry a query string: its
/// parameters are signed along with `params` (which include every `oauth_*` parameter
/// except `oauth_signature`); the base string uses the URL without its query.
pub fn signature(
    method: &str,
    url: &str,
    params: &[(String, String)],
    consumer_secret: &str,
    token_secret: &str,
) -> String {
    let _ = (method, url, params, consumer_secret, token_secret);
    unimplemented!("issue 7")
}
