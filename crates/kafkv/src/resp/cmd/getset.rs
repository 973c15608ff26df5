//! `GETSET key value` and `GETDEL key`: a plain put or tombstone (nothing
//! for compaction to worry about); the reply is the value it replaced, as
//! this instance applies the record at its offset.

use super::{Args, Frame, Kind, Spec};
use crate::store::Store;

pub const SPECS: &[Spec] = &[
    Spec {
        name: "getset",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        kind: Kind::Write,
        before_auth: false,
    },
    Spec {
        name: "getdel",
        arity: 2,
        flags: &["write", "fast"],
        kind: Kind::Write,
        before_auth: false,
    },
];

pub struct GetSet {
    key: bytes::Bytes,
    /// `None`: `GETDEL`.
    value: Option<bytes::Bytes>,
}

impl GetSet {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let getdel = args.name().eq_ignore_ascii_case(b"getdel");
        let key = args.bytes()?;
        let value = if getdel { None } else { Some(args.bytes()?) };
        args.finish()?;
        Ok(Self { key, value })
    }

    pub fn batched(self) -> super::Batched {
        use crate::op::{Condition, Op};
        let when = Condition::Always;
        let op = match self.value {
            Some(value) => Op::Set { value, when },
            None => Op::Delete { when },
        };
        super::Batched::one(self.key, Some(op), previous)
    }

    pub async fn apply(self, store: &Store) -> Frame {
        super::op_reply(store.replace(&self.key, self.value).await, previous)
    }
}

/// The reply of commands that answer the value they replaced.
pub(super) fn previous(outcome: crate::op::Outcome) -> Frame {
    outcome
        .before
        .map_or(Frame::Null, |state| Frame::Bulk(state.value))
}
