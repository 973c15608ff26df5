//! Liveness, readiness (with bootstrap progress) and Prometheus metrics.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::AppState;

pub async fn livez() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 once bootstrapped; 503 with progress before.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let progress = state.store.progress();
    let ready = progress.bootstrap.is_done();
    let body = json!({
        "status": if ready { "ready" } else { "bootstrapping" },
        "topic": state.store.config().topic,
        "applied_offsets": progress.positions,
        "bootstrap_end_offsets": progress.bootstrap.targets,
        "records_applied": progress.records_applied,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!("kafkv_keys").set(state.store.len() as f64);
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
