//! `GETSET key value` and `GETDEL key`: a conditional put or delete
//! ([`Condition::StringOrAbsent`](crate::op::Condition)), decided where it
//! lands in the log: on a key holding a collection it writes nothing and
//! answers WRONGTYPE, as Redis does; otherwise the reply is the value it
//! replaced there.

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
        // On a collection: WRONGTYPE, and nothing written.
        let when = Condition::StringOrAbsent;
        let op = match self.value {
            Some(value) => Op::Set { value, when },
            None => Op::Delete { when },
        };
        super::Batched::one(self.key, Some(op), previous)
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}

/// The reply of commands that answer the value they replaced.
/// WRONGTYPE when that was a collection (which the operation's
/// [`Condition::StringOrAbsent`](crate::op::Condition) left alone).
pub(super) fn previous(outcome: crate::op::Outcome) -> Frame {
    match outcome.before {
        None => Frame::Null,
        Some(state) if state.is_string() => Frame::Bulk(state.value),
        Some(_) => super::wrong_type(),
    }
}
