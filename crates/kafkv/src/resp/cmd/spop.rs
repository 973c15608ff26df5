//! `SPOP key [count]`: an operation record removing members chosen from
//! the record's offset (the same on every instance); the reply is what it
//! removed where it lands.

use super::{Args, Frame, Kind, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "spop",
    arity: -2,
    flags: &["write", "random", "fast"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct SPop {
    key: bytes::Bytes,
    /// `None`: one member, answered alone (or nil).
    count: Option<u64>,
}

impl SPop {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let count = collection::count(args, true)?;
        Ok(Self { key, count })
    }

    pub fn batched(self) -> super::Batched {
        let count = self.count;
        let op = CollectionOp::SetPop {
            count: count.unwrap_or(1),
        };
        collection::write(self.key, op, move |outcome| {
            let before = collection::value(&outcome.before);
            let after = collection::live_after(&outcome).map(|v| &v[..]);
            let mut popped = crate::collection::set_difference(before, after)?;
            Ok(match count {
                None => popped.pop().map_or(Frame::Null, Frame::Bulk),
                Some(_) => Frame::Set(popped.into_iter().map(Frame::Bulk).collect()),
            })
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}
