//! Admin endpoints (`/admin/…`, no auth): what was sent, emit, faults, stream
//! connections, the generator, the state.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::api::{rfc3339, sub_json, webhook_json};
use crate::config::GeneratorConfig;
use crate::error::{ApiError, EmulatorError};
use crate::state::{EmitOptions, Emitted, Shared};
use crate::stream::StreamFault;

pub(crate) fn router(st: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/sent", get(sent))
        .route("/admin/emit", post(emit))
        .route("/admin/faults", post(faults))
        .route("/admin/stream/connections", get(connections))
        .route("/admin/generator", post(generator).get(generator_status))
        .route("/admin/state", get(state))
        .route("/admin/recrc", post(recrc))
        .with_state(st)
}

type S = State<Arc<Shared>>;

fn query(q: &Option<String>) -> HashMap<String, String> {
    q.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

async fn sent(State(st): S, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = query(&q);
    let num = |k: &str| -> Result<Option<u64>, ApiError> {
        q.get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::query(format!("{k} must be a number")))
            })
            .transpose()
    };
    let since = num("since")?.unwrap_or(0);
    let limit = num("limit")?.map(|l| l as usize).unwrap_or(usize::MAX);
    let body = matches!(q.get("body").map(String::as_str), Some("true" | "1"));
    let events = st.sent(since, limit, body);
    let (mut attempts, mut delivered, mut failed) = (0usize, 0usize, 0usize);
    for e in &events {
        for a in &e.deliveries {
            attempts += 1;
            match a.outcome {
                crate::state::AttemptOutcome::Delivered => delivered += 1,
                crate::state::AttemptOutcome::Failed => failed += 1,
                crate::state::AttemptOutcome::Skipped => {}
            }
        }
    }
    Ok(Json(json!({
        "events": events,
        "meta": {"count": events.len(), "attempts": attempts, "delivered": delivered, "failed": failed},
    }))
    .into_response())
}

/// Emits a fixture file as it is, or every `*.json` under a directory (sorted, recursive).
pub(crate) fn emit_fixture_path(
    st: &Arc<Shared>,
    path: &std::path::Path,
) -> Result<Vec<Emitted>, EmulatorError> {
    let mut files = Vec::new();
    collect_json(path, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let raw = std::fs::read(&f).map_err(|source| EmulatorError::Read {
            path: f.display().to_string(),
            source,
        })?;
        let v: Value = serde_json::from_slice(&raw).map_err(|e| EmulatorError::InvalidEvent {
            what: f.display().to_string(),
            detail: e.to_string(),
        })?;
        if !v.is_object() {
            return Err(EmulatorError::InvalidEvent {
                what: f.display().to_string(),
                detail: "not a JSON object".into(),
            });
        }
        out.push(st.emit_raw(
            Bytes::from(raw),
            v,
            EmitOptions {
                origin: Some("fixture".into()),
                ..EmitOptions::default()
            },
        ));
    }
    Ok(out)
}

fn collect_json(
    path: &std::path::Path,
    out: &mut Vec<std::path::PathBuf>,
) -> Result<(), EmulatorError> {
    let read_err = |source| EmulatorError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let p = entry.map_err(read_err)?.path();
        if p.is_dir() {
            collect_json(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json")
            && p.file_name().is_some_and(|n| n != "expected-types.json")
        {
            out.push(p);
        }
    }
    Ok(())
}

/// `POST /admin/emit`. Bodies:
/// * a JSON event object (any format) or an array of them;
/// * `{"events":[…], "at"?: RFC 3339}`;
/// * `{"generate": <count>, "generator"?: {…GeneratorConfig}}`;
/// * `{"fixture": "<path to a file or directory>"}`.
async fn emit(State(st): S, body: Bytes) -> Result<Response, ApiError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("the body is not valid JSON: {e}")))?;
    let at = match v.get("at").and_then(Value::as_str) {
        Some(t) => Some(
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| ApiError::invalid_request("`at` must be an RFC 3339 time"))?,
        ),
        None => None,
    };
    let opts = || EmitOptions {
        at,
        origin: Some("admin".into()),
        ..EmitOptions::default()
    };
    let emitted: Vec<Emitted> = if let Some(n) = v.get("generate") {
        let n = n
            .as_u64()
            .filter(|n| *n <= 100_000)
            .ok_or_else(|| ApiError::invalid_request("`generate` must be a count up to 100000"))?;
        let cfg: GeneratorConfig = match v.get("generator") {
            Some(g) => serde_json::from_value(g.clone()).map_err(|e| {
                ApiError::invalid_request(format!("invalid generator settings: {e}"))
            })?,
            None => st.cfg.generator.clone().unwrap_or_default(),
        };
        crate::generator::generate_now(&st, &cfg, n)
    } else if let Some(p) = v.get("fixture").and_then(Value::as_str) {
        emit_fixture_path(&st, std::path::Path::new(p))
            .map_err(|e| ApiError::invalid_request(e.to_string()))?
    } else {
        let list: Vec<Value> = match (&v, v.get("events")) {
            (_, Some(Value::Array(a))) => a.clone(),
            (Value::Array(a), _) => a.clone(),
            (Value::Object(_), None) => vec![v.clone()],
            _ => {
                return Err(ApiError::invalid_request(
                    "expected an event object, an array, or {\"events\":[…]}",
                ))
            }
        };
        if list.iter().any(|e| !e.is_object()) {
            return Err(ApiError::invalid_request(
                "every event must be a JSON object",
            ));
        }
        list.into_iter().map(|e| st.emit_value(e, opts())).collect()
    };
    Ok(Json(json!({"emitted": emitted, "meta": {"count": emitted.len()}})).into_response())
}

/// `POST /admin/faults`: a [`StreamFault`] (`{"action":"drop"}` …), an array of them, or
/// `{"replay_incomplete": bool}`.
async fn faults(State(st): S, body: Bytes) -> Result<Response, ApiError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("the body is not valid JSON: {e}")))?;
    let mut applied = Vec::new();
    if let Some(b) = v.get("replay_incomplete") {
        let b = b
            .as_bool()
            .ok_or_else(|| ApiError::invalid_request("`replay_incomplete` must be a boolean"))?;
        st.with_db(|db| db.replay_incomplete = b);
        applied.push(json!({"replay_incomplete": b}));
        if v.get("action").is_none() {
            return Ok(Json(json!({"applied": applied})).into_response());
        }
    }
    let list = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    for f in list {
        let fault: StreamFault = serde_json::from_value(f.clone())
            .map_err(|e| ApiError::invalid_request(format!("unknown fault: {e}")))?;
        let n = crate::stream::apply_fault(&st, fault);
        applied.push(json!({"fault": f, "affected": n}));
    }
    Ok(Json(json!({"applied": applied})).into_response())
}

async fn connections(State(st): S) -> Response {
    st.with_streams(|s| {
        let live: Vec<u64> = s.live.iter().map(|c| c.id).collect();
        Json(json!({"connections": s.records, "live": live, "faults": s.faults})).into_response()
    })
}

/// `POST /admin/generator`: `{"action":"start", …GeneratorConfig}` or `{"action":"stop"}`.
async fn generator(State(st): S, body: Bytes) -> Result<Response, ApiError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("the body is not valid JSON: {e}")))?;
    match v.get("action").and_then(Value::as_str) {
        Some("stop") => {
            crate::generator::stop(&st);
            Ok(Json(json!({"running": false})).into_response())
        }
        Some("start") => {
            let mut cfg = v.clone();
            if let Some(o) = cfg.as_object_mut() {
                o.remove("action");
            }
            let cfg: GeneratorConfig = serde_json::from_value(cfg).map_err(|e| {
                ApiError::invalid_request(format!("invalid generator settings: {e}"))
            })?;
            if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
                return Err(ApiError::invalid_request(
                    "`rate` must be a positive number",
                ));
            }
            crate::generator::start(&st, cfg.clone());
            Ok(Json(json!({"running": true, "settings": cfg})).into_response())
        }
        _ => Err(ApiError::invalid_request(
            "`action` must be \"start\" or \"stop\"",
        )),
    }
}

async fn generator_status(State(st): S) -> Response {
    Json(crate::generator::status(&st)).into_response()
}

/// The state: apps (no secrets), webhooks, subscriptions, jobs.
pub(crate) fn state_json(st: &Shared) -> Value {
    st.with_db(|db| {
        let apps: Vec<Value> = st
            .cfg
            .apps
            .iter()
            .map(|a| json!({"name": a.name, "app_id": a.app_id, "consumer_key": a.consumer_key}))
            .collect();
        let webhooks: Vec<Value> = db
            .webhooks
            .iter()
            .map(|w| {
                let mut j = webhook_json(w);
                j["app"] = json!(w.app);
                j["subscriptions"] = json!(w.subscriptions);
                j["crc_checks"] = json!(w.crc_checks);
                j
            })
            .collect();
        let activity: Vec<Value> = db
            .activity
            .iter()
            .map(|s| {
                let mut j = sub_json(s);
                j["app"] = json!(s.app);
                j
            })
            .collect();
        let jobs: Vec<Value> = db
            .jobs
            .iter()
            .map(|j| {
                json!({
                    "job_id": j.job_id, "app": j.app, "webhook_id": j.webhook_id,
                    "from": rfc3339(j.from), "to": rfc3339(j.to), "created_at": rfc3339(j.created_at),
                    "state": j.state, "events": j.events, "finished_at": j.finished_at.map(rfc3339),
                })
            })
            .collect();
        json!({
            "apps": apps,
            "users": st.cfg.users.iter().map(|u| json!({"user_id": u.user_id, "screen_name": u.screen_name})).collect::<Vec<_>>(),
            "webhooks": webhooks,
            "activity_subscriptions": activity,
            "replay_jobs": jobs,
            "replay_incomplete": db.replay_incomplete,
            "time_scale": st.cfg.time_scale,
            "limits": {"max_webhooks": st.cfg.max_webhooks, "max_subscriptions": st.cfg.max_subscriptions},
        })
    })
}

async fn state(State(st): S) -> Response {
    Json(state_json(&st)).into_response()
}

/// `POST /admin/recrc`: re-CRC every webhook now.
async fn recrc(State(st): S) -> Response {
    st.recrc_all("admin").await;
    let list: Vec<Value> = st.with_db(|db| db.webhooks.iter().map(webhook_json).collect());
    Json(json!({"webhooks": list})).into_response()
}
