//! The librdkafka settings of every Kafka client kafkv creates, in one place,
//! so that the store, the benchmark's raw baselines and the tests configure
//! clients exactly alike.
//!
//! Each function returns `(property, value)` pairs for one role;
//! [`client_config`] applies them after the common ones and before the
//! user's `--kafka-config` overrides, which always win.

use rdkafka::ClientConfig;

use crate::config::StoreConfig;

/// A client configuration with kafkv's settings for `role`, then the user's
/// `--kafka-config` overrides.
pub fn client_config(config: &StoreConfig, role: &[(&str, String)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    client.set("client.id", "kafkv");
    for (key, value) in role {
        client.set(*key, value);
    }
    for (key, value) in &config.kafka_config {
        client.set(key, value);
    }
    client
}

/// Largest record kafkv may ever need to read: a maximal key and value plus
/// generous batch overhead. Consumer fetch sizes must exceed it, because some
/// brokers (the embedded one) never return a record larger than the fetch size
/// and the consumer would stall on it forever.
pub fn max_record_bytes(config: &StoreConfig) -> usize {
    config.max_key_bytes + config.max_value_bytes + 64 * 1024
}

/// The producer's settings: durable (`acks=all`), idempotent, the Java
/// client's partitioner, latency first. kafkv's writer adds its timeouts and
/// record size on top; a benchmark baseline uses exactly these.
pub fn producer_settings() -> Vec<(&'static str, String)> {
    vec![
        ("acks", "all".into()),
        ("enable.idempotence", "true".into()),
        // The Java client's partitioner, so every client agrees on a key's partition.
        ("partitioner", "murmur2_random".into()),
        // Latency first: send as soon as possible. librdkafka waits in whole
        // milliseconds, so even `linger.ms=0.1` adds about a millisecond to a
        // lone write (measured: p50 0.7 → 1.9 ms). Batches still form under
        // load: the writer's send window (`window.rs`) hands librdkafka the
        // records that arrive while earlier ones are in flight all at once.
        ("linger.ms", "0".into()),
    ]
}

/// The settings of a consumer that assigns partitions itself and reads them
/// from the beginning: kafkv's reader, and the benchmark's raw baseline, which
/// must fetch exactly as kafkv does.
pub fn assign_only_consumer(config: &StoreConfig) -> Vec<(&'static str, String)> {
    let fetch_bytes = max_record_bytes(config) * 4;
    vec![
        // librdkafka's assign() needs a group id; kafkv never joins the
        // group or commits to it: positions come from the view.
        (
            "group.id",
            format!("kafkv-{}-{}", config.topic, std::process::id()),
        ),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("enable.partition.eof", "true".into()),
        ("auto.offset.reset", "earliest".into()),
        (
            "fetch.wait.max.ms",
            config.fetch_wait.as_millis().to_string(),
        ),
        ("max.partition.fetch.bytes", fetch_bytes.to_string()),
        ("fetch.max.bytes", (fetch_bytes * 4).to_string()),
        (
            "receive.message.max.bytes",
            (fetch_bytes * 4 + 1024 * 1024).to_string(),
        ),
    ]
}
