//! `SETRANGE key offset value`: overwrite part of the value, zero-padding
//! as needed; the reply is the new length.

use super::{Args, Frame, Kind, Spec};
use crate::{op::Op, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "setrange",
    arity: 4,
    flags: &["write", "denyoom"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct SetRange {
    key: bytes::Bytes,
    offset: u64,
    bytes: bytes::Bytes,
}

impl SetRange {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let offset = args.integer()?;
        let bytes = args.bytes()?;
        args.finish()?;
        let offset = u64::try_from(offset).map_err(|_| Frame::error("ERR offset is out of range"))?;
        if offset.saturating_add(bytes.len() as u64) > crate::op::REDIS_MAX_STRING {
            return Err(Frame::error(
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
            ));
        }
        Ok(Self { key, offset, bytes })
    }

    pub fn batched(self, max_len: u64) -> super::Batched {
        // An empty range writes nothing, so its outcome's `after` is the
        // material state, which may have expired: the length is the live
        // value's.
        let reply: fn(crate::op::Outcome) -> Frame = if self.bytes.is_empty() {
            |outcome| Frame::Integer(outcome.before.map_or(0, |state| state.value.len() as i64))
        } else {
            super::append::length
        };
        let op = Op::SetRange {
            offset: self.offset,
            bytes: self.bytes,
            max_len,
        };
        super::Batched::one(self.key, Some(op), reply)
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched(store.max_value_len()).run(store).await
    }
}
