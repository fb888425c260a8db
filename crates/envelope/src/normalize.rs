//! Normalization of the three input formats. (Placeholder: implemented under issue 2.)
use crate::{Context, Envelope};

/// Why a delivery gave no envelopes.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    /// Not JSON (or not UTF-8, or truncated): the caller dead-letters the raw bytes.
    #[error("body is not JSON: {reason}")]
    NotJson { reason: String },
    /// An X Activity API `{"errors":[...]}` object: counted and logged by the caller.
    #[error("X reported {count} error(s): {summary}")]
    XaaErrors { count: usize, summary: String },
}

/// One delivery to envelopes, one per event, in delivery order.
pub fn normalize(body: &[u8], ctx: &Context) -> Result<Vec<Envelope>, NormalizeError> {
    let _ = (body, ctx);
    Err(NormalizeError::NotJson {
        reason: "normalize is not implemented yet".into(),
    })
}
