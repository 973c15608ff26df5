//! The errors of the store's operations: one enum per kind of operation, so a
//! caller can match exactly what a write or a read can fail with.

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::{log::writer::ProduceError, state::StateError};

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

/// Why a put or delete failed ([`Store::put`](super::Store::put),
/// [`Store::delete`](super::Store::delete)).
///
/// Every variant means the caller must not assume the write happened; see
/// [`ProduceError`] for a write that may have reached the broker anyway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Refused before producing: nothing was written.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The broker did not acknowledge the record.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// The store is closing: nothing was written.
    #[error("the store is shutting down; the write was not sent")]
    Closed,
}

/// Why a read could not be answered as asked ([`Store::get`](super::Store::get),
/// scans).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The start-up read has not reached the end offsets seen at start.
    #[error("the store is still bootstrapping ({0}); retry once it is ready")]
    NotReady(String),
    /// A strong read could not learn what to catch up with.
    #[error("could not learn the topic's end offsets for a strong read: {0}")]
    EndOffsets(#[source] KafkaError),
    /// A strong read did not catch up in time.
    #[error(
        "a strong read waited {0:?} for this instance to catch up with the topic's end offsets"
    )]
    CatchUpTimeout(Duration),
    /// The view's own storage failed (`--state disk`).
    #[error(transparent)]
    State(#[from] StateError),
}
