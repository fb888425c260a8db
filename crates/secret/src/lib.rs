//! `relay-secret`: secrets in configuration, [`Secret`] (never printed) and [`redact_url`]
//! (the credentials inside a broker or store URL). The webhook's consumer secrets, X's
//! tokens, the sinks' passwords, every `Debug` and every log line go through these, so a
//! secret is hidden the same way everywhere: as [`REDACTED`].

use std::fmt;

use serde::Deserialize;

/// What a hidden secret prints as.
pub const REDACTED: &str = "<redacted>";

/// A secret string from the configuration: `Debug` and `Display` print [`REDACTED`].
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself (hand it to the client; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// For command-line options (`clap` parses through `FromStr`).
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{REDACTED}\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A broker URL, or a comma-separated list of them, with the credentials hidden:
/// `scheme://user:password@host` keeps the user and hides the password, and a lone user
/// part (`nats://token@host`, which is a token) is hidden whole. A comma inside a password
/// does not split the URL (a piece without `://` continues the previous one).
pub fn redact_url(url: &str) -> String {
    let mut pieces: Vec<String> = Vec::new();
    for piece in url.split(',') {
        match pieces.last_mut() {
            Some(last) if !piece.contains("://") => {
                last.push(',');
                last.push_str(piece);
            }
            _ => pieces.push(piece.to_owned()),
        }
    }
    pieces
        .iter()
        .map(|one| redact_one(one))
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(one: &str) -> String {
    let Some(scheme_end) = one.find("://") else {
        return one.to_owned();
    };
    let rest = &one[scheme_end + 3..];
    // The last '@' ends the user info. A password may hold '@', '/', '?' or '#' unescaped,
    // so do not stop at the path: a '@' in a path only hides more than needed.
    let Some(at) = rest.rfind('@') else {
        return one.to_owned();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.find(':') {
        Some(colon) => format!("{}:{REDACTED}", &userinfo[..colon]),
        None => REDACTED.to_owned(),
    };
    format!("{}{shown}{}", &one[..scheme_end + 3], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn redacts() {
        assert_eq!(
            redact_url("nats://u:pw@a:4222, nats://tok@b:4222,nats://c:4222"),
            "nats://u:<redacted>@a:4222, nats://<redacted>@b:4222,nats://c:4222"
        );
        assert_eq!(
            redact_url("amqp://guest:s3cr3t@host:5672/%2f"),
            "amqp://guest:<redacted>@host:5672/%2f"
        );
        assert_eq!(redact_url("amqps://u:p@ss@h/v"), "amqps://u:<redacted>@h/v");
        assert_eq!(redact_url("amqp://host/%2f"), "amqp://host/%2f");
        assert_eq!(redact_url("amqp://user@host"), "amqp://<redacted>@host");
        assert_eq!(redact_url("amqp://u:pa,ss@h"), "amqp://u:<redacted>@h");
        assert_eq!(redact_url("amqp://u:pa/ss@h/v"), "amqp://u:<redacted>@h/v");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(format!("{:?}", Secret::new("x")), "\"<redacted>\"");
        assert_eq!(Secret::new("x").to_string(), "<redacted>");
    }

    proptest! {
        /// Whatever the password holds, it never survives redaction.
        #[test]
        fn password_never_shown(pw in "[!-~]{6,24}", host in "[a-z]{1,8}") {
            prop_assume!(!pw.contains("://"));
            let url = format!("amqp://user:{pw}@{host}:5672/%2f");
            prop_assert_eq!(redact_url(&url), format!("amqp://user:<redacted>@{host}:5672/%2f"));
        }
    }
}
