//! What each store error means over RESP, in Redis's style: the first word of
//! the error says what a client may do (`TRYAGAIN`: retry; `LOADING`: the
//! instance is not ready to answer yet; `ERR`: this request will not work).
//! The matches are exhaustive on purpose: a new error variant does not
//! compile until it has a reply here.

use super::frame::Frame;
use crate::error::{InputError, ProduceError, ReadError, WriteError};

/// A store error as a RESP error reply.
pub trait ErrorReply: std::fmt::Display {
    /// The reply's first word.
    fn code(&self) -> &'static str;
}

/// The reply for a store error.
pub fn store_error(error: impl ErrorReply) -> Frame {
    Frame::error(format!("{} {error}", error.code()))
}

impl ErrorReply for InputError {
    fn code(&self) -> &'static str {
        match self {
            InputError::CrossPartition { .. } => "CROSSSLOT",
            InputError::EmptyKey
            | InputError::EmptyBatch
            | InputError::KeyTooLarge { .. }
            | InputError::ValueTooLarge { .. }
            | InputError::BatchTooLarge { .. }
            | InputError::BodyTooLarge { .. }
            | InputError::InvalidExpiry => "ERR",
        }
    }
}

impl ErrorReply for WriteError {
    fn code(&self) -> &'static str {
        match self {
            WriteError::Input(input) => input.code(),
            // Nothing was written: any client may retry.
            WriteError::Closed => "TRYAGAIN",
            // Not `TRYAGAIN`, which cluster clients retry on their own: an
            // indeterminate write may have been applied (its text says to read
            // the key first), and a record refused for what it is (too large,
            // not authorized) would be refused again.
            WriteError::Produce(
                ProduceError::Indeterminate { .. } | ProduceError::NotWritten(_),
            )
            | WriteError::Unsafe(_)
            | WriteError::OutcomeUnknown { .. } => "ERR",
            // Nothing was written and this instance is catching up.
            WriteError::NotReady(_) => "LOADING",
        }
    }
}

impl ErrorReply for ReadError {
    fn code(&self) -> &'static str {
        match self {
            ReadError::NotReady(_) | ReadError::EndOffsets(_) | ReadError::CatchUpTimeout(_) => {
                "LOADING"
            }
            ReadError::State(_) => "ERR",
        }
    }
}
