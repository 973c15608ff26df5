//! `POST /v1/txn`: a multi-key conditional batch, in the spirit of etcd's
//! Txn — compares, then writes and reads that happen only if every compare
//! holds, all decided at one place in the log.
//!
//! The request becomes one batch operation record ([`crate::op::Batch`],
//! [`Store::apply_batch`](crate::store::Store::apply_batch)); every instance
//! evaluates it at the record's offset, so two transactions comparing the
//! same version cannot both succeed, and the reads see exactly the state the
//! writes replaced. Its keys must share a partition: any keys on a topic of
//! one partition (the default), otherwise a single key.
//!
//! ```json
//! {"compare": [{"key": "a", "version": "0:42"}, {"key": "b", "exists": false}],
//!  "ops": [{"op": "put", "key": "a", "value": "1", "ttl": 60000},
//!          {"op": "delete", "key": "c"},
//!          {"op": "expire", "key": "e", "expire_at": 1767225600000, "when": "xx"},
//!          {"op": "get", "key": "d"}]}
//! ```
//!
//! A put takes `ttl`, `expire_at` or `keep_ttl` as `PUT /v1/kv/{key}` does;
//! an `expire` takes `ttl`, `expire_at` or `persist`, and `when`, as
//! `POST /v1/kv/{key}/expire` does ([`expiry`](super::expiry)).
//!
//! 200 `{"succeeded": true, "partition", "offset", "results": [...]}` with
//! one result per op, in order (with `expires_at` where the key has an
//! expiry); 412 `{"succeeded": false, "error",
//! "compare": [...]}` naming each compare's key, whether it held and the
//! version it saw. Keys and values are UTF-8 strings under `key` / `value`,
//! or standard base64 under `key_base64` / `value_base64`, as in scans.

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    ApiError, AppState,
    conditional::{self, Etag, Precondition},
    expiry::{self, ExpiryArgs},
    read_body,
    v1::encode_into,
};
use crate::{
    op::{Batch, Condition, KeyState, Op, Outcome},
    store::Applied,
};

/// At most this many compares and at most this many ops, as etcd's default
/// `--max-txn-ops`: a transaction is one record that every instance
/// evaluates while it holds its view's lock.
pub const MAX_TXN_OPS: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnRequest {
    #[serde(default)]
    compare: Vec<CompareRequest>,
    #[serde(default)]
    ops: Vec<OpRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareRequest {
    key: Option<String>,
    key_base64: Option<String>,
    /// The key's version is this ETag (`0:42`, quotes optional).
    version: Option<String>,
    /// The key exists (`true`) or does not (`false`).
    exists: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpRequest {
    op: String,
    key: Option<String>,
    key_base64: Option<String>,
    value: Option<String>,
    value_base64: Option<String>,
    /// Milliseconds from the record's timestamp (a put or an expire).
    ttl: Option<Value>,
    /// Milliseconds since the Unix epoch (a put or an expire).
    expire_at: Option<Value>,
    /// A put keeps the key's expiry.
    #[serde(default)]
    keep_ttl: bool,
    /// An expire removes the key's expiry.
    #[serde(default)]
    persist: bool,
    /// An expire's condition: `nx`, `xx`, `gt`, `lt`, `xx,gt`, `xx,lt`.
    when: Option<String>,
}

impl OpRequest {
    /// Its expiry arguments, the numbers checked to be milliseconds.
    fn expiry_args(&mut self, what: &str) -> Result<ExpiryArgs, ApiError> {
        let integer = |name: &str, value: Option<Value>| {
            value
                .map(|value| expiry::integer_json(name, &value))
                .transpose()
                .map_err(|message| bad(format!("{what}: {message}")))
        };
        Ok(ExpiryArgs {
            ttl: integer("ttl", self.ttl.take())?,
            expire_at: integer("expire_at", self.expire_at.take())?,
            keep_ttl: self.keep_ttl,
            persist: self.persist,
            when: self.when.take(),
        })
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// The bytes of a field sent as text (`name`) or as base64 (`name_base64`).
fn field_bytes(
    what: &str,
    name: &str,
    text: Option<String>,
    base64: Option<String>,
) -> Result<Option<Bytes>, ApiError> {
    match (text, base64) {
        (Some(_), Some(_)) => Err(bad(format!(
            "{what}: send {name} or {name}_base64, not both"
        ))),
        (Some(text), None) => Ok(Some(Bytes::from(text))),
        (None, Some(encoded)) => STANDARD
            .decode(encoded.as_bytes())
            .map(|bytes| Some(Bytes::from(bytes)))
            .map_err(|e| bad(format!("{what}: {name}_base64 is not standard base64: {e}"))),
        (None, None) => Ok(None),
    }
}

fn required_key(
    what: &str,
    text: Option<String>,
    base64: Option<String>,
) -> Result<Bytes, ApiError> {
    field_bytes(what, "key", text, base64)?
        .ok_or_else(|| bad(format!("{what}: key (or key_base64) is missing")))
}

/// A compare's version: the ETag kafkv returned, with or without its quotes.
fn parse_version(what: &str, text: &str) -> Result<Etag, ApiError> {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    Etag::parse_opaque(inner).ok_or_else(|| {
        bad(format!(
            "{what}: version {text:?} is not an ETag kafkv returned; kafkv's versions are \
             \"<partition>:<offset>\", as in \"0:42\""
        ))
    })
}

/// What an op asked for, to name its result.
#[derive(Clone, Copy)]
enum StepKind {
    Put,
    Delete,
    Get,
    Expire,
}

/// What each compare asked, for the 412's description.
enum Asked {
    Version(Etag),
    Exists(bool),
}

pub async fn txn(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if conditional::precondition(&headers)?.is_some() {
        return Err(bad(
            "a transaction takes its conditions in its compare list, not in If-Match or \
             If-None-Match",
        ));
    }
    let config = state.store.config();
    // The batch is one record of at most --max-value-bytes (checked when it
    // is encoded); JSON escaping can at most sextuple it.
    let max = 6 * config.max_value_bytes + 64 * 1024;
    let body = read_body(
        &headers,
        body,
        max,
        "six times --max-value-bytes, JSON-escaped: a transaction is one record",
    )
    .await?;
    let request: TxnRequest = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "malformed transaction: {e}; expected {{\"compare\": [{{\"key\", \"version\" | \
             \"exists\"}}], \"ops\": [{{\"op\": \"put\" | \"delete\" | \"get\" | \
             \"expire\", \"key\", \"value\"}}]}}"
        ))
    })?;
    if request.compare.len() > MAX_TXN_OPS || request.ops.len() > MAX_TXN_OPS {
        return Err(bad(format!(
            "a transaction takes at most {MAX_TXN_OPS} compares and {MAX_TXN_OPS} ops; this one \
             has {} and {}",
            request.compare.len(),
            request.ops.len()
        )));
    }

    let mut conditions = Vec::with_capacity(request.compare.len());
    let mut asked = Vec::with_capacity(request.compare.len());
    for (i, compare) in request.compare.into_iter().enumerate() {
        let what = format!("compare[{i}]");
        let key = required_key(&what, compare.key, compare.key_base64)?;
        let (condition, question) = match (compare.version, compare.exists) {
            (Some(version), None) => {
                let etag = parse_version(&what, &version)?;
                // A tag naming another partition than the key's can never
                // match; answer so without writing.
                let precondition = Precondition::Version(etag);
                match conditional::condition(&state.store, &key, precondition)? {
                    Ok(condition) => (condition, Asked::Version(etag)),
                    Err(refused) => return Ok(refused),
                }
            }
            (None, Some(true)) => (Condition::Present, Asked::Exists(true)),
            (None, Some(false)) => (Condition::Absent, Asked::Exists(false)),
            _ => {
                return Err(bad(format!(
                    "{what}: give exactly one of version (\"0:42\") or exists (true / false)"
                )));
            }
        };
        conditions.push((key, condition));
        asked.push(question);
    }

    let mut steps = Vec::with_capacity(request.ops.len());
    let mut kinds = Vec::with_capacity(request.ops.len());
    for (i, mut op) in request.ops.into_iter().enumerate() {
        let what = format!("ops[{i}] ({})", op.op);
        let args = op.expiry_args(&what)?;
        let key = required_key(&what, op.key, op.key_base64)?;
        let value = field_bytes(&what, "value", op.value, op.value_base64)?;
        let invalid = |message: String| bad(format!("{what}: {message}"));
        let (kind, step) = match (op.op.as_str(), value) {
            ("put", Some(value)) => {
                let expiry = args.put_expiry().map_err(invalid)?;
                (
                    StepKind::Put,
                    Some(Op::set(value, Condition::Always, expiry)),
                )
            }
            ("put", None) => {
                return Err(bad(format!("{what}: value (or value_base64) is missing")));
            }
            ("expire", None) => (StepKind::Expire, Some(args.expire_op().map_err(invalid)?)),
            ("delete" | "get", None) if !args.is_empty() => {
                return Err(bad(format!(
                    "{what}: takes no ttl, expire_at, keep_ttl, persist or when; a put sets an \
                     expiry, an expire changes it"
                )));
            }
            ("delete", None) => (
                StepKind::Delete,
                Some(Op::Delete {
                    when: Condition::Always,
                }),
            ),
            ("get", None) => (StepKind::Get, None),
            ("delete" | "get" | "expire", Some(_)) => {
                return Err(bad(format!("{what}: takes no value")));
            }
            (other, _) => {
                return Err(bad(format!(
                    "ops[{i}]: unknown op {other:?}; a transaction's ops are put, delete, get \
                     and expire"
                )));
            }
        };
        kinds.push((key.clone(), kind));
        steps.push((key, step));
    }

    let batch = Batch { conditions, steps };
    let compared: Vec<Bytes> = batch
        .conditions
        .iter()
        .map(|(key, _)| key.clone())
        .collect();
    let Applied { receipt, outcome } = state.store.apply_batch(batch).await?;
    let partition = receipt.partition;
    let etag = |state: Option<&KeyState>| {
        conditional::etag_of(partition, state).map(|etag| Value::from(etag.to_string()))
    };

    if !outcome.applied {
        let mut failed = Vec::new();
        let compare: Vec<Value> = compared
            .iter()
            .zip(&asked)
            .zip(&outcome.steps)
            .map(|((key, question), verdict)| {
                let mut item = Map::new();
                encode_into(&mut item, "key", key);
                item.insert("held".into(), verdict.applied.into());
                item.insert(
                    "version".into(),
                    etag(verdict.before.as_ref()).unwrap_or(Value::Null),
                );
                if !verdict.applied {
                    failed.push(describe_failure(key, question, verdict, partition));
                }
                Value::Object(item)
            })
            .collect();
        let body = json!({
            "succeeded": false,
            "error": format!("compare failed: {}; nothing was changed", failed.join("; ")),
            "partition": partition,
            "offset": receipt.offset,
            "compare": compare,
        });
        return Ok((StatusCode::PRECONDITION_FAILED, Json(body)).into_response());
    }

    let results: Vec<Value> = kinds
        .iter()
        .zip(&outcome.steps)
        .map(|((key, kind), step)| step_result(key, *kind, step, &etag))
        .collect();
    Ok(Json(json!({
        "succeeded": true,
        "partition": partition,
        "offset": receipt.offset,
        "results": results,
    }))
    .into_response())
}

/// One op's result: a put's new version, whether a delete removed
/// anything, a get's value and version (`null` when absent), whether an
/// expire applied and the key's version after it; with `expires_at` where
/// the key has an expiry.
fn step_result(
    key: &[u8],
    kind: StepKind,
    step: &Outcome,
    etag: &impl Fn(Option<&KeyState>) -> Option<Value>,
) -> Value {
    let mut item = Map::new();
    encode_into(&mut item, "key", key);
    // The key the result describes: a get's as the transaction found it
    // (absent once expired; its `after` is the material state).
    let state = match kind {
        StepKind::Put => {
            item.insert("op".into(), "put".into());
            step.after.as_ref()
        }
        StepKind::Delete => {
            item.insert("op".into(), "delete".into());
            item.insert("existed".into(), step.before.is_some().into());
            None
        }
        StepKind::Get => {
            item.insert("op".into(), "get".into());
            match &step.before {
                Some(state) => {
                    super::v1::encode_value_into(&mut item, state.ty, Some(&state.value))
                }
                None => {
                    item.insert("value".into(), Value::Null);
                }
            }
            step.before.as_ref()
        }
        StepKind::Expire => {
            item.insert("op".into(), "expire".into());
            item.insert("applied".into(), step.applied.into());
            expiry::reported(step)
        }
    };
    if !matches!(kind, StepKind::Delete) {
        item.insert("version".into(), etag(state).unwrap_or(Value::Null));
    }
    if let Some(at) = state.and_then(|state| state.expires_at) {
        item.insert("expires_at".into(), at.into());
    }
    Value::Object(item)
}

fn describe_failure(key: &[u8], asked: &Asked, verdict: &Outcome, partition: i32) -> String {
    let key = String::from_utf8_lossy(key);
    let found = match &verdict.before {
        Some(state) => format!("its version is {}", Etag::new(partition, state.version)),
        None => "it does not exist".to_owned(),
    };
    match asked {
        Asked::Version(etag) => format!("key {key:?} was to be at version {etag}, but {found}"),
        Asked::Exists(true) => format!("key {key:?} was to exist, but {found}"),
        Asked::Exists(false) => format!("key {key:?} was not to exist, but {found}"),
    }
}
