//! `ZREM key member [member ...]`: an operation record; the reply is how
//! many members it removed where it lands.

use super::{Args, Frame, Kind, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "zrem",
    arity: -3,
    flags: &["write", "fast"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct ZRem {
    key: bytes::Bytes,
    members: Vec<bytes::Bytes>,
}

impl ZRem {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let members = args.one_or_more()?;
        Ok(Self { key, members })
    }

    pub fn batched(self) -> super::Batched {
        let op = CollectionOp::ZRemove {
            members: self.members,
        };
        collection::write(self.key, op, |outcome| {
            Ok(Frame::Integer(-collection::grown_by(&outcome)?))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}
