//! Errors: [`EmulatorError`] for the library's own failures, [`ApiError`] for the X-style
//! error answers the emulated endpoints give.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What can go wrong starting or driving the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// A fixture or config file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A fixture or emitted event is not valid JSON, or not a JSON object.
    #[error("invalid event JSON in {what}: {detail}")]
    InvalidEvent {
        /// Where it came from.
        what: String,
        /// Why it was rejected.
        detail: String,
    },
    /// An emulated API call made programmatically was refused.
    #[error("{0}")]
    Api(#[from] ApiError),
}

/// An error answer in X's shape:
/// `{"title":"<Reason>","detail":"<text>","errors":[{"code":"<Reason>","message":"<text>"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}: {detail}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// X's reason, e.g. `CrcValidationFailed`.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// Extra headers (e.g. `x-rate-limit-reset` on a 429).
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    /// A new error with the given status, reason and detail.
    pub fn new(status: u16, reason: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.to_owned(),
            detail: detail.into(),
            headers: Vec::new(),
        }
    }
    /// 400 with a reason.
    pub fn bad(reason: &str, detail: impl Into<String>) -> Self {
        Self::new(400, reason, detail)
    }
    /// 401 Unauthorized.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "Unauthorized", detail)
    }
    /// 404 with a reason.
    pub fn not_found(reason: &str, detail: impl Into<String>) -> Self {
        Self::new(404, reason, detail)
    }
    /// 400 `InvalidRequest` (malformed body and the like).
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequest", detail)
    }
    /// 400 `QueryParamInvalid`.
    pub fn query(detail: impl Into<String>) -> Self {
        Self::new(400, "QueryParamInvalid", detail)
    }
    /// Adds a header to the answer.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    /// The JSON body X would send.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "title": self.reason,
            "detail": self.detail,
            "errors": [{"code": self.reason, "message": self.detail}],
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (status, axum::Json(self.body())).into_response();
        for (k, v) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
    }
}
