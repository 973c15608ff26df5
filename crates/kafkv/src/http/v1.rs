//! The v1 API: raw keys and values of any bytes.
//!
//! - `PUT /v1/kv/{key}` stores the raw body; `DELETE` writes a tombstone; both
//!   answer `{"partition","offset"}` once the broker acknowledged the record.
//!   With `If-Match` / `If-None-Match: *` they are conditional: an operation
//!   record whose condition the log decides, 412 when it did not hold
//!   ([`conditional`](super::conditional)). `PUT` takes `?ttl=<ms>`,
//!   `?expire_at=<unix ms>` or `?keep_ttl=1` ([`expiry`](super::expiry)).
//! - `GET /v1/kv/{key}` answers the raw value, with `x-kafkv-partition`,
//!   `x-kafkv-offset`, the version as `ETag` and, when the key has one, its
//!   expiry as `x-kafkv-expires-at`; `?consistency=strong` first catches up
//!   with the topic.
//! - `POST /v1/kv/{key}/incr?by=N` (or `?by_float=X`) adds to a number
//!   stored as decimal text, as Redis's `INCRBY` (`INCRBYFLOAT`); 409 when
//!   the value is not a number or the sum would not fit.
//! - `POST /v1/kv/{key}/expire` sets or removes the key's expiry
//!   ([`expiry::expire`](super::expiry::expire)).
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
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Map, Value, json};

use super::{
    ApiError, AppState,
    conditional::{self, Etag, Precondition, with_etag},
    expiry::{self, ExpiryArgs, with_expires_at},
    path_key, read_body,
};
use bytes::Bytes;

use crate::{
    collection::Type,
    error::InputError,
    op::{Condition, KeyState, Op, parse_f64},
    store::{Applied, Consistency, WriteError},
};

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
        Some(found) if !found.is_string() => Err(not_a_string(found.ty)),
        Some(found) => {
            let mut response = found.value.into_response();
            let headers = response.headers_mut();
            headers.insert(
                "content-type",
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert("x-kafkv-partition", found.partition.into());
            headers.insert("x-kafkv-offset", found.offset.into());
            headers.insert(
                header::ETAG,
                Etag::new(found.partition, found.offset).header(),
            );
            Ok(with_expires_at(response, found.expires_at))
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
    // Check the key and the headers before reading a possibly large body.
    state.store.validate(&key, None)?;
    let precondition = conditional::precondition(&headers)?;
    let expiry = ExpiryArgs::from_query(&Query::parse(uri.query())?)?
        .put_expiry()
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    let max = state.store.config().max_value_bytes;
    let value = read_body(&headers, body, max, "--max-value-bytes").await?;
    let store = &state.store;
    match (precondition, expiry) {
        (None, None) => {
            let receipt = store.put(&key, value).await?;
            let etag = Etag::new(receipt.partition, receipt.offset);
            Ok(with_etag(
                written(receipt.partition, receipt.offset),
                Some(etag),
            ))
        }
        // A put with an expiry: its reply waits for the record's timestamp,
        // which resolves a relative one.
        (None, Some(expiry)) => {
            let Applied { receipt, outcome } = store
                .put_when(&key, value, Condition::Always, Some(expiry))
                .await?;
            let (partition, offset) = (receipt.partition, receipt.offset);
            Ok(written_leaving(partition, offset, outcome.after.as_ref()))
        }
        (Some(precondition), expiry) => {
            conditional_write(&state, &key, precondition, |when| {
                store.put_when(&key, value, when, expiry)
            })
            .await
        }
    }
}

pub async fn delete(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = path_key(uri.path(), PREFIX);
    let Some(precondition) = conditional::precondition(&headers)? else {
        let receipt = state.store.delete(&key).await?;
        return Ok(written(receipt.partition, receipt.offset));
    };
    let store = &state.store;
    conditional_write(&state, &key, precondition, |when| {
        store.apply_op(&key, Op::Delete { when })
    })
    .await
}

/// A put or delete (`write`, given the condition) that happens only if
/// `precondition` holds where its record lands in the log: 200 with the
/// new version's `ETag` (none once deleted), or 412 with the version it
/// found.
async fn conditional_write<W>(
    state: &AppState,
    key: &[u8],
    precondition: Precondition,
    write: impl FnOnce(Condition) -> W,
) -> Result<Response, ApiError>
where
    W: Future<Output = Result<Applied, WriteError>>,
{
    let when = match conditional::condition(&state.store, key, precondition)? {
        Ok(when) => when,
        Err(refused) => return Ok(refused),
    };
    let Applied { receipt, outcome } = write(when).await?;
    let partition = receipt.partition;
    if !outcome.applied {
        let current = conditional::etag_of(partition, outcome.before.as_ref());
        return Ok(conditional::failed(precondition, current));
    }
    Ok(written_leaving(
        partition,
        receipt.offset,
        outcome.after.as_ref(),
    ))
}

fn written(partition: i32, offset: i64) -> Response {
    Json(json!({ "partition": partition, "offset": offset })).into_response()
}

/// A write's answer once it is known what it left: the new version's
/// `ETag` and expiry, if the key is present.
fn written_leaving(partition: i32, offset: i64, after: Option<&KeyState>) -> Response {
    let etag = conditional::etag_of(partition, after);
    let response = with_etag(written(partition, offset), etag);
    with_expires_at(response, after.and_then(|after| after.expires_at))
}

/// `POST /v1/kv/{key}/incr` and `POST /v1/kv/{key}/expire`: the key is
/// the path before the last `/incr` or `/expire` (its own slashes may stay
/// unencoded).
pub async fn post(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = Query::parse(uri.query())?;
    if let Some(path) = uri.path().strip_suffix("/expire") {
        return expiry::expire(&state, &path_key(path, PREFIX), &query, &headers).await;
    }
    let Some(path) = uri.path().strip_suffix("/incr") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the POSTs on a key are POST /v1/kv/{key}/incr and POST /v1/kv/{key}/expire",
        ));
    };
    let key = path_key(path, PREFIX);
    if conditional::precondition(&headers)?.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an increment takes no If-Match or If-None-Match: it applies to whatever \
             value the key holds where its record lands in the log",
        ));
    }
    let op = match (query.text("by")?, query.text("by_float")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "send by or by_float, not both",
            ));
        }
        (None, None) => Op::IncrBy(1),
        (Some(by), None) => Op::IncrBy(by.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("by must be a signed 64-bit integer, not '{by}'"),
            )
        })?),
        (None, Some(by)) => match parse_f64(by.as_bytes()).filter(|by| by.is_finite()) {
            Some(by) => Op::IncrByFloat(by),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("by_float must be a finite number, not '{by}'"),
                ));
            }
        },
    };
    let Applied { receipt, outcome } = state.store.apply_op(&key, op).await?;
    let partition = receipt.partition;
    if let Some(error) = outcome.error {
        // Redis's meaning and words; the key keeps its value and version.
        let current = conditional::etag_of(partition, outcome.before.as_ref());
        let refused = ApiError::new(
            StatusCode::CONFLICT,
            format!("{error}; the key is unchanged"),
        );
        return Ok(with_etag(refused.into_response(), current));
    }
    let after = outcome
        .after
        .expect("an increment that succeeded stores a value");
    let text = std::str::from_utf8(&after.value).expect("a number's decimal text");
    let value = match text.parse::<i64>() {
        Ok(integer) => Value::from(integer),
        Err(_) => Value::from(text.parse::<f64>().expect("a float's decimal text")),
    };
    let etag = Etag::new(partition, after.version);
    let response = with_etag(Json(json!({ "value": value })).into_response(), Some(etag));
    // An increment keeps the key's expiry, as Redis's does.
    Ok(with_expires_at(response, after.expires_at))
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
            encode_value_into(&mut item, found.ty, Some(&found.value));
            item.insert("partition".into(), found.partition.into());
            item.insert("offset".into(), found.offset.into());
            if let Some(at) = found.expires_at {
                item.insert("expires_at".into(), at.into());
            }
            Value::Object(item)
        })
        .collect();
    Ok(Json(json!({ "items": items, "cursor": cursor })).into_response())
}

/// A string value as `value` (or `value_base64`); a collection as its
/// `type` alone: its stored form is kafkv's encoding, which the HTTP API
/// does not expose (read it over RESP: `LRANGE`, `SMEMBERS`, `HGETALL`,
/// `ZRANGE`).
pub(super) fn encode_value_into(item: &mut Map<String, Value>, ty: Type, value: Option<&Bytes>) {
    match (ty, value) {
        (Type::String, Some(value)) => encode_into(item, "value", value),
        (Type::String, None) => {}
        (ty, _) => {
            item.insert("type".into(), ty.name().into());
        }
    }
}

/// A `409 Conflict` for a key holding a collection, which the HTTP API's
/// string reads cannot return.
pub(super) fn not_a_string(ty: Type) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "the key holds a {} (WRONGTYPE): the HTTP API reads strings; read it over the Redis \
             protocol",
            ty.name()
        ),
    )
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
