//! Event generator (filled in below).

use std::sync::Arc;

use crate::config::GeneratorConfig;
use crate::state::{Emitted, Shared};

/// A running background generator.
pub struct GeneratorRun {
    pub(crate) cancel: tokio_util::sync::CancellationToken,
    pub(crate) cfg: GeneratorConfig,
}

pub(crate) fn start(st: &Arc<Shared>, cfg: GeneratorConfig) {
    stop(st);
    let cancel = st.cancel.child_token();
    *st.generator.lock() = Some(GeneratorRun { cancel, cfg });
}

pub(crate) fn stop(st: &Shared) {
    if let Some(g) = st.generator.lock().take() {
        g.cancel.cancel();
    }
}

pub(crate) fn generate_now(st: &Arc<Shared>, cfg: &GeneratorConfig, count: u64) -> Vec<Emitted> {
    let _ = (st, cfg, count);
    Vec::new()
}

pub(crate) fn status(st: &Shared) -> serde_json::Value {
    match &*st.generator.lock() {
        Some(g) => serde_json::json!({"running": !g.cancel.is_cancelled(), "settings": g.cfg}),
        None => serde_json::json!({"running": false}),
    }
}
