//! Liveness, readiness and Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::AppState;
use super::access::Caller;
use super::error::ApiError;
use crate::apikeys::Scope;
use crate::config::MetricsPolicy;

/// A dependency that takes longer than this to answer counts as not ready.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 200 when the database and object storage both answer, 503 naming the one that does not.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let database = match tokio::time::timeout(READY_CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {READY_CHECK_TIMEOUT:?}"),
    };
    let storage = match tokio::time::timeout(READY_CHECK_TIMEOUT, state.blobs.check()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {READY_CHECK_TIMEOUT:?}"),
    };
    let dataplane = match &state.dataplane {
        None => "not run by this process".to_string(),
        Some(rt) => {
            let dead: Vec<String> =
                (0..rt.workers()).filter(|w| rt.snapshot(*w).is_ok_and(|s| !s.alive)).map(|w| w.to_string()).collect();
            if dead.is_empty() { "ok".to_string() } else { format!("workers {} stopped", dead.join(", ")) }
        }
    };
    let ready = database == "ok" && storage == "ok" && (dataplane == "ok" || state.dataplane.is_none());
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": database,
        "storage": storage,
        "dataplane": dataplane,
    });
    (status, Json(body))
}

/// `/metrics` on the public listener: absent when the operations listener serves it, or behind the `operate`
/// scope when `access.metrics = "key"`.
pub async fn metrics(State(state): State<Arc<AppState>>, Extension(caller): Extension<Caller>) -> Response {
    if state.policy.metrics_elsewhere {
        return ApiError::not_found("metrics are served on the operations listener (http.ops_listen), not here")
            .into_response();
    }
    if state.policy.access.metrics == MetricsPolicy::Key
        && let Err(e) = caller.key_with(Scope::Operate)
    {
        return e.into_response();
    }
    render_metrics(&state).into_response()
}

/// `/metrics` on the operations listener.
pub async fn metrics_ops(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    render_metrics(&state)
}

fn render_metrics(state: &AppState) -> impl IntoResponse + use<> {
    let mut text = state.metrics.render();
    if let Some(rt) = &state.dataplane {
        rt.render_metrics(&mut text);
    }
    if let Some(turn) = &state.turn {
        turn.render_metrics(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
