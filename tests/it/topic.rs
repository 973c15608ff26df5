//! kafkv creates a compacted topic and refuses one that is not compacted.

use std::time::Duration;

use kafkv::{Error, Store, error::TopicError};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
};

use crate::harness::{Kafka, client, unique_topic};

async fn create_topic(brokers: &str, topic: &str, policy: &str) {
    let admin: AdminClient<DefaultClientContext> = client(brokers).create().unwrap();
    let created = admin
        .create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", policy)],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
}

async fn cleanup_policy(brokers: &str, topic: &str) -> Option<String> {
    topic_setting(brokers, topic, "cleanup.policy").await
}

/// One of the topic's settings as the broker describes it.
async fn topic_setting(brokers: &str, topic: &str, name: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = client(brokers).create().unwrap();
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    resource.get(name).and_then(|e| e.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_created_compacted() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("created");
    let store = Store::open(kafka.config(&topic)).await.unwrap();
    assert_eq!(
        cleanup_policy(&kafka.brokers(), &topic).await.as_deref(),
        Some("compact")
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_policy_topic_is_refused_unless_allowed() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("delete-policy");
    create_topic(&kafka.brokers(), &topic, "delete").await;

    let refused = Store::open(kafka.config(&topic)).await;
    let Err(Error::Topic(error @ TopicError::NotCompacted { .. })) = refused else {
        panic!("expected NotCompacted, got {:?}", refused.err());
    };
    let text = error.to_string();
    for needle in [
        "cleanup.policy=delete",
        "cleanup.policy=compact",
        "--allow-non-compacted",
    ] {
        assert!(text.contains(needle), "'{text}' should mention {needle}");
    }

    let mut allowed = kafka.config(&topic);
    allowed.allow_non_compacted = true;
    let store = tokio::time::timeout(Duration::from_secs(60), Store::open(allowed))
        .await
        .expect("open in time")
        .expect("--allow-non-compacted starts anyway");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_delete_is_accepted() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("compact-delete");
    create_topic(&kafka.brokers(), &topic, "compact,delete").await;
    let store = Store::open(kafka.config(&topic)).await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_start_up_with_a_clear_error() {
    let port = crate::harness::free_port();
    let mut config = crate::harness::test_config(&format!("127.0.0.1:{port}"), "nowhere");
    config.startup_timeout = Duration::from_secs(3);
    let outcome = tokio::time::timeout(Duration::from_secs(30), Store::open(config))
        .await
        .expect("start-up must give up on its own, within its timeout");
    let error = outcome.err().expect("no broker, no store");
    assert!(
        matches!(error, Error::Topic(TopicError::Unreachable { .. })),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("--brokers"), "{text}");
}

/// A topic kafkv creates keeps recent history (min.compaction.lag.ms) and
/// says how long tombstones stay (delete.retention.ms): the defaults, or what
/// the configuration asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_topic_carries_the_compaction_lag_and_tombstone_retention() {
    let kafka = Kafka::start().await;
    let brokers = kafka.brokers();
    let defaults = unique_topic("lag-default");
    let store = Store::open(kafka.config(&defaults)).await.unwrap();
    store.close().await;
    let custom = unique_topic("lag-custom");
    let mut config = kafka.config(&custom);
    config.min_compaction_lag = Duration::from_secs(90);
    config.delete_retention = Duration::from_secs(3600);
    let store = Store::open(config).await.unwrap();
    store.close().await;
    let expected = [
        (&defaults, "min.compaction.lag.ms", "600000"),
        (&defaults, "delete.retention.ms", "86400000"),
        (&custom, "min.compaction.lag.ms", "90000"),
        (&custom, "delete.retention.ms", "3600000"),
    ];
    for (topic, name, value) in expected {
        assert_eq!(
            topic_setting(&brokers, topic, name).await.as_deref(),
            Some(value),
            "{topic} {name}"
        );
    }
}

/// A topic kafkv creates takes record times from the broker's clock
/// (`message.timestamp.type=LogAppendTime`), so a producer whose clock is an
/// hour behind cannot make a record look old to compaction; a topic created
/// without it keeps the producer's time, as Kafka does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_topic_stamps_records_with_the_brokers_clock() {
    use rdkafka::{producer::FutureRecord, util::Timeout};

    use crate::harness::{create_plain_topic, producer, read_topic};

    let kafka = Kafka::start().await;
    let brokers = kafka.brokers();
    let stamped = unique_topic("append-time");
    let store = Store::open(kafka.config(&stamped)).await.unwrap();
    store.close().await;
    assert_eq!(
        topic_setting(&brokers, &stamped, "message.timestamp.type")
            .await
            .as_deref(),
        Some("LogAppendTime")
    );
    let plain = unique_topic("create-time");
    create_plain_topic(&brokers, &plain, 1).await;

    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let an_hour_ago = now() - 3_600_000;
    let producer = producer(&brokers);
    let before = now();
    for topic in [&stamped, &plain] {
        producer
            .send(
                FutureRecord::<str, str>::to(topic)
                    .key("k")
                    .payload("v")
                    .timestamp(an_hour_ago),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .unwrap();
    }
    let after = now();

    let record = &read_topic(&brokers, &stamped).await[0];
    let time = record.timestamp.unwrap();
    // The broker's clock is this machine's: the append happened in between.
    assert!(
        (before - 1_000..=after + 1_000).contains(&time),
        "stamped {time}, expected within [{before}, {after}] (the producer said {an_hour_ago})"
    );
    let record = &read_topic(&brokers, &plain).await[0];
    assert_eq!(record.timestamp, Some(an_hour_ago));
}
