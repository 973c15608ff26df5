//! Bad input gets a clear 4xx and produces nothing: after every rejected
//! request the topic's end offsets are where they were.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Kafka, Kafkv, end_offset_total, unique_topic};

/// Sends `request`, checks its status and error text, and returns the body.
async fn rejected(request: RequestBuilder, status: StatusCode, field: &str, needle: &str) {
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("a JSON error body");
    let text = body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no '{field}' in {body}"));
    assert!(text.contains(needle), "'{text}' should mention '{needle}'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_produces_nothing() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("bad-input");
    let kv = Kafkv::start(kafka.config(&topic)).await;
    let max_key = kv.store.config().max_key_bytes;
    let max_value = kv.store.config().max_value_bytes;
    let long_key = "k".repeat(max_key + 1);
    let big_value = vec![b'v'; max_value + 1];
    let h = &kv.http;

    // Empty keys.
    rejected(
        h.put(kv.url("/v1/kv/")).body("x"),
        StatusCode::BAD_REQUEST,
        "error",
        "empty",
    )
    .await;
    rejected(
        h.delete(kv.url("/v1/kv/")),
        StatusCode::BAD_REQUEST,
        "error",
        "empty",
    )
    .await;
    rejected(
        h.delete(kv.url("/keys/")),
        StatusCode::BAD_REQUEST,
        "message",
        "empty",
    )
    .await;
    rejected(
        h.post(kv.url("/put"))
            .json(&json!({"key": "", "value": "x"})),
        StatusCode::BAD_REQUEST,
        "message",
        "empty",
    )
    .await;

    // Oversize keys and values.
    rejected(
        h.put(kv.url(&format!("/v1/kv/{long_key}"))).body("x"),
        StatusCode::PAYLOAD_TOO_LARGE,
        "error",
        "--max-key-bytes",
    )
    .await;
    rejected(
        h.delete(kv.url(&format!("/v1/kv/{long_key}"))),
        StatusCode::PAYLOAD_TOO_LARGE,
        "error",
        "--max-key-bytes",
    )
    .await;
    rejected(
        h.put(kv.url("/v1/kv/big")).body(big_value.clone()),
        StatusCode::PAYLOAD_TOO_LARGE,
        "error",
        "--max-value-bytes",
    )
    .await;
    rejected(
        h.post(kv.url("/put"))
            .json(&json!({"key": long_key, "value": "x"})),
        StatusCode::PAYLOAD_TOO_LARGE,
        "message",
        "--max-key-bytes",
    )
    .await;
    rejected(
        h.post(kv.url("/put"))
            .json(&json!({"key": "big", "value": String::from_utf8(big_value).unwrap()})),
        StatusCode::PAYLOAD_TOO_LARGE,
        "message",
        "--max-value-bytes",
    )
    .await;

    // Malformed and incomplete JSON, wrong content type.
    rejected(
        h.post(kv.url("/put"))
            .header("content-type", "application/json")
            .body("{\"key\": \"a\", "),
        StatusCode::BAD_REQUEST,
        "message",
        "Malformed JSON",
    )
    .await;
    rejected(
        h.post(kv.url("/put"))
            .json(&json!({"key": "a", "value": null})),
        StatusCode::BAD_REQUEST,
        "message",
        "Value can't be null",
    )
    .await;
    rejected(
        h.post(kv.url("/put")).json(&json!({"key": "a"})),
        StatusCode::BAD_REQUEST,
        "message",
        "Value can't be null",
    )
    .await;
    rejected(
        h.post(kv.url("/put")).json(&json!({"value": "x"})),
        StatusCode::BAD_REQUEST,
        "message",
        "Key can't be null",
    )
    .await;
    rejected(
        h.post(kv.url("/put"))
            .json(&json!({"key": "a", "value": 7})),
        StatusCode::BAD_REQUEST,
        "message",
        "string",
    )
    .await;
    rejected(
        h.post(kv.url("/put"))
            .header("content-type", "text/plain")
            .body("{\"key\": \"a\", \"value\": \"b\"}"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "message",
        "application/json",
    )
    .await;

    // Bad query parameters.
    rejected(
        h.get(kv.url("/v1/kv/a?consistency=eventual")),
        StatusCode::BAD_REQUEST,
        "error",
        "consistency",
    )
    .await;
    rejected(
        h.get(kv.url("/v1/kv?limit=0")),
        StatusCode::BAD_REQUEST,
        "error",
        "limit",
    )
    .await;
    rejected(
        h.get(kv.url("/v1/kv?cursor=!!")),
        StatusCode::BAD_REQUEST,
        "error",
        "cursor",
    )
    .await;

    assert_eq!(
        end_offset_total(&kafka.brokers(), &topic).await,
        0,
        "a rejected request produced a record"
    );

    // The store still works, and limits are inclusive.
    let at_limit = h
        .put(kv.url(&format!("/v1/kv/{}", "k".repeat(max_key))))
        .body(vec![b'v'; max_value])
        .send()
        .await
        .unwrap();
    assert_eq!(at_limit.status(), StatusCode::OK);
    let got = h
        .get(kv.url(&format!("/v1/kv/{}", "k".repeat(max_key))))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().len(), max_value);
    assert_eq!(end_offset_total(&kafka.brokers(), &topic).await, 1);
    kv.stop().await;
}
