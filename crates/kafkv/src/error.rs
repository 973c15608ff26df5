//! The umbrella [`Error`] and where each layer's errors live.
//!
//! Each layer defines its own errors beside its code, and each store
//! operation returns the narrow one ([`WriteError`] for puts and deletes,
//! [`ReadError`] for reads), so callers match exactly what can happen. They
//! all convert into [`Error`], which start-up and callers that do not care
//! use. The front ends map the operation errors to their protocol's answers
//! with exhaustive matches (`http/error.rs`, `resp/error.rs`): a new variant
//! does not compile until both say what it means.

pub use crate::{
    log::{topic::TopicError, writer::ProduceError},
    state::StateError,
    store::{InputError, ReadError, WriteError},
};

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
    /// A Kafka client could not be created or configured.
    #[error("kafka client error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store is shutting down")]
    Closed,
}
