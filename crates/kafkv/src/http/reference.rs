//! The reference Kotlin service's routes, drop-in compatible in shape:
//! `POST /put {"key","value"}`, `GET /keys/{key}`, `DELETE /keys/{key}`, with
//! `{"message": "..."}` errors. One deliberate difference: a missing key answers
//! 404 (the reference answers 400). `GET /keys/{key}` also carries the key's
//! version as `ETag` and its expiry as `x-kafkv-expires-at`, as
//! `GET /v1/kv/{key}` does.

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, AppState, Shape,
    conditional::{Etag, with_etag},
    expiry::with_expires_at,
    path_key, read_body,
};
use crate::{error::InputError, store::Consistency};

const PREFIX: &str = "/keys/";

#[derive(Deserialize)]
struct PutBody {
    key: Option<Value>,
    value: Option<Value>,
}

fn message(status: StatusCode, text: impl Into<String>) -> ApiError {
    ApiError::new(status, text).shaped(Shape::Message)
}

pub async fn empty_key() -> ApiError {
    ApiError::from(InputError::EmptyKey).shaped(Shape::Message)
}

pub async fn put(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let json_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime == "application/json" || mime.ends_with("+json")
        });
    if !json_content {
        return Err(message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let config = state.store.config();
    // JSON escaping can at most sextuple a string (\u00XX), so this bounds a valid request.
    let max = 6 * (config.max_key_bytes + config.max_value_bytes) + 1024;
    let body = read_body(
        &headers,
        body,
        max,
        "six times --max-key-bytes plus --max-value-bytes, JSON-escaped",
    )
    .await
    .map_err(|e| e.shaped(Shape::Message))?;
    let parsed: PutBody = serde_json::from_slice(&body)
        .map_err(|e| message(StatusCode::BAD_REQUEST, format!("Malformed JSON: {e}")))?;
    let key = match parsed.key {
        Some(Value::String(key)) => key,
        None | Some(Value::Null) => {
            return Err(message(StatusCode::BAD_REQUEST, "Key can't be null"));
        }
        Some(_) => return Err(message(StatusCode::BAD_REQUEST, "Key must be a string")),
    };
    let value = match parsed.value {
        Some(Value::String(value)) => value,
        None | Some(Value::Null) => {
            return Err(message(StatusCode::BAD_REQUEST, "Value can't be null"));
        }
        Some(_) => return Err(message(StatusCode::BAD_REQUEST, "Value must be a string")),
    };
    state
        .store
        .put(key.as_bytes(), Bytes::from(value.clone()))
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Message))?;
    Ok(Json(json!({ "key": key, "value": value })))
}

pub async fn get(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let key = path_key(uri.path(), PREFIX);
    let shown = String::from_utf8_lossy(&key).into_owned();
    let found = state
        .store
        .get(&key, Consistency::Local)
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Message))?
        .ok_or_else(|| message(StatusCode::NOT_FOUND, format!("Key = {shown} not found")))?;
    if !found.is_string() {
        return Err(super::v1::not_a_string(found.ty).shaped(Shape::Message));
    }
    let value = String::from_utf8(found.value.to_vec()).map_err(|_| {
        message(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "The value of key = {shown} is not UTF-8 text; read it with GET /v1/kv/{{key}}"
            ),
        )
    })?;
    let etag = Etag::new(found.partition, found.offset);
    let response = Json(json!({ "key": shown, "value": value })).into_response();
    Ok(with_expires_at(
        with_etag(response, Some(etag)),
        found.expires_at,
    ))
}

pub async fn delete(State(state): State<AppState>, uri: Uri) -> Result<Json<Value>, ApiError> {
    let key = path_key(uri.path(), PREFIX);
    let shown = String::from_utf8_lossy(&key).into_owned();
    // As the reference service: a key this instance does not have is not
    // found, and nothing is written. (`DELETE /v1/kv/{key}` stays idempotent.)
    let present = state
        .store
        .get(&key, Consistency::Local)
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Message))?
        .is_some();
    if !present {
        return Err(message(
            StatusCode::NOT_FOUND,
            format!("Key = {shown} not found"),
        ));
    }
    state
        .store
        .delete(&key)
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Message))?;
    Ok(Json(
        json!({ "message": format!("Deletion of key = {shown} was successful") }),
    ))
}
