//! `PERSIST key`: an operation record that removes the live key's expiry
//! where it lands in the log (docs/expiry.md); 1 if it had one, else 0.

use super::{Args, Frame, Kind, Spec};
use crate::{op::Op, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "persist",
    arity: 2,
    flags: &["write", "fast"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct Persist {
    key: bytes::Bytes,
}

impl Persist {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            key: args.single()?,
        })
    }

    pub fn batched(self) -> super::Batched {
        super::Batched::one(self.key, Some(Op::Persist), |outcome| {
            Frame::Integer(i64::from(outcome.applied))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}
