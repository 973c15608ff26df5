//! Error types, one enum per layer, converging into the umbrella [`Error`].
//!
//! Callers that care about one operation match the narrow enum (for example
//! [`WriteError`] to tell "the broker is unreachable" from "bad input"); the
//! front ends map each variant to a status code in one place.

use std::{path::PathBuf, time::Duration};

use rdkafka::error::KafkaError;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in kafkv.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("kafka client error: {0}")]
    Kafka(#[from] KafkaError),
    #[cfg(feature = "embedded-broker")]
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store is shutting down")]
    Closed,
}

/// A request that kafkv refuses before anything is produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("the key is empty; keys must be 1 byte or longer")]
    EmptyKey,
    #[error("the key is {len} bytes, over the limit of {max} bytes (--max-key-bytes)")]
    KeyTooLarge { len: usize, max: usize },
    #[error("the value is {len} bytes, over the limit of {max} bytes (--max-value-bytes)")]
    ValueTooLarge { len: usize, max: usize },
    #[error("the request body is over the limit of {max} bytes ({limit})")]
    BodyTooLarge { max: usize, limit: &'static str },
}

/// The topic is missing, unusable or not compacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error(
        "topic '{topic}' has cleanup.policy={policy}, so Kafka may delete the latest value of a key \
         and kafkv would lose data. Fix: `kafka-configs --bootstrap-server <broker> --alter --entity-type topics --entity-name {topic} \
         --add-config cleanup.policy=compact`, or point kafkv at another topic with --topic, or start \
         with --allow-non-compacted if you accept the loss"
    )]
    NotCompacted { topic: String, policy: String },
    #[error(
        "could not reach the Kafka brokers at {brokers} within {waited:?} ({reason}); \
         check --brokers and that the brokers are up"
    )]
    Unreachable {
        brokers: String,
        waited: Duration,
        reason: String,
    },
    #[error("could not create topic '{topic}': {reason}")]
    Create { topic: String, reason: String },
    #[error("could not read the configuration of topic '{topic}': {reason}")]
    Describe { topic: String, reason: String },
    #[error(
        "topic '{topic}' has no partitions in the cluster metadata after {waited:?}; \
         is the broker at the configured --brokers reachable?"
    )]
    NoPartitions { topic: String, waited: Duration },
}

/// A put or delete that was not acknowledged by the broker.
///
/// Every variant means the caller must not assume the write happened. A
/// write that timed out while its request was in flight may still have been
/// stored by the broker, so readers are told to check rather than promised
/// it is absent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error(
        "the broker did not acknowledge the write within {timeout:?} ({reason}). It is not \
         confirmed: unless the broker received it before failing it was not applied; read the \
         key to check. Is the broker reachable? (--write-timeout sets the bound)"
    )]
    Unavailable { timeout: Duration, reason: String },
    #[error("the broker rejected the write: {0}")]
    Rejected(#[source] KafkaError),
    #[error("the store is shutting down; the write was not sent")]
    Closed,
}

/// A read that could not be answered as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("the store is still bootstrapping ({0}); retry when /readyz answers 200")]
    NotReady(String),
    #[error("could not learn the topic's end offsets for a strong read: {0}")]
    EndOffsets(#[source] KafkaError),
    #[error(
        "a strong read waited {0:?} for this instance to catch up with the topic's end offsets"
    )]
    CatchUpTimeout(Duration),
}

/// The local copy of the view (`--state disk`) could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error(
        "the disk state {0} is open in another process (another kafkv with the same --data-dir \
         and --topic?); stop that one or give this one its own --data-dir"
    )]
    InUse(PathBuf),
    #[error(
        "the disk state {path} failed: {source}; kafkv can rebuild it from the topic if you delete the file"
    )]
    Disk {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
}
