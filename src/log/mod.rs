//! The Kafka side of kafkv: the compacted topic ([`topic`]), the producer that
//! appends puts and tombstones ([`writer`]) and the consumer that bootstraps and
//! tails the topic into the view ([`reader`]).
//!
//! Record format: a record's key and value are the user's bytes exactly; a
//! delete is a record with a null value. Nothing else is required, so any Kafka
//! client can read and write a kafkv topic.

pub mod reader;
pub mod topic;
pub mod writer;

use rdkafka::ClientConfig;

use crate::config::StoreConfig;

/// A client configuration with kafkv's settings for `role`, then the user's
/// `--kafka-config` overrides, which always win.
pub(crate) fn client_config(config: &StoreConfig, role: &[(&str, String)]) -> ClientConfig {
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
pub(crate) fn max_record_bytes(config: &StoreConfig) -> usize {
    config.max_key_bytes + config.max_value_bytes + 64 * 1024
}
