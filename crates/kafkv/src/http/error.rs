//! What each store error means over HTTP. The matches are exhaustive on
//! purpose: a new error variant does not compile until it has a status here.

use axum::http::StatusCode;

use super::ApiError;
use crate::error::{InputError, ProduceError, ReadError, WriteError};

fn input_status(error: &InputError) -> StatusCode {
    match error {
        InputError::EmptyKey
        | InputError::EmptyBatch
        | InputError::CrossPartition { .. }
        | InputError::InvalidExpiry => StatusCode::BAD_REQUEST,
        InputError::KeyTooLarge { .. }
        | InputError::ValueTooLarge { .. }
        | InputError::BatchTooLarge { .. }
        | InputError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
    }
}

impl From<InputError> for ApiError {
    fn from(error: InputError) -> Self {
        Self::new(input_status(&error), error.to_string())
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        let status = match &error {
            WriteError::Input(input) => input_status(input),
            // The write may have been applied (the message says so, and to
            // read the key before retrying a non-idempotent operation).
            WriteError::Produce(ProduceError::Indeterminate { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Nothing was written; the instance is closing: retry elsewhere.
            WriteError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            // Nothing was written: librdkafka or the broker refused the record.
            WriteError::Produce(ProduceError::NotWritten(_)) => StatusCode::BAD_GATEWAY,
            // Nothing was written; this instance will be up to date soon.
            WriteError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            // Nothing was written, and the topic's settings must change first.
            WriteError::Unsafe(_) => StatusCode::CONFLICT,
            // Written, result unknown here: as indeterminate for the client.
            WriteError::OutcomeUnknown { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, error.to_string())
    }
}

/// What a read error means over HTTP (also for a watch's snapshot).
pub(super) fn read_status(error: &ReadError) -> StatusCode {
    match error {
        ReadError::NotReady(_) | ReadError::EndOffsets(_) => StatusCode::SERVICE_UNAVAILABLE,
        ReadError::CatchUpTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        ReadError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        let status = read_status(&error);
        let message = match &error {
            ReadError::NotReady(_) => format!("{error}; GET /readyz answers 200 once it is"),
            _ => error.to_string(),
        };
        Self::new(status, message)
    }
}
