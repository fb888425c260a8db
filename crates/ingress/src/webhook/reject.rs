//! Every way the webhook refuses a request, as one type: its status, body, headers and the
//! `outcome` label it is counted under (`activity_relay_webhook_requests_total`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a webhook request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 404: the path names no configured app.
    UnknownApp,
    /// 400: a CRC GET without `crc_token`.
    MissingCrcToken,
    /// 400: a `crc_token` not of the shape X sends (never signed).
    BadCrcToken,
    /// 401: no, a malformed, or a wrong signature (or a CRC-shaped body).
    Unauthorized,
    /// 413: a body over `body_limit`; the connection is closed.
    TooLarge,
    /// 413: an authentic delivery whose records can never fit a spool segment.
    TooLargeForSpool,
    /// 408: the body did not arrive within `body_timeout`.
    ReadTimeout,
    /// 400: the body could not be read.
    ReadError,
    /// 503 + `Retry-After`, connection closed: a limit (`outcome`: `busy`,
    /// `preauth_budget`) refused the POST before its body was read.
    Busy {
        outcome: &'static str,
        retry_after_secs: u64,
    },
    /// 503 + `Retry-After`: the spool is full.
    Full { retry_after_secs: u64 },
    /// 503 + `Retry-After`: the pipeline cannot accept (spool failed, shutting down).
    Unavailable { retry_after_secs: u64 },
}

impl Rejection {
    /// The `outcome` label of the request counter.
    pub(crate) fn outcome(self) -> &'static str {
        match self {
            Rejection::UnknownApp => "unknown_app",
            Rejection::MissingCrcToken => "bad_request",
            Rejection::BadCrcToken => "bad_crc_token",
            Rejection::Unauthorized => "unauthorized",
            Rejection::TooLarge | Rejection::TooLargeForSpool => "too_large",
            Rejection::ReadTimeout => "read_timeout",
            Rejection::ReadError => "read_error",
            Rejection::Busy { outcome, .. } => outcome,
            Rejection::Full { .. } => "full",
            Rejection::Unavailable { .. } => "unavailable",
        }
    }

    fn status_and_body(self) -> (StatusCode, &'static str) {
        match self {
            Rejection::UnknownApp => (StatusCode::NOT_FOUND, "unknown webhook\n"),
            Rejection::MissingCrcToken => (StatusCode::BAD_REQUEST, "missing crc_token\n"),
            Rejection::BadCrcToken => (
                StatusCode::BAD_REQUEST,
                "crc_token must be 1 to 255 characters of [A-Za-z0-9+/=_-]\n",
            ),
            Rejection::Unauthorized => (StatusCode::UNAUTHORIZED, "invalid signature\n"),
            Rejection::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
            Rejection::TooLargeForSpool => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "delivery too large for the spool\n",
            ),
            Rejection::ReadTimeout => (StatusCode::REQUEST_TIMEOUT, "body not received in time\n"),
            Rejection::ReadError => (StatusCode::BAD_REQUEST, "body could not be read\n"),
            Rejection::Busy { .. } | Rejection::Full { .. } | Rejection::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "try again later\n")
            }
        }
    }
}

/// A plain-text answer.
pub(crate) fn plain(status: StatusCode, msg: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, body) = self.status_and_body();
        let mut resp = plain(status, body);
        let h = resp.headers_mut();
        match self {
            Rejection::Busy {
                retry_after_secs, ..
            } => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Rejection::Full { retry_after_secs } | Rejection::Unavailable { retry_after_secs } => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            Rejection::TooLarge => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_headers_and_labels() {
        let busy = Rejection::Busy {
            outcome: "preauth_budget",
            retry_after_secs: 0,
        };
        assert_eq!(busy.outcome(), "preauth_budget");
        let r = busy.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1", "at least a second");
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = Rejection::Full {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        assert!(r.headers().get(header::CONNECTION).is_none());
        let r = Rejection::TooLarge.into_response();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        assert_eq!(
            Rejection::Unauthorized.into_response().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(Rejection::TooLargeForSpool.outcome(), "too_large");
    }
}
