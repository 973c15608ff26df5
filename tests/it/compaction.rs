//! Compaction on the embedded broker: a compacted topic bootstraps to the
//! right state, and a large compaction does not stall the broker (the key
//! index kafkv adds; see docs/design.md).

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;

use crate::harness::{
    BrokerProcess, Kafkv, eventually, produce_all, producer, read_topic, replay, test_config,
    unique_topic, watermarks,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_bootstraps_to_the_correct_state() {
    // Compaction needs a broker we control: it compacts every 200 ms.
    let broker = BrokerProcess::start_with(Duration::from_millis(200)).await;
    let brokers = broker.address();
    let topic = unique_topic("compacted");
    let writer = Kafkv::start(test_config(&brokers, &topic)).await;

    let mut expected = BTreeMap::new();
    let mut records = Vec::new();
    for round in 0..5 {
        for k in 0..200 {
            let key = format!("k{k:03}").into_bytes();
            let value = format!("round-{round}").into_bytes();
            expected.insert(key.clone(), value.clone());
            records.push((key, Some(value)));
        }
    }
    for k in 0..50 {
        let key = format!("k{k:03}").into_bytes();
        expected.remove(&key);
        records.push((key, None));
    }
    produce_all(&producer(&brokers), &topic, records[..1000].to_vec()).await;
    produce_all(&producer(&brokers), &topic, records[1000..].to_vec()).await;
    writer.stop().await;

    // The first four rounds are superseded: compaction removes them.
    eventually("compaction removed the superseded records", || async {
        watermarks(&brokers, &topic).await[0].0 >= 800
    })
    .await;
    let remaining = read_topic(&brokers, &topic).await;
    assert!(
        remaining.iter().all(|r| r.offset >= 800),
        "early offsets are gone"
    );
    assert_eq!(
        remaining.len(),
        200,
        "one record per key remains (tombstones included)"
    );
    assert_eq!(replay(&remaining), expected);

    let fresh = Kafkv::start(test_config(&brokers, &topic)).await;
    assert_eq!(fresh.state().await, expected);
    fresh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_compaction_does_not_stall_writes() {
    const KEYS: usize = 100_000;
    let broker = BrokerProcess::start_with(Duration::from_secs(1)).await;
    let brokers = broker.address();
    let topic = unique_topic("big-compaction");
    let kv = Kafkv::start(test_config(&brokers, &topic)).await;

    // 200,000 records: every one of 100,000 keys written twice.
    let value = vec![b'x'; 100];
    let records = (0..2 * KEYS).map(|i| {
        (
            format!("key-{:06}", i % KEYS).into_bytes(),
            Some(value.clone()),
        )
    });
    produce_all(&producer(&brokers), &topic, records).await;

    // Maintenance runs every second and now has 100,000 records to remove;
    // writes keep being acknowledged promptly through several runs.
    let mut slowest = Duration::ZERO;
    let mut compacted = false;
    for i in 0..300 {
        let started = std::time::Instant::now();
        let put = tokio::time::timeout(
            Duration::from_secs(2),
            kv.store
                .put(format!("probe-{i}").as_bytes(), Bytes::from_static(b"p")),
        )
        .await;
        let took = started.elapsed();
        assert!(
            matches!(put, Ok(Ok(_))),
            "write {i} was not acknowledged within 2 s ({put:?}); broker log:\n{}",
            broker.log()
        );
        slowest = slowest.max(took);
        if !compacted {
            compacted = watermarks(&brokers, &topic).await[0].0 >= KEYS as i64;
        }
        if compacted && i >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(compacted, "the broker never compacted the topic");
    println!("slowest write during compaction: {slowest:?}");

    kv.store.catch_up().await.unwrap();
    let state = kv.state().await;
    assert_eq!(
        state.len(),
        KEYS + state.keys().filter(|k| k.starts_with(b"probe-")).count()
    );
    assert_eq!(state, replay(&read_topic(&brokers, &topic).await));
    kv.stop().await;
}
