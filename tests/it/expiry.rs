//! Expiry (docs/expiry.md) against a real broker process: a key written
//! with a time to live is read until it expires, then by no instance, and is
//! swept off the topic about once however many instances run; a key
//! rewritten before its sweep is never deleted; and the decisions that
//! depend on time are taken at the record's timestamp, alike everywhere.

use std::time::Duration;

use bytes::Bytes;
use kafkv::op::{Deadline, ExpireWhen, Op};

use crate::harness::{Kafka, Kafkv, eventually, read_topic, unique_topic};

async fn instances(kafka: &Kafka, topic: &str, n: usize) -> Vec<Kafkv> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(Kafkv::start(kafka.config(topic)).await);
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_keys_vanish_everywhere_and_are_swept_about_once() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("expiry-sweep");
    let kvs = instances(&kafka, &topic, 3).await;
    const KEYS: usize = 60;
    let ttl = 2000;
    let mut expires_at = None;
    for i in 0..KEYS {
        // Round robin: every instance is some keys' writer.
        let key = format!("k{i}");
        let applied = kvs[i % 3]
            .store
            .put_expiring(key.as_bytes(), Bytes::from("v"), Deadline::In(ttl))
            .await
            .expect("put with a ttl");
        if i == 0 {
            expires_at = applied.outcome.after.and_then(|state| state.expires_at);
        }
    }
    // Every instance resolved the same expiry from the record's timestamp.
    let expires_at = expires_at.expect("an expiry");
    for kv in &kvs {
        eventually("every instance applied the puts", || async {
            kv.store
                .get_now(b"k0")
                .unwrap()
                .is_none_or(|v| v.expires_at == Some(expires_at))
                && kv.store.expiry_counts().0 + kv.store.expiry_counts().1 == KEYS
        })
        .await;
    }
    // Gone from every read once expired, then swept off the topic.
    for kv in &kvs {
        eventually("the keys expire for reads", || async {
            (0..KEYS).all(|i| {
                kv.store
                    .get_now(format!("k{i}").as_bytes())
                    .unwrap()
                    .is_none()
            })
        })
        .await;
        eventually("every instance applied the keys' SWEEPs", || async {
            kv.store.expiry_counts() == (0, 0)
        })
        .await;
        assert_eq!(kv.store.len(), 0);
    }
    let records = read_topic(&kafka.brokers(), &topic).await;
    let tombstones = records.iter().filter(|r| r.value.is_none()).count();
    for i in 0..KEYS {
        let key = format!("k{i}").into_bytes();
        assert!(
            records
                .iter()
                .any(|r| r.value.is_none() && r.key.as_deref() == Some(&key[..])),
            "k{i} has a SWEEP"
        );
    }
    // Three instances, each with its own delay per key: duplicates only
    // when two delays fall within the time a record takes to arrive.
    assert!(
        tombstones <= KEYS * 3 / 2,
        "{tombstones} tombstones for {KEYS} keys: the instances did not take turns"
    );
    for kv in kvs {
        kv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rewritten_before_its_sweep_is_not_deleted() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("expiry-rewrite");
    let kvs = instances(&kafka, &topic, 2).await;
    // The rewrite (no TTL) lands right around the expiry, while the
    // sweepers may already hold the key as due.
    for round in 0..10 {
        let key = format!("r{round}");
        kvs[0]
            .store
            .put_expiring(key.as_bytes(), Bytes::from("old"), Deadline::In(100))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(90 + round * 3)).await;
        kvs[1]
            .store
            .put(key.as_bytes(), Bytes::from("new"))
            .await
            .unwrap();
    }
    // Well past every sweeper's delay: each key holds its rewrite on both.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for kv in &kvs {
        kv.store.catch_up().await.unwrap();
        for round in 0..10 {
            let value = kv.store.get_now(format!("r{round}").as_bytes()).unwrap();
            assert_eq!(
                value.map(|v| (v.value, v.expires_at)),
                Some((Bytes::from("new"), None)),
                "r{round}"
            );
        }
    }
    for kv in kvs {
        kv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expire_and_persist_are_decided_at_the_record_time_alike_everywhere() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("expiry-ops");
    let kvs = instances(&kafka, &topic, 2).await;
    let (a, b) = (&kvs[0].store, &kvs[1].store);
    a.put(b"k", Bytes::from("v")).await.unwrap();
    // XX on a key without an expiry: refused; NX: set.
    let xx = Op::Expire {
        deadline: Deadline::In(60_000),
        when: ExpireWhen::Xx,
    };
    assert!(!b.apply_op(b"k", xx.clone()).await.unwrap().outcome.applied);
    let nx = Op::Expire {
        deadline: Deadline::In(60_000),
        when: ExpireWhen::Nx,
    };
    let set = b.apply_op(b"k", nx).await.unwrap();
    assert!(set.outcome.applied);
    let expires_at = set.outcome.after.unwrap().expires_at.expect("an expiry");
    a.catch_up().await.unwrap();
    for store in [a, b] {
        assert_eq!(
            store.get_now(b"k").unwrap().unwrap().expires_at,
            Some(expires_at)
        );
    }
    // PERSIST removes it everywhere; a second PERSIST finds none.
    assert!(a.apply_op(b"k", Op::Persist).await.unwrap().outcome.applied);
    assert!(!a.apply_op(b"k", Op::Persist).await.unwrap().outcome.applied);
    b.catch_up().await.unwrap();
    for store in [a, b] {
        assert_eq!(store.get_now(b"k").unwrap().unwrap().expires_at, None);
    }
    // A deadline already past deletes, on both.
    let past = Op::Expire {
        deadline: Deadline::At(1),
        when: ExpireWhen::Always,
    };
    assert!(a.apply_op(b"k", past).await.unwrap().outcome.applied);
    b.catch_up().await.unwrap();
    for store in [a, b] {
        assert_eq!(store.get_now(b"k").unwrap(), None);
    }
    for kv in kvs {
        kv.stop().await;
    }
}
