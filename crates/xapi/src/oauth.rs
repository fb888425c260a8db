//! OAuth 1.0a (RFC 5849) HMAC-SHA1 request signing, as X's user-context endpoints need it.
//!
//! JSON bodies are not signed; the query parameters of the URL and every `oauth_*`
//! parameter are.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use relay_secret::Secret;
use sha1::Sha1;

/// RFC 3986 percent-encoding: only `A-Z a-z 0-9 - . _ ~` stay as they are; uppercase hex.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` query text (`+` is a space) into pairs.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Splits `url` into the normalized base string URI (RFC 5849 §3.4.1.2: scheme and host
/// lowercased, default port dropped, no query or fragment) and its query parameters.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    match url::Url::parse(url) {
        // `url` lowercases scheme and host and drops the scheme's default port already.
        Ok(parsed) => {
            let mut base = format!("{}://", parsed.scheme());
            if let Some(host) = parsed.host_str() {
                base.push_str(host);
            }
            if let Some(port) = parsed.port() {
                base.push(':');
                base.push_str(&port.to_string());
            }
            base.push_str(parsed.path());
            let params = parsed.query().map(query_pairs).unwrap_or_default();
            (base, params)
        }
        // Not an absolute URL: sign it as given, minus any query and fragment.
        Err(_) => {
            let no_fragment = url.split('#').next().unwrap_or(url);
            match no_fragment.split_once('?') {
                Some((base, query)) => (base.to_string(), query_pairs(query)),
                None => (no_fragment.to_string(), Vec::new()),
            }
        }
    }
}

/// The signature base string (RFC 5849 §3.4.1): `METHOD&enc(base url)&enc(sorted params)`.
pub fn base_string(method: &str, url: &str, params: &[(String, String)]) -> String {
    let (base_url, query) = split_url(url);
    let mut encoded: Vec<(String, String)> = query
        .iter()
        .chain(params.iter())
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    let joined = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(&base_url),
        percent_encode(&joined)
    )
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
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    let base = base_string(method, url, params);
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty tag
    // rather than panic if it ever did.
    match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(base.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// The four secrets and identifiers of a user-context OAuth 1.0a request.
///
/// `Debug` never shows the secrets.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The app's consumer key (API key).
    pub consumer_key: String,
    /// The app's consumer secret (API key secret).
    pub consumer_secret: Secret,
    /// The user's access token.
    pub token: String,
    /// The user's access token secret.
    pub token_secret: Secret,
}

/// A random nonce: 32 alphanumeric characters.
pub fn nonce() -> String {
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
        .collect()
}

/// The `Authorization` header value for a request, with a random nonce and the current time.
///
/// `extra_params` are request parameters outside the URL's query (e.g. form fields); the
/// URL's own query parameters are signed automatically. JSON bodies are not signed.
pub fn authorization_header(
    method: &str,
    url: &str,
    extra_params: &[(String, String)],
    creds: &Credentials,
) -> String {
    let timestamp = chrono::Utc::now().timestamp().max(0).to_string();
    authorization_header_with(method, url, extra_params, creds, &nonce(), &timestamp)
}

/// Deterministic [`authorization_header`]: the caller chooses nonce and timestamp.
pub fn authorization_header_with(
    method: &str,
    url: &str,
    extra_params: &[(String, String)],
    creds: &Credentials,
    nonce: &str,
    timestamp: &str,
) -> String {
    let mut oauth: Vec<(String, String)> = vec![
        ("oauth_consumer_key".into(), creds.consumer_key.clone()),
        ("oauth_nonce".into(), nonce.to_string()),
        ("oauth_signature_method".into(), "HMAC-SHA1".into()),
        ("oauth_timestamp".into(), timestamp.to_string()),
        ("oauth_token".into(), creds.token.clone()),
        ("oauth_version".into(), "1.0".into()),
    ];
    let mut all = oauth.clone();
    all.extend(extra_params.iter().cloned());
    let sig = signature(
        method,
        url,
        &all,
        creds.consumer_secret.expose(),
        creds.token_secret.expose(),
    );
    oauth.push(("oauth_signature".into(), sig));
    oauth.sort();
    let fields = oauth
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("OAuth {fields}")
}

/// Parses an `Authorization: OAuth k="v", …` header into decoded pairs (`None` if it is not
/// an OAuth header). Useful to verify a request, as the emulator does.
pub fn parse_authorization_header(header: &str) -> Option<Vec<(String, String)>> {
    // The scheme name is case-insensitive (RFC 7235).
    let header = header.trim();
    let rest = match (header.get(..5), header.get(5..)) {
        (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case("OAuth") => rest,
        _ => return None,
    };
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        out.push((percent_decode(k.trim())?, percent_decode(v)?));
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    fn vector_params() -> Vec<(String, String)> {
        vec![
            p("include_entities", "true"),
            p("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
            p("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
            p("oauth_signature_method", "HMAC-SHA1"),
            p("oauth_timestamp", "1318622958"),
            p(
                "oauth_token",
                "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
            ),
            p("oauth_version", "1.0"),
            p(
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            ),
        ]
    }

    const CS: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
    const TS: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";

    #[test]
    fn spec_vector() {
        let url = "https://api.twitter.com/1.1/statuses/update.json";
        assert_eq!(
            signature("POST", url, &vector_params(), CS, TS),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
        let url = "https://api.x.com/1.1/statuses/update.json";
        assert_eq!(
            signature("POST", url, &vector_params(), CS, TS),
            "Ls93hJiZbQ3akF3HF3x1Bz8/zU4="
        );
    }

    #[test]
    fn spec_vector_base_string() {
        let base = base_string(
            "POST",
            "https://api.twitter.com/1.1/statuses/update.json",
            &vector_params(),
        );
        assert_eq!(
            base,
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        );
    }

    #[test]
    fn query_params_of_the_url_are_signed() {
        let mut params = vector_params();
        let (_, rest): (Vec<_>, Vec<_>) = params
            .drain(..)
            .partition(|(k, _)| k == "include_entities" || k == "status");
        let url = "https://api.twitter.com/1.1/statuses/update.json?include_entities=true&status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21";
        assert_eq!(
            signature("POST", url, &rest, CS, TS),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
        // `+` in a query is a space (form encoding).
        let url = "https://api.twitter.com/1.1/statuses/update.json?include_entities=true&status=Hello+Ladies+%2B+Gentlemen%2C+a+signed+OAuth+request%21";
        assert_eq!(
            signature("POST", url, &rest, CS, TS),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
    }

    #[test]
    fn base_url_is_normalized() {
        let url = "HTTPS://API.Twitter.COM:443/1.1/statuses/update.json#frag";
        assert_eq!(
            signature("post", url, &vector_params(), CS, TS),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
        let with_port = base_string("GET", "http://Example.com:8080/a/b", &[]);
        assert_eq!(with_port, "GET&http%3A%2F%2Fexample.com%3A8080%2Fa%2Fb&");
        let default_http = base_string("GET", "http://example.com:80/a", &[]);
        assert_eq!(default_http, "GET&http%3A%2F%2Fexample.com%2Fa&");
    }

    #[test]
    fn different_secret_changes_signature() {
        let url = "https://api.twitter.com/1.1/statuses/update.json";
        assert_ne!(
            signature("POST", url, &vector_params(), CS, "other"),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
    }

    #[test]
    fn percent_encoding_edge_cases() {
        assert_eq!(percent_encode(""), "");
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(percent_encode("+"), "%2B");
        assert_eq!(percent_encode("~"), "~");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("-._"), "-._");
        assert_eq!(percent_encode("AZaz09"), "AZaz09");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("☃"), "%E2%98%83");
        assert_eq!(percent_encode("😀"), "%F0%9F%98%80");
        assert_eq!(
            percent_encode(":/?#[]@!$&'()*+,;=%"),
            "%3A%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%25"
        );
        assert_eq!(percent_encode("\n\0"), "%0A%00");
    }

    #[test]
    fn header_is_signed_and_parseable() {
        let creds = Credentials {
            consumer_key: "xvz1evFS4wEEPTGEFPHBog".into(),
            consumer_secret: CS.into(),
            token: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb".into(),
            token_secret: TS.into(),
        };
        let url = "https://api.twitter.com/1.1/statuses/update.json?include_entities=true";
        let header = authorization_header_with(
            "POST",
            url,
            &[p(
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            )],
            &creds,
            "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
            "1318622958",
        );
        assert!(header.starts_with("OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", "));
        assert!(header.contains("oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\""));
        assert!(!header.contains(CS));
        assert!(!header.contains(TS));
        let parsed = parse_authorization_header(&header).expect("parses");
        let sig = parsed
            .iter()
            .find(|(k, _)| k == "oauth_signature")
            .map(|(_, v)| v.clone());
        assert_eq!(sig.as_deref(), Some("hCtSmYh+iHYCEqBWrE7C7hYmtUk="));
        assert_eq!(parsed.len(), 7);
    }

    #[test]
    fn random_header_has_fresh_nonce() {
        let creds = Credentials {
            consumer_key: "ck".into(),
            consumer_secret: "cs".into(),
            token: "t".into(),
            token_secret: "ts".into(),
        };
        let a = authorization_header("GET", "https://api.x.com/2/x", &[], &creds);
        let b = authorization_header("GET", "https://api.x.com/2/x", &[], &creds);
        let nonce_of = |h: &str| {
            parse_authorization_header(h)
                .expect("parses")
                .into_iter()
                .find(|(k, _)| k == "oauth_nonce")
                .map(|(_, v)| v)
                .expect("nonce")
        };
        assert_ne!(nonce_of(&a), nonce_of(&b));
        assert_eq!(nonce_of(&a).len(), 32);
        assert!(!format!("{creds:?}").contains("cs\""));
        assert!(format!("{creds:?}").contains("<redacted>"));
    }

    #[test]
    fn parse_rejects_other_schemes() {
        assert!(parse_authorization_header("Bearer abc").is_none());
        assert!(parse_authorization_header("OAuthx a=\"b\"").is_none());
        // The scheme name is case-insensitive.
        assert_eq!(
            parse_authorization_header("oauth oauth_token=\"a%2Fb\"").unwrap(),
            vec![("oauth_token".to_string(), "a/b".to_string())]
        );
    }

    proptest::proptest! {
        #[test]
        fn encoding_only_emits_unreserved_or_escapes(s in ".*") {
            let enc = percent_encode(&s);
            let b = enc.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    proptest::prop_assert!(i + 3 <= b.len(), "truncated escape");
                    let h = &enc[i + 1..i + 3];
                    proptest::prop_assert!(h.bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)), "bad escape {}", h);
                    i += 3;
                } else {
                    proptest::prop_assert!(b[i].is_ascii_alphanumeric() || b"-._~".contains(&b[i]), "bad char {}", b[i]);
                    i += 1;
                }
            }
            proptest::prop_assert_eq!(percent_decode(&enc), Some(s));
        }
    }
}
