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
    let status = state.store.status();
    let body = json!({
        "status": if status.ready { "ready" } else { "bootstrapping" },
        "topic": status.topic,
        "applied_offsets": status.positions(),
        "bootstrap_end_offsets": status.bootstrap_targets(),
        "records_applied": status.records_applied,
    });
    let code = if status.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// The store's gauges as of this scrape, then everything recorded.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let status = state.store.status();
    metrics::gauge!("kafkv_keys").set(status.keys as f64);
    for (p, partition) in status.partitions.iter().enumerate() {
        let label = p.to_string();
        metrics::gauge!("kafkv_applied_offset", "partition" => label.clone())
            .set(partition.position as f64);
        metrics::gauge!("kafkv_partition_lag", "partition" => label).set(partition.lag as f64);
    }
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
