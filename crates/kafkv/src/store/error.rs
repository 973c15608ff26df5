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
    #[error("a multi-key operation needs at least one key")]
    EmptyBatch,
    #[error(
        "a multi-key operation must keep to one partition, and this topic has \
         {partitions}: use a single key, or a topic with one partition"
    )]
    CrossPartition { partitions: i32 },
    #[error(
        "a multi-key operation is one record, and this one encodes to {len} bytes, over the \
         limit of {max} bytes (--max-value-bytes): split it"
    )]
    BatchTooLarge { len: usize, max: usize },
    #[error("a time to live must be a positive number of milliseconds")]
    InvalidExpiry,
}

/// Why a put or delete failed ([`Store::put`](super::Store::put),
/// [`Store::delete`](super::Store::delete)).
///
/// Every variant says what is known: nothing was written ([`Input`](Self::Input),
/// [`Closed`](Self::Closed), [`ProduceError::NotWritten`]), or the write may
/// have been applied ([`ProduceError::Indeterminate`]), in which case a caller
/// reads the key before retrying a non-idempotent operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Refused before producing: nothing was written.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The broker did not acknowledge the record: definitely not written, or
    /// indeterminate.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// The store is closing: nothing was written.
    #[error("the store is shutting down; the write was not sent")]
    Closed,
    /// A read-modify-write needs an instance that holds the whole log up to
    /// now (docs/rmw.md, the ready rule): nothing was written.
    #[error(
        "this instance is catching up with the topic ({0}), and a read-modify-write needs an \
         up-to-date one; nothing was written; retry once GET /readyz answers 200"
    )]
    NotReady(String),
    /// The topic's settings do not give the read-modify-write protocol its
    /// timing margin (docs/rmw.md): nothing was written. Plain puts and
    /// deletes still work.
    #[error("read-modify-write commands are refused on this topic: {0}; nothing was written")]
    Unsafe(String),
    /// The record is in the log, so its effect is decided, but this instance
    /// could not learn it: the reply is unknown.
    #[error(
        "the operation was written (partition {partition}, offset {offset}) and has taken effect \
         as the log decides, but {reason}, so its result is unknown; read the key to see it, and \
         do not retry a non-idempotent operation blindly"
    )]
    OutcomeUnknown {
        partition: i32,
        offset: i64,
        reason: String,
    },
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
