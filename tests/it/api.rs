//! The HTTP API end to end: both route families, binary data, scans,
//! tombstones and read-your-writes.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Kafka, Kafkv, encode_key, get_json, read_topic, replay, unique_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_routes_put_get_delete() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("reference"))).await;

    let put = kv
        .http
        .post(kv.url("/put"))
        .json(&json!({"key": "greeting", "value": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(
        put.json::<Value>().await.unwrap(),
        json!({"key": "greeting", "value": "hello"})
    );

    let got = kv.http.get(kv.url("/keys/greeting")).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        got.json::<Value>().await.unwrap(),
        json!({"key": "greeting", "value": "hello"})
    );

    let deleted = kv
        .http
        .delete(kv.url("/keys/greeting"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({"message": "Deletion of key = greeting was successful"})
    );

    let missing = kv.http.get(kv.url("/keys/greeting")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"message": "Key = greeting not found"})
    );

    // Deleting a key that is not there: 404 as the reference answers, and
    // nothing is written.
    let end = crate::harness::end_offset_total(&kafka.brokers(), &kv.store.config().topic).await;
    let again = kv
        .http
        .delete(kv.url("/keys/greeting"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"message": "Key = greeting not found"})
    );
    assert_eq!(
        crate::harness::end_offset_total(&kafka.brokers(), &kv.store.config().topic).await,
        end
    );
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_routes_put_get_delete_with_offsets() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("v1"))).await;

    let put = kv
        .http
        .put(kv.url("/v1/kv/user%2F1"))
        .body("first")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let receipt: Value = put.json().await.unwrap();
    assert_eq!(receipt["partition"], 0);

    let got = kv.http.get(kv.url("/v1/kv/user%2F1")).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["x-kafkv-partition"], "0");
    assert_eq!(
        got.headers()["x-kafkv-offset"].to_str().unwrap(),
        receipt["offset"].to_string()
    );
    assert_eq!(got.bytes().await.unwrap(), "first");

    // The key really is "user/1" on the topic, byte for byte.
    let records = read_topic(&kafka.brokers(), &kv.store.config().topic).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].partition, 0);
    assert_eq!(records[0].key.as_deref(), Some(&b"user/1"[..]));
    assert_eq!(records[0].value.as_deref(), Some(&b"first"[..]));

    let deleted = kv
        .http
        .delete(kv.url("/v1/kv/user%2F1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let tombstone: Value = deleted.json().await.unwrap();
    assert!(tombstone["offset"].as_i64() > receipt["offset"].as_i64());
    let gone = kv.http.get(kv.url("/v1/kv/user%2F1")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(gone.json::<Value>().await.unwrap()["error"].is_string());

    // The delete is a tombstone: same key, null value.
    let records = read_topic(&kafka.brokers(), &kv.store.config().topic).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].key.as_deref(), Some(&b"user/1"[..]));
    assert_eq!(records[1].value, None);
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_on_every_put_and_delete() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("ryw"))).await;
    // A key written many times reads its last value right after each write,
    // through both APIs, with no waiting for the consumer.
    for round in 0..100 {
        let value = format!("v{round}");
        let put = kv
            .http
            .put(kv.url("/v1/kv/hot"))
            .body(value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::OK);
        let got = kv.http.get(kv.url("/v1/kv/hot")).send().await.unwrap();
        assert_eq!(got.bytes().await.unwrap(), value, "round {round}");
        let reference: Value = get_json(&kv.http, &kv.url("/keys/hot")).await;
        assert_eq!(reference["value"], value.as_str());
        if round % 10 == 9 {
            let deleted = kv.http.delete(kv.url("/keys/hot")).send().await.unwrap();
            assert_eq!(deleted.status(), StatusCode::OK);
            let gone = kv.http.get(kv.url("/v1/kv/hot")).send().await.unwrap();
            assert_eq!(gone.status(), StatusCode::NOT_FOUND, "round {round}");
        }
    }
    // Once the consumer caught up, the view agrees with the log.
    kv.store.catch_up().await.unwrap();
    let records = read_topic(&kafka.brokers(), &kv.store.config().topic).await;
    assert_eq!(records.len(), 110);
    assert_eq!(kv.state().await, replay(&records));
    assert!(!kv.state().await.contains_key(&b"hot"[..]));
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_page_through_a_prefix() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("scan"))).await;
    let mut expected = BTreeMap::new();
    for i in 0..25 {
        let key = format!("user:{i:03}");
        let value = format!("name-{i}");
        let put = kv
            .http
            .put(kv.url(&format!("/v1/kv/{}", encode_key(key.as_bytes()))))
            .body(value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::OK);
        expected.insert(key, value);
    }
    for other in ["order:1", "users", "user"] {
        kv.store
            .put(other.as_bytes(), bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    // A deleted key inside the prefix must not show up.
    kv.store.delete(b"user:007").await.unwrap();
    expected.remove("user:007");

    let mut seen = BTreeMap::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = kv.url("/v1/kv?prefix=user%3A&limit=10");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = get_json(&kv.http, &url).await;
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        for item in items {
            seen.insert(
                item["key"].as_str().unwrap().to_owned(),
                item["value"].as_str().unwrap().to_owned(),
            );
        }
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // start_after is exclusive and honours the prefix.
    let page: Value = get_json(
        &kv.http,
        &kv.url("/v1/kv?prefix=user%3A&start_after=user%3A020&limit=100"),
    )
    .await;
    let keys: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["user:021", "user:022", "user:023", "user:024"]);
    assert!(page["cursor"].is_null());
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("ops"))).await;
    kv.store
        .put(b"k", bytes::Bytes::from_static(b"v"))
        .await
        .unwrap();
    let live = kv.http.get(kv.url("/livez")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = kv.http.get(kv.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
    kv.http.get(kv.url("/v1/kv/k")).send().await.unwrap();
    let names = [
        "kafkv_http_requests_total{route=\"/v1/kv/{*key}\",method=\"GET\",status=\"200\"}",
        "kafkv_http_request_duration_seconds_bucket",
        "kafkv_records_applied_total",
        "kafkv_bootstrap_seconds",
        "kafkv_keys",
        "kafkv_applied_offset{partition=\"0\"}",
    ];
    // The put is acknowledged before the consumer applies it, and the
    // consumer counts an applied batch just after applying it: wait until
    // it caught up, then until the count is published.
    kv.store.catch_up().await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = kv.metrics().await;
        let missing: Vec<_> = names.iter().filter(|n| !metrics.contains(*n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing:?} missing from:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    kv.stop().await;
}
