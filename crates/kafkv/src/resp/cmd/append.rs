//! `APPEND key value`: an append operation record; the reply is the new length.

use super::{Args, Frame, Kind, Spec};
use crate::{op::Op, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "append",
    arity: 3,
    flags: &["write", "denyoom", "fast"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct Append {
    key: bytes::Bytes,
    suffix: bytes::Bytes,
}

impl Append {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let suffix = args.bytes()?;
        args.finish()?;
        Ok(Self { key, suffix })
    }

    pub fn batched(self, max_len: u64) -> super::Batched {
        let op = Op::Append {
            suffix: self.suffix,
            max_len,
        };
        super::Batched::one(self.key, Some(op), length)
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched(store.max_value_len()).run(store).await
    }
}

/// The reply of commands that answer the value's new length.
pub(super) fn length(outcome: crate::op::Outcome) -> Frame {
    Frame::Integer(outcome.after.map_or(0, |state| state.value.len() as i64))
}
