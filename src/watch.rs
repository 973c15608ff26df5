//! `kafkv watch`: follows a kafkv instance's change stream (`GET /v1/watch`)
//! and prints one JSON line per event on stdout: the SSE event's kind as
//! `event`, then its data (`key`, `value`, `op` — what made the change, e.g.
//! `incrby`, or `expired` for a key its expiry removed —, `expires_at` on a
//! put of a key with an expiry, `partition`, `offset`, `timestamp`, `token`),
//! e.g. `{"event":"put","key":"n","op":"incrby","value":"3",…}`. When the connection drops,
//! or the server ends the stream (`lagged`, a restart), it reconnects with
//! the last token it printed, so nothing is missed or repeated; a refused
//! request (a malformed, foreign or expired token, a wrong auth token) ends
//! it with the server's message.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use serde_json::{Map, Value};

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct WatchArgs {
    /// The kafkv HTTP API to follow.
    #[arg(long, env = "KAFKV_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Only keys that begin with this (UTF-8) prefix.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Where to start without --after: `now`, or `snapshot` (every live key first).
    #[arg(long, default_value = "now", value_parser = ["now", "snapshot"])]
    start: String,
    /// Resume right after the event that carried this token.
    #[arg(long)]
    after: Option<String>,
    /// Leave values out of `put` events.
    #[arg(long)]
    no_values: bool,
    /// The server's --auth-token.
    #[arg(long, env = "KAFKV_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("the server refused the watch ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("invalid --url: {0}")]
    Url(String),
}

/// Runs until the server refuses the watch; connection failures are retried.
pub async fn run(args: WatchArgs) -> Result<(), WatchError> {
    let client = reqwest::Client::new();
    let mut token = args.after.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow(&client, &args, &mut token).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(Failure::Refused(error)) => return Err(error),
            Err(Failure::Connection(error)) => {
                tracing::warn!(%error, retry_in = ?backoff, "watch connection lost; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

enum Failure {
    Refused(WatchError),
    Connection(String),
}

/// One connection: prints its events, keeping `token` at the last one's.
async fn follow(
    client: &reqwest::Client,
    args: &WatchArgs,
    token: &mut Option<String>,
) -> Result<(), Failure> {
    let mut url = reqwest::Url::parse(&args.url)
        .and_then(|base| base.join("/v1/watch"))
        .map_err(|e| Failure::Refused(WatchError::Url(e.to_string())))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("prefix", &args.prefix);
        query.append_pair("values", if args.no_values { "false" } else { "true" });
        match token {
            Some(token) => query.append_pair("after", token),
            None => query.append_pair("start", &args.start),
        };
    }
    let mut request = client.get(url);
    if let Some(auth) = &args.auth_token {
        request = request.bearer_auth(auth);
    }
    let response = request
        .send()
        .await
        .map_err(|e| Failure::Connection(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(body);
        let refused = WatchError::Refused {
            status: status.as_u16(),
            message,
        };
        return Err(if status.is_server_error() {
            Failure::Connection(refused.to_string())
        } else {
            Failure::Refused(refused)
        });
    }
    let mut body = response.bytes_stream();
    // Bytes until a whole block is in: a chunk may end inside a character.
    let mut buffer = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Failure::Connection(e.to_string()))?;
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            if let Some((kind, data)) = parse_event(&String::from_utf8_lossy(&block)) {
                if let Some(next) = data.get("token").and_then(Value::as_str) {
                    *token = Some(next.to_owned());
                }
                println!("{}", line(kind, data));
            }
        }
    }
    Ok(())
}

/// The JSON line printed for an event: its kind as `event`, then its data.
fn line(kind: String, data: Map<String, Value>) -> Value {
    let mut line = Map::new();
    line.insert("event".into(), kind.into());
    line.extend(data);
    Value::Object(line)
}

/// An SSE block's `event:` and JSON `data:`; `None` for a keep-alive comment.
fn parse_event(block: &str) -> Option<(String, Map<String, Value>)> {
    let mut kind = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            kind = Some(value.trim_start().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    let data = match serde_json::from_str(&data) {
        Ok(Value::Object(data)) => data,
        _ => Map::new(),
    };
    Some((kind?, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_skips_comments() {
        let (kind, data) =
            parse_event("id: t1\nevent: put\ndata: {\"key\":\"k\",\"token\":\"t1\"}\n\n").unwrap();
        assert_eq!(kind, "put");
        assert_eq!(data["key"], "k");
        assert!(parse_event(":\n\n").is_none());
    }

    #[test]
    fn a_line_keeps_the_events_operation() {
        let (kind, data) = parse_event(
            "id: t2\nevent: put\ndata: {\"key\":\"n\",\"op\":\"incrby\",\"value\":\"3\"}\n\n",
        )
        .unwrap();
        let line = line(kind, data);
        assert_eq!(
            (
                line["event"].as_str(),
                line["op"].as_str(),
                line["value"].as_str()
            ),
            (Some("put"), Some("incrby"), Some("3"))
        );
    }

    #[test]
    fn a_line_keeps_the_expiry_and_names_an_expired_key() {
        let (kind, data) = parse_event(
            "id: t3\nevent: put\ndata: {\"key\":\"s\",\"op\":\"set\",\"expires_at\":1767225600000}\n\n",
        )
        .unwrap();
        assert_eq!(line(kind, data)["expires_at"], 1_767_225_600_000_i64);
        let (kind, data) =
            parse_event("id: t4\nevent: delete\ndata: {\"key\":\"s\",\"op\":\"expired\"}\n\n")
                .unwrap();
        let line = line(kind, data);
        assert_eq!(
            (line["event"].as_str(), line["op"].as_str()),
            (Some("delete"), Some("expired"))
        );
    }
}
