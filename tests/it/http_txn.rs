//! `POST /v1/txn`: multi-key compares and writes decided at one place in the
//! log — all or nothing, reads of exactly what was replaced, and no lost
//! update when transactions from two instances race on the same keys.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Kafka, Kafkv, end_offset_total, eventually, unique_topic};

async fn txn(kv: &Kafkv, body: &Value) -> (StatusCode, Value) {
    let response = kv
        .http
        .post(kv.url("/v1/txn"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// GET /v1/kv/{key}: the value and its ETag's inside (`0:42`), if present.
async fn read(kv: &Kafkv, key: &str) -> Option<(String, String)> {
    let got = kv
        .http
        .get(kv.url(&format!("/v1/kv/{key}")))
        .send()
        .await
        .unwrap();
    if got.status() == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(got.status(), StatusCode::OK);
    let etag = got.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    Some((got.text().await.unwrap(), etag))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_writes_all_or_nothing_and_reads_what_it_replaced() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("txn");
    let kv = Kafkv::start(kafka.config(&topic)).await;
    kv.store.put(b"a", "1".into()).await.unwrap();
    kv.store.put(b"gone", "x".into()).await.unwrap();
    let (_, a_version) = read(&kv, "a").await.unwrap();

    let body = json!({
        "compare": [
            {"key": "a", "version": a_version},
            {"key": "b", "exists": false},
        ],
        "ops": [
            {"op": "get", "key": "a"},
            {"op": "put", "key": "a", "value": "2"},
            {"op": "put", "key_base64": "/wA=", "value_base64": "AAE="},
            {"op": "put", "key": "b", "value": "new"},
            {"op": "delete", "key": "gone"},
            {"op": "delete", "key": "never"},
            {"op": "get", "key": "b"},
        ],
    });
    let (status, answer) = txn(&kv, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["succeeded"], true);
    let offset = answer["offset"].as_i64().unwrap();
    let written = format!("0:{offset}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    // The get before the put reads the value the put replaces.
    assert_eq!(results[0]["value"], "1");
    assert_eq!(results[0]["version"], format!("\"{a_version}\""));
    assert_eq!(results[1]["version"], format!("\"{written}\""));
    assert_eq!(results[2]["key_base64"], "/wA=");
    assert_eq!(
        results[4],
        json!({"op": "delete", "key": "gone", "existed": true})
    );
    assert_eq!(
        results[5],
        json!({"op": "delete", "key": "never", "existed": false})
    );
    // The get after the put reads the put, at the transaction's version.
    assert_eq!(results[6]["value"], "new");
    assert_eq!(results[6]["version"], format!("\"{written}\""));

    assert_eq!(read(&kv, "a").await, Some(("2".into(), written.clone())));
    assert_eq!(read(&kv, "b").await, Some(("new".into(), written.clone())));
    assert_eq!(read(&kv, "gone").await, None);
    assert_eq!(
        kv.store
            .get(&[0xff, 0], Default::default())
            .await
            .unwrap()
            .map(|f| f.value),
        Some(bytes::Bytes::from_static(&[0, 1]))
    );

    // The same transaction again: both compares fail now, and nothing changes.
    let (status, answer) = txn(&kv, &body).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{answer}");
    assert_eq!(answer["succeeded"], false);
    assert_eq!(
        answer["compare"],
        json!([
            {"key": "a", "held": false, "version": format!("\"{written}\"")},
            {"key": "b", "held": false, "version": format!("\"{written}\"")},
        ])
    );
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("key \"a\" was to be at version \"{a_version}\"")),
        "{error}"
    );
    assert!(error.contains("nothing was changed"), "{error}");
    assert_eq!(read(&kv, "a").await, Some(("2".into(), written.clone())));
    assert_eq!(read(&kv, "b").await, Some(("new".into(), written)));
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_transactions_are_refused_and_write_nothing() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("txn-bad");
    let mut config = kafka.config(&topic);
    config.max_value_bytes = 1024;
    let kv = Kafkv::start(config).await;
    kv.store.put(b"a", "1".into()).await.unwrap();
    let before = end_offset_total(&kafka.brokers(), &topic).await;

    let big = "v".repeat(700);
    let too_many: Vec<Value> = (0..129)
        .map(|i| json!({"op": "get", "key": format!("k{i}")}))
        .collect();
    let cases = [
        (
            json!({"ops": [{"op": "increment", "key": "a"}]}),
            StatusCode::BAD_REQUEST,
            "unknown op \"increment\"",
        ),
        (
            json!({"ops": [{"op": "put", "key": "a"}]}),
            StatusCode::BAD_REQUEST,
            "value (or value_base64) is missing",
        ),
        (
            json!({"ops": [{"op": "get", "value": "x"}]}),
            StatusCode::BAD_REQUEST,
            "key (or key_base64) is missing",
        ),
        (
            json!({"ops": [{"op": "put", "key": "a", "value_base64": "!!"}]}),
            StatusCode::BAD_REQUEST,
            "not standard base64",
        ),
        (
            json!({"compare": [{"key": "a", "version": "0:1", "exists": true}]}),
            StatusCode::BAD_REQUEST,
            "exactly one of version",
        ),
        (
            json!({"compare": [{"key": "a", "version": "W/1"}]}),
            StatusCode::BAD_REQUEST,
            "not an ETag kafkv returned",
        ),
        (
            json!({"compare": [], "ops": [], "else": []}),
            StatusCode::BAD_REQUEST,
            "unknown field `else`",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "at least one key"),
        (
            json!({"ops": too_many}),
            StatusCode::BAD_REQUEST,
            "at most 128",
        ),
        (
            json!({"ops": [{"op": "put", "key": "a", "value": big}, {"op": "put", "key": "b", "value": big}]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "--max-value-bytes",
        ),
    ];
    for (body, status, message) in cases {
        let (got, answer) = txn(&kv, &body).await;
        assert_eq!(got, status, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(message), "{body}: {error}");
    }
    let response = kv
        .http
        .post(kv.url("/v1/txn"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("malformed transaction")
    );

    assert_eq!(end_offset_total(&kafka.brokers(), &topic).await, before);
    assert_eq!(read(&kv, "a").await.unwrap().0, "1");
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_partitions_a_transaction_keeps_to_one_key() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("txn-parts");
    let mut config = kafka.config(&topic);
    config.partitions = 2;
    let kv = Kafkv::start(config).await;
    let before = end_offset_total(&kafka.brokers(), &topic).await;
    let (status, answer) = txn(
        &kv,
        &json!({"compare": [{"key": "a", "exists": false}], "ops": [{"op": "put", "key": "b", "value": "1"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("one partition"),
        "{answer}"
    );
    assert_eq!(end_offset_total(&kafka.brokers(), &topic).await, before);

    // One key is fine.
    let (status, answer) = txn(
        &kv,
        &json!({"compare": [{"key": "a", "exists": false}], "ops": [{"op": "put", "key": "a", "value": "1"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    kv.stop().await;
}

/// Moves `amount` from one account to the other with a read, then a
/// transaction conditioned on both versions; retries on 412. Returns how
/// many attempts were refused.
async fn transfer(kv: &Kafkv, from: &str, to: &str, amount: i64) -> usize {
    let mut refused = 0;
    loop {
        let (from_value, from_version) = read(kv, from).await.unwrap();
        let (to_value, to_version) = read(kv, to).await.unwrap();
        let from_value: i64 = from_value.parse().unwrap();
        let to_value: i64 = to_value.parse().unwrap();
        let body = json!({
            "compare": [
                {"key": from, "version": from_version},
                {"key": to, "version": to_version},
            ],
            "ops": [
                {"op": "put", "key": from, "value": (from_value - amount).to_string()},
                {"op": "put", "key": to, "value": (to_value + amount).to_string()},
            ],
        });
        match txn(kv, &body).await {
            (StatusCode::OK, _) => return refused,
            (StatusCode::PRECONDITION_FAILED, _) => refused += 1,
            (status, answer) => panic!("transfer answered {status}: {answer}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_transfers_from_two_instances_conserve_the_total() {
    const CLIENTS: usize = 6;
    const TRANSFERS: usize = 8;
    let kafka = Kafka::start().await;
    let topic = unique_topic("txn-race");
    let a = Kafkv::start(kafka.config(&topic)).await;
    let b = Kafkv::start(kafka.config(&topic)).await;
    a.store.put(b"alice", "1000".into()).await.unwrap();
    a.store.put(b"bob", "1000".into()).await.unwrap();
    eventually("B holds both accounts", || async {
        read(&b, "alice").await.is_some() && read(&b, "bob").await.is_some()
    })
    .await;

    // Even clients move 1 from alice to bob; odd ones move 10 back.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let kv = if i % 2 == 0 { &a } else { &b };
        let (from, to, amount) = if i % 2 == 0 {
            ("alice", "bob", 1)
        } else {
            ("bob", "alice", 10)
        };
        clients.push(async move {
            let mut refused = 0;
            for _ in 0..TRANSFERS {
                refused += transfer(kv, from, to, amount).await;
            }
            refused
        });
    }
    let refused: usize = futures::future::join_all(clients).await.into_iter().sum();
    assert!(
        refused > 0,
        "the transfers never raced, so this proved nothing"
    );

    // Every transfer applied exactly once: alice lost 1 per even transfer
    // and gained 10 per odd one, and the total is what it was.
    let per_side = (CLIENTS / 2 * TRANSFERS) as i64;
    let alice = 1000 - per_side + 10 * per_side;
    let bob = 2000 - alice;
    for kv in [&a, &b] {
        eventually("both instances hold the final balances", || async {
            read(kv, "alice").await.map(|(v, _)| v) == Some(alice.to_string())
                && read(kv, "bob").await.map(|(v, _)| v) == Some(bob.to_string())
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
}
