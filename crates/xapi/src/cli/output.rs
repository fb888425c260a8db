//! What the `x` commands print: JSON (`--json`) or aligned tables.

use std::io::Write;

use crate::client::{ActivitySubscription, Webhook};
use crate::error::XapiError;

pub(super) fn webhook_table(
    out: &mut (dyn Write + Send),
    list: &[Webhook],
) -> Result<(), XapiError> {
    let rows = list
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                if w.valid { "yes" } else { "no" }.to_string(),
                w.created_at.clone().unwrap_or_else(|| "-".into()),
                w.url.clone(),
            ]
        })
        .collect();
    table(out, &["ID", "VALID", "CREATED_AT", "URL"], rows)
}

pub(super) fn activity_table(
    out: &mut (dyn Write + Send),
    list: &[ActivitySubscription],
) -> Result<(), XapiError> {
    let rows = list
        .iter()
        .map(|s| {
            let event = match &s.event_type {
                Some(t) => t.clone(),
                None => s.event_types.join(","),
            };
            let target = match (&s.filter, &s.user_id) {
                (Some(f), _) if s.event_type.is_some() => f.to_string(),
                (_, Some(u)) => format!("user_id={u}"),
                (Some(f), None) => f.to_string(),
                (None, None) => "-".into(),
            };
            let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            vec![
                s.id.clone(),
                event,
                target,
                dash(&s.tag),
                dash(&s.webhook_id),
                dash(&s.created_at),
            ]
        })
        .collect();
    table(
        out,
        &["ID", "EVENT", "FILTER", "TAG", "WEBHOOK_ID", "CREATED_AT"],
        rows,
    )
}

/// Writes an aligned table: columns padded to their widest cell, two spaces apart, no
/// trailing spaces.
pub(super) fn table(
    out: &mut (dyn Write + Send),
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<(), XapiError> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            s.push_str(cell);
            if i < last {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count())
                    + 2;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
