//! The record format against a real broker: headers other applications add
//! are ignored, a reserved `kafkv.` header this version does not know keeps
//! the record from being applied (without holding the partition up), and
//! kafkv's own records carry no headers.

use std::time::Duration;

use bytes::Bytes;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Header, Headers, OwnedHeaders},
    producer::FutureRecord,
    util::Timeout,
};

use crate::harness::{Kafka, client, producer, unique_topic};
use kafkv::{Consistency, Store};

async fn value(store: &Store, key: &str) -> Option<String> {
    store
        .get(key.as_bytes(), Consistency::Strong)
        .await
        .unwrap()
        .map(|v| String::from_utf8(v.value.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_headers_are_ignored_and_unknown_kafkv_headers_are_not_applied() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("headers");
    let store = Store::open(kafka.config(&topic)).await.unwrap();
    let producer = producer(&kafka.brokers());
    let send = |key: &'static str, value: &'static str, header: Option<&'static str>| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            let mut record = FutureRecord::<str, str>::to(&topic).key(key).payload(value);
            if let Some(name) = header {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: name,
                    value: Some("7"),
                }));
            }
            producer
                .send(record, Timeout::After(Duration::from_secs(30)))
                .await
                .expect("produce");
        }
    };
    send("plain", "1", Some("trace-id")).await;
    send("future", "2", Some("kafkv.if-version")).await;
    send("after", "3", None).await;

    assert_eq!(value(&store, "plain").await.as_deref(), Some("1"));
    assert_eq!(value(&store, "future").await, None, "not applied");
    assert_eq!(value(&store, "after").await.as_deref(), Some("3"));
    // A fresh instance bootstraps past the refused record to the same state.
    let fresh = Store::open(kafka.config(&topic)).await.unwrap();
    assert_eq!(value(&fresh, "future").await, None);
    assert_eq!(value(&fresh, "after").await.as_deref(), Some("3"));

    // kafkv's own put and delete go out with no headers at all.
    store.put(b"mine", Bytes::from_static(b"v")).await.unwrap();
    store.delete(b"mine").await.unwrap();
    let consumer: BaseConsumer = client(&kafka.brokers())
        .set("group.id", "kafkv-tests")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Offset(3))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut ours = Vec::new();
    while ours.len() < 2 {
        match consumer.poll(Duration::from_secs(30)) {
            Some(message) => {
                let message = message.expect("consume");
                let headers = message.headers().map_or(0, |h| h.count());
                ours.push((
                    message.key().map(<[u8]>::to_vec),
                    message.payload().is_some(),
                    headers,
                ));
            }
            None => panic!("kafkv's records did not arrive"),
        }
    }
    assert_eq!(
        ours,
        vec![
            (Some(b"mine".to_vec()), true, 0),
            (Some(b"mine".to_vec()), false, 0)
        ]
    );
    fresh.close().await;
    store.close().await;
}
