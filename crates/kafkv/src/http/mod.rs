//! The HTTP front end (axum): the v1 API ([`v1`]), the reference service's
//! routes ([`reference`]), multi-key transactions ([`txn`]) and operations
//! endpoints ([`ops`]). Handlers are thin adapters over [`Store`]; `error.rs`
//! maps the store's errors to status codes, [`conditional`] owns ETags and write preconditions, [`expiry`] the
//! expiry arguments and header, this file owns the error body, auth and the
//! request metrics.

mod conditional;
mod error;
mod expiry;
mod ops;
mod reference;
mod txn;
mod v1;
mod watch;

use std::time::Instant;

use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::{error::InputError, store::Store};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: PrometheusHandle,
    /// When set, every route but `/livez` and `/readyz` needs `Authorization: Bearer <token>`.
    pub auth_token: Option<std::sync::Arc<str>>,
    /// Cancelled when the server begins to shut down: open watches end then,
    /// so the graceful shutdown does not wait on them.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/put", post(reference::put))
        .route(
            "/keys/",
            get(reference::empty_key).delete(reference::empty_key),
        )
        .route(
            "/keys/{*key}",
            get(reference::get).delete(reference::delete),
        )
        .route("/v1/kv", get(v1::scan))
        .route(
            "/v1/kv/",
            get(v1::empty_key).put(v1::empty_key).delete(v1::empty_key),
        )
        .route(
            "/v1/kv/{*key}",
            get(v1::get).put(v1::put).delete(v1::delete).post(v1::post),
        )
        .route("/v1/txn", post(txn::txn))
        .route("/v1/watch", get(watch::watch))
        .route("/livez", get(ops::livez))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        // Bodies are bounded by the store's limits, checked in the handlers
        // so that an oversize value gets the JSON 413 the API promises.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// Refuses requests without the bearer token, when one is configured.
async fn require_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.auth_token else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/livez" || path == "/readyz" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let matches = presented.is_some_and(|p| crate::auth::token_matches(token, p.as_bytes()));
    if matches {
        return next.run(request).await;
    }
    let shape = if path == "/put" || path.starts_with("/keys/") {
        Shape::Message
    } else {
        Shape::Error
    };
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token: send `Authorization: Bearer <token>` (--auth-token)",
    )
    .shaped(shape)
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Counts requests and observes their latency by route.
async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("kafkv_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!("kafkv_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Which error body shape a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error": "..."}`: the v1 API and operations routes.
    Error,
    /// `{"message": "..."}`: the reference service's routes.
    Message,
}

/// An error answer: status and text, in the route's shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub shape: Shape,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            shape: Shape::Error,
        }
    }

    pub fn shaped(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let field = match self.shape {
            Shape::Error => "error",
            Shape::Message => "message",
        };
        let mut response = (self.status, Json(json!({ field: self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The key in a request path after `prefix`, percent-decoded to raw bytes.
pub fn path_key(path: &str, prefix: &str) -> Vec<u8> {
    let encoded = path.strip_prefix(prefix).unwrap_or("");
    percent_encoding::percent_decode_str(encoded).collect()
}

/// How far over the limit a declared body may be and still be read before
/// the 413, so the client gets the answer rather than a reset connection.
const DRAIN_AT_MOST: usize = 8 * 1024 * 1024;

/// Reads a request body of at most `max` bytes, answering 413 beyond it
/// (after reading and dropping a declared body up to [`DRAIN_AT_MOST`] over,
/// never keeping it). `limit` names the flag that sets `max`.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    limit: &'static str,
) -> Result<Bytes, ApiError> {
    let too_large = || InputError::BodyTooLarge { max, limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared.filter(|len| *len > max) {
        // Read (and drop) a body that is not much larger before answering:
        // answering first makes the server close the connection while the
        // client is still sending, and many clients then report a reset
        // instead of this 413. Far larger bodies are not worth reading.
        if len <= max.saturating_add(DRAIN_AT_MOST) {
            let _ = axum::body::to_bytes(body, len).await;
        }
        return Err(too_large().into());
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // to_bytes fails on the limit or on a broken connection.
        let limited = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if limited {
            too_large().into()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            )
        }
    })
}
