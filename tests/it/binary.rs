//! Keys and values are arbitrary bytes, through HTTP and the library alike.

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Kafka, Kafkv, encode_key, get_json, read_topic, unique_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_keys_and_values_round_trip() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("binary"))).await;
    let key: Vec<u8> = vec![0x00, 0xff, b'/', b'?', b'%', 0x80, b' ', b'+'];
    let value: Vec<u8> = (0..=255u8).rev().collect();

    let put = kv
        .http
        .put(kv.url(&format!("/v1/kv/{}", encode_key(&key))))
        .body(value.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let got = kv
        .http
        .get(kv.url(&format!("/v1/kv/{}", encode_key(&key))))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap(), value);

    // The record on the topic carries the bytes verbatim: no envelope.
    let records = read_topic(&kafka.brokers(), &kv.store.config().topic).await;
    assert_eq!(records[0].key.as_deref(), Some(&key[..]));
    assert_eq!(records[0].value.as_deref(), Some(&value[..]));

    // Scans encode non-UTF-8 bytes as base64, and binary prefixes work.
    let page: Value = get_json(&kv.http, &kv.url("/v1/kv?prefix=%00%FF")).await;
    let item = &page["items"][0];
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.decode(item["key_base64"].as_str().unwrap()).unwrap(),
        key
    );
    assert_eq!(
        b64.decode(item["value_base64"].as_str().unwrap()).unwrap(),
        value
    );

    // The library API agrees, and an empty value is a value, not a delete.
    kv.store.put(&[0xfe], Bytes::new()).await.unwrap();
    let empty = kv
        .store
        .get(&[0xfe], kafkv::Consistency::Local)
        .await
        .unwrap()
        .expect("an empty value is stored");
    assert!(empty.value.is_empty());
    kv.store.catch_up().await.unwrap();
    assert_eq!(kv.state().await.get(&[0xfe][..]), Some(&Vec::new()));
    kv.stop().await;
}
