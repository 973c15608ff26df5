//! Failures: the broker goes away and comes back; the service shuts down with
//! a write in flight.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{
    BrokerProcess, Kafkv, eventually, read_topic, replay, test_config, unique_topic,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_fails_writes_in_bound_keeps_reads_and_loses_nothing() {
    let mut broker = BrokerProcess::start().await;
    let brokers = broker.address();
    let topic = unique_topic("outage");
    let mut config = test_config(&brokers, &topic);
    config.write_timeout = Duration::from_secs(2);
    let kv = Kafkv::start(config).await;

    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let key = format!("before-{i}");
        kv.store
            .put(key.as_bytes(), Bytes::from(format!("v{i}")))
            .await
            .unwrap();
        acknowledged.push((key, format!("v{i}")));
    }

    broker.kill();
    let started = Instant::now();
    let failed = kv
        .http
        .put(kv.url("/v1/kv/during-outage"))
        .body("x")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = failed.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("did not acknowledge"),
        "{error}"
    );
    assert!(
        took < Duration::from_secs(2 + 3),
        "write failed after {took:?}, bound is 2 s"
    );

    // Reads keep being served from the view.
    let read = kv.http.get(kv.url("/v1/kv/before-7")).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.bytes().await.unwrap(), "v7");

    broker.restart().await;
    eventually("writes succeed again after the broker returns", || async {
        kv.store
            .put(b"after", Bytes::from_static(b"back"))
            .await
            .is_ok()
    })
    .await;

    // Nothing acknowledged was lost: a fresh replay of the log has it all.
    kv.store.catch_up().await.unwrap();
    let log = replay(&read_topic(&brokers, &topic).await);
    for (key, value) in &acknowledged {
        assert_eq!(
            log.get(key.as_bytes()),
            Some(&value.as_bytes().to_vec()),
            "{key} lost"
        );
    }
    assert_eq!(log.get(&b"after"[..]), Some(&b"back".to_vec()));
    assert_eq!(kv.state().await, log);
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_an_in_flight_write() {
    let broker = BrokerProcess::start().await;
    let brokers = broker.address();
    let topic = unique_topic("drain");
    let mut config = test_config(&brokers, &topic);
    config.write_timeout = Duration::from_secs(30);
    let mut kv = Kafkv::start(config).await;
    kv.store
        .put(b"warm", Bytes::from_static(b"up"))
        .await
        .unwrap();

    // Hold the write in flight: the broker is frozen until we let it go.
    broker.pause();
    let request = {
        let (http, url) = (kv.http.clone(), kv.url("/v1/kv/in-flight"));
        tokio::spawn(async move { http.put(url).body("finished").send().await })
    };
    eventually("the write is in flight", || async {
        kv.store.writes_in_flight() == 1
    })
    .await;

    let stopping = kv.begin_stop();
    broker.resume();
    let response = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    stopping.await.expect("shutdown completes");

    let records = read_topic(&brokers, &topic).await;
    assert_eq!(
        replay(&records).get(&b"in-flight"[..]),
        Some(&b"finished".to_vec())
    );
}
