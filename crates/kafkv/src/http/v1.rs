//! The v1 API: raw keys and values of any bytes.
//!
//! - `PUT /v1/kv/{key}` stores the raw body; `DELETE` writes a tombstone; both
//!   answer `{"partition","offset"}` once the broker acknowledged the record.
//! - `GET /v1/kv/{key}` answers the raw value, with `x-kafkv-partition` and
//!   `x-kafkv-offset`; `?consistency=strong` first catches up with the topic.
//! - `GET /v1/kv?prefix=&start_after=&cursor=&limit=` pages through keys in
//!   byte order. Keys in the path and query are percent-decoded to raw bytes.
//!   In the JSON, a key or value that is valid UTF-8 is a string under `key` /
//!   `value`; any other is standard base64 under `key_base64` / `value_base64`.
//!   `cursor` in a page is the URL-safe base64 of its last key; pass it back
//!   to get the next page; it is `null` on the last page.

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState, path_key, read_body};
use crate::{error::InputError, store::Consistency};

const PREFIX: &str = "/v1/kv/";
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 10_000;
/// A page stops early once its keys and values reach this many bytes.
const PAGE_BYTES: usize = 4 * 1024 * 1024;

pub async fn empty_key() -> ApiError {
    InputError::EmptyKey.into()
}

pub async fn get(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let key = path_key(uri.path(), PREFIX);
    let query = Query::parse(uri.query())?;
    match state.store.get(&key, query.consistency()?).await? {
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "key not found")),
        Some(found) => {
            let mut response = found.value.into_response();
            let headers = response.headers_mut();
            headers.insert(
                "content-type",
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert("x-kafkv-partition", found.partition.into());
            headers.insert("x-kafkv-offset", found.offset.into());
            Ok(response)
        }
    }
}

pub async fn put(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = path_key(uri.path(), PREFIX);
    // Check the key before reading a possibly large body.
    state.store.validate(&key, None)?;
    let max = state.store.config().max_value_bytes;
    let value = read_body(&headers, body, max, "--max-value-bytes").await?;
    let receipt = state.store.put(&key, value).await?;
    Ok(written(receipt.partition, receipt.offset))
}

pub async fn delete(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let key = path_key(uri.path(), PREFIX);
    let receipt = state.store.delete(&key).await?;
    Ok(written(receipt.partition, receipt.offset))
}

fn written(partition: i32, offset: i64) -> Response {
    Json(json!({ "partition": partition, "offset": offset })).into_response()
}

pub async fn scan(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let query = Query::parse(uri.query())?;
    let limit = match query.text("limit")? {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                ));
            }
        },
    };
    let prefix = query.bytes("prefix").unwrap_or_default();
    let start_after = match query.text("cursor")? {
        Some(cursor) => Some(URL_SAFE_NO_PAD.decode(cursor).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "cursor is not one this API returned",
            )
        })?),
        None => query.bytes("start_after"),
    };
    let mut items = state
        .store
        .scan(
            &prefix,
            start_after.as_deref(),
            limit + 1,
            PAGE_BYTES,
            query.consistency()?,
        )
        .await?;
    let bytes: usize = items.iter().map(|(k, v)| k.len() + v.value.len()).sum();
    // More follow if we got one past the limit, or the byte budget cut the page.
    let more = items.len() > limit || bytes >= PAGE_BYTES;
    items.truncate(limit);
    let cursor = match (more, items.last()) {
        (true, Some((key, _))) => Value::String(URL_SAFE_NO_PAD.encode(key)),
        _ => Value::Null,
    };
    let items: Vec<Value> = items
        .into_iter()
        .map(|(key, found)| {
            let mut item = Map::new();
            encode_into(&mut item, "key", &key);
            encode_into(&mut item, "value", &found.value);
            item.insert("partition".into(), found.partition.into());
            item.insert("offset".into(), found.offset.into());
            Value::Object(item)
        })
        .collect();
    Ok(Json(json!({ "items": items, "cursor": cursor })).into_response())
}

/// `name` as a string when the bytes are UTF-8, else `name_base64`.
pub(super) fn encode_into(item: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => item.insert(name.to_owned(), text.into()),
        Err(_) => item.insert(format!("{name}_base64"), STANDARD.encode(bytes).into()),
    };
}

/// A query string decoded to raw bytes per parameter (`+` is a space, as in forms).
pub(crate) struct Query(Vec<(String, Vec<u8>)>);

impl Query {
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| -> Vec<u8> {
                percent_encoding::percent_decode_str(&s.replace('+', " ")).collect()
            };
            let name = String::from_utf8(decode(name)).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "query parameter names must be UTF-8",
                )
            })?;
            pairs.push((name, decode(value)));
        }
        Ok(Self(pairs))
    }

    pub(crate) fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.bytes(name)
            .map(|v| {
                String::from_utf8(v).map_err(|_| {
                    ApiError::new(StatusCode::BAD_REQUEST, format!("{name} must be UTF-8"))
                })
            })
            .transpose()
    }

    pub(crate) fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.text("consistency")?.as_deref() {
            None | Some("local") => Ok(Consistency::Local),
            Some("strong") => Ok(Consistency::Strong),
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("consistency must be 'local' or 'strong', not '{other}'"),
            )),
        }
    }
}
