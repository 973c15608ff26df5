//! Instances that apply the same log reach the same state: across restarts,
//! between concurrent instances, and with records from other Kafka clients.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use reqwest::StatusCode;

use crate::harness::{
    Kafka, Kafkv, eventually, produce_all, producer, read_topic, replay, state_of, unique_topic,
};
use kafkv::{Consistency, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_has_the_identical_state() {
    let kafka = Kafka::start().await;
    let config = kafka.config(&unique_topic("restart"));
    let first = Kafkv::start(config.clone()).await;
    let mut expected = BTreeMap::new();
    for i in 0..300u32 {
        let key = format!("key-{}", i % 120).into_bytes();
        if i % 7 == 3 {
            first.store.delete(&key).await.unwrap();
            expected.remove(&key);
        } else {
            let value = format!("value-{i}").into_bytes();
            first
                .store
                .put(&key, Bytes::from(value.clone()))
                .await
                .unwrap();
            expected.insert(key, value);
        }
    }
    assert_eq!(first.state().await, expected);
    first.stop().await;

    let second = Kafkv::start(config).await;
    assert_eq!(
        second.state().await,
        expected,
        "every key and value after restart"
    );
    assert_eq!(second.store.progress().records_applied, 300);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_converge_and_strong_reads_see_the_other_instances_writes() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("converge");
    let a = Kafkv::start(kafka.config(&topic)).await;
    // B tails with a long fetch wait, so only a strong read can promise to see A's writes.
    let mut slow = kafka.config(&topic);
    slow.fetch_wait = Duration::from_millis(1000);
    let b = Kafkv::start(slow).await;

    let writes = |store: Store, name: &'static str| async move {
        for i in 0..200u32 {
            let key = format!("shared-{}", i % 50);
            if i % 11 == 0 {
                store.delete(key.as_bytes()).await.unwrap();
            } else {
                store
                    .put(key.as_bytes(), Bytes::from(format!("{name}-{i}")))
                    .await
                    .unwrap();
            }
        }
    };
    tokio::join!(writes(a.store.clone(), "a"), writes(b.store.clone(), "b"));

    // A write acknowledged by A is visible at B with consistency=strong.
    let receipt = a
        .store
        .put(b"from-a", Bytes::from_static(b"hello b"))
        .await
        .unwrap();
    let strong = b
        .http
        .get(b.url("/v1/kv/from-a?consistency=strong"))
        .send()
        .await
        .unwrap();
    assert_eq!(strong.status(), StatusCode::OK);
    assert_eq!(strong.bytes().await.unwrap(), "hello b");
    assert!(b.store.progress().positions[receipt.partition as usize] > receipt.offset);

    // Both caught up: identical state, equal to a fresh replay of the log.
    a.store.catch_up().await.unwrap();
    b.store.catch_up().await.unwrap();
    let log = replay(&read_topic(&kafka.brokers(), &topic).await);
    assert_eq!(a.state().await, log);
    assert_eq!(b.state().await, log);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_other_kafka_clients_show_up_tombstones_included() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("interop");
    let brokers = kafka.brokers();
    let tailing = Kafkv::start(kafka.config(&topic)).await;

    let outside = producer(&brokers);
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..100)
        .map(|i| {
            (
                format!("ext-{i}").into_bytes(),
                Some(format!("{i}").into_bytes()),
            )
        })
        .chain(
            (0..100)
                .step_by(3)
                .map(|i| (format!("ext-{i}").into_bytes(), None)),
        )
        .collect();
    // Tombstones must come after their puts: produce the two groups in order.
    let (puts, tombstones) = records.split_at(100);
    produce_all(&outside, &topic, puts.to_vec()).await;
    produce_all(&outside, &topic, tombstones.to_vec()).await;

    let expected: BTreeMap<Vec<u8>, Vec<u8>> = (0..100)
        .filter(|i| i % 3 != 0)
        .map(|i| (format!("ext-{i}").into_bytes(), format!("{i}").into_bytes()))
        .collect();
    // The tailing instance applies them as they come ...
    eventually(
        "the tailing instance applies the outside records",
        || async { state_of(&tailing.store).await == expected },
    )
    .await;
    // ... and a new instance bootstraps to the same state.
    let fresh = Kafkv::start(kafka.config(&topic)).await;
    assert_eq!(fresh.state().await, expected);
    let deleted = fresh
        .store
        .get(b"ext-0", Consistency::Strong)
        .await
        .unwrap();
    assert_eq!(deleted, None);
    tailing.stop().await;
    fresh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_converge_with_read_your_writes_and_strong_reads() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("partitions");
    let mut config = kafka.config(&topic);
    config.partitions = 4;
    let a = Kafkv::start(config.clone()).await;
    let mut slow = config;
    slow.fetch_wait = Duration::from_millis(1000);
    let b = Kafkv::start(slow).await;
    assert_eq!(a.store.partitions(), 4);

    let mut used = std::collections::BTreeSet::new();
    for i in 0..200u32 {
        let (writer, name) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
        let key = format!("key-{}", i % 60);
        let receipt = if i % 9 == 0 {
            let receipt = writer.store.delete(key.as_bytes()).await.unwrap();
            // Read-your-writes, per key, whatever its partition.
            assert_eq!(
                writer
                    .store
                    .get(key.as_bytes(), Consistency::Local)
                    .await
                    .unwrap(),
                None
            );
            receipt
        } else {
            let value = format!("{name}-{i}");
            let receipt = writer
                .store
                .put(key.as_bytes(), Bytes::from(value.clone()))
                .await
                .unwrap();
            let read = writer
                .store
                .get(key.as_bytes(), Consistency::Local)
                .await
                .unwrap();
            assert_eq!(read.map(|v| v.value), Some(Bytes::from(value)));
            receipt
        };
        used.insert(receipt.partition);
    }
    assert_eq!(used.len(), 4, "keys spread over every partition: {used:?}");

    // A write acknowledged by A is visible at B with a strong read.
    let receipt = a
        .store
        .put(b"strong", Bytes::from_static(b"yes"))
        .await
        .unwrap();
    let read = b.store.get(b"strong", Consistency::Strong).await.unwrap();
    assert_eq!(
        read.map(|v| (v.value, v.partition, v.offset)),
        Some((
            Bytes::from_static(b"yes"),
            receipt.partition,
            receipt.offset
        ))
    );

    a.store.catch_up().await.unwrap();
    b.store.catch_up().await.unwrap();
    let log = replay(&read_topic(&kafka.brokers(), &topic).await);
    assert_eq!(a.state().await, log);
    assert_eq!(b.state().await, log);
    // A new instance bootstraps all four partitions to the same state.
    let fresh = Kafkv::start(kafka.config(&topic)).await;
    assert_eq!(fresh.store.partitions(), 4);
    assert_eq!(fresh.state().await, log);
    for kv in [a, b, fresh] {
        kv.stop().await;
    }
}
