//! JSON output shared by the `x` commands and `x migrate` (a module of its own, so that
//! `migrate` does not reach back into `cli`).

use std::io::Write;

use serde::Serialize;

use crate::error::XapiError;

/// `value` as pretty JSON and a newline.
pub(crate) fn write_json<T: Serialize + ?Sized>(
    out: &mut (dyn Write + Send),
    value: &T,
) -> Result<(), XapiError> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(|e| XapiError::Output(std::io::Error::other(e)))?;
    writeln!(out)?;
    Ok(())
}
