//! `GET /v1/watch`: a [`Watch`](crate::watch::Watch) as Server-Sent Events.
//!
//! Query: `prefix` (percent-decoded bytes), `start=now|snapshot`, `after=<token>`
//! (or the `Last-Event-ID` header, which a browser's `EventSource` sends when
//! it reconnects), `values=true|false`, `progress_ms` (how long a quiet watch
//! waits before a `progress` event; default 10 s). Each event has `id:` its
//! resume token (snapshot entries have none: a snapshot cannot be resumed
//! halfway), `event:` its kind (`put`, `delete`, `snapshot-end`, `progress`,
//! `lagged`) and `data:` JSON with keys and values encoded as the scan API
//! does (a UTF-8 string, else `key_base64` / `value_base64`); a `put` or
//! `delete` from the change stream also has `op`, what made it, named as
//! Redis names its keyspace-notification event (`set`, `del`, `incrby`,
//! `append`, `rename_from`, `expire`, `persist`, `expired`, …; snapshot
//! entries have none), and a `put` of a key with an expiry has
//! `expires_at` (ms since the Unix epoch). A comment is
//! sent every 15 s so proxies keep the connection. 400 for a malformed or
//! foreign token, 410 for an expired one, 503 while bootstrapping.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::sse::{Event, KeepAlive, Sse},
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value};

use super::{
    ApiError, AppState,
    v1::{Query, encode_into},
};
use crate::watch::{Start, WatchError, WatchEvent, WatchOptions};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn watch(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let options = options(&Query::parse(uri.query())?, &headers)?;
    let watch = state.store.watch(options).await.inspect_err(|error| {
        if let WatchError::Expired(_) = error {
            metrics::counter!("kafkv_watches_ended_total", "reason" => "expired").increment(1);
        }
    })?;
    metrics::gauge!("kafkv_watches_open").increment(1.0);
    let events = futures::stream::unfold(Some(Open(watch)), |watch| async move {
        let mut watch = watch?;
        let event = watch.0.next().await?;
        metrics::counter!("kafkv_watch_events_total").increment(1);
        if let WatchEvent::Lagged { .. } = event {
            metrics::counter!("kafkv_watches_ended_total", "reason" => "lagged").increment(1);
        }
        Some((Ok(sse_event(&event)), Some(watch)))
    });
    let events = events.take_until(state.shutdown.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// An open watch, counted in `kafkv_watches_open` until dropped.
struct Open(crate::watch::Watch);

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("kafkv_watches_open").decrement(1.0);
    }
}

fn options(query: &Query, headers: &HeaderMap) -> Result<WatchOptions, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| bad("Last-Event-ID must be a token this API sent".into()))?
        .filter(|t| !t.is_empty());
    let start = match (query.text("after")?, query.text("start")?) {
        (Some(_), Some(_)) => return Err(bad("give either start or after, not both".into())),
        (Some(token), None) => Start::After(token),
        // A reconnecting EventSource repeats its URL (start=…) and adds
        // Last-Event-ID: the token wins, so it resumes where it was.
        (None, _) if last_event_id.is_some() => Start::After(last_event_id.unwrap_or_default()),
        (None, None) => Start::Now,
        (None, Some(start)) => match start.as_str() {
            "now" => Start::Now,
            "snapshot" => Start::Snapshot,
            other => {
                return Err(bad(format!(
                    "start must be 'now' or 'snapshot', not '{other}'"
                )));
            }
        },
    };
    let values = match query.text("values")?.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(bad(format!("values must be true or false, not '{other}'"))),
    };
    let mut options = WatchOptions {
        prefix: Bytes::from(query.bytes("prefix").unwrap_or_default()),
        values,
        start,
        ..WatchOptions::default()
    };
    if let Some(ms) = query.text("progress_ms")? {
        let ms: u64 = ms.parse().ok().filter(|ms| *ms >= 1).ok_or_else(|| {
            bad(format!(
                "progress_ms must be a whole number ≥ 1, not '{ms}'"
            ))
        })?;
        options.progress_every = Duration::from_millis(ms);
    }
    Ok(options)
}

fn sse_event(event: &WatchEvent) -> Event {
    let mut data = Map::new();
    if let Some(record) = event.record() {
        encode_into(&mut data, "key", record.key);
        super::v1::encode_value_into(&mut data, record.ty, record.value);
        if let Some(op) = record.op {
            data.insert("op".into(), op.name().into());
        }
        if let Some(at) = record.expires_at {
            data.insert("expires_at".into(), at.into());
        }
        data.insert("partition".into(), record.partition.into());
        data.insert("offset".into(), record.offset.into());
        if let Some(timestamp) = record.timestamp {
            data.insert("timestamp".into(), timestamp.into());
        }
    }
    let token = event.token().map(|t| t.encode());
    if let Some(token) = &token {
        data.insert("token".into(), token.clone().into());
    }
    let sse = Event::default()
        .event(event.kind())
        .data(Value::Object(data).to_string());
    match token {
        Some(token) => sse.id(token),
        None => sse,
    }
}

impl From<WatchError> for ApiError {
    fn from(error: WatchError) -> Self {
        let status = match &error {
            WatchError::Token(_) => StatusCode::BAD_REQUEST,
            WatchError::Expired(_) => StatusCode::GONE,
            WatchError::NotReady | WatchError::Kafka(_) => StatusCode::SERVICE_UNAVAILABLE,
            WatchError::CatchUp(error) => super::error::read_status(error),
            WatchError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}
