//! `SADD key member [member ...]` and `SREM key member [member ...]`: an
//! operation record; the reply is how many members it added or removed
//! where it lands.

use super::{Args, Frame, Kind, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

pub const SPECS: &[Spec] = &[
    Spec {
        name: "sadd",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        kind: Kind::Write,
        before_auth: false,
    },
    Spec {
        name: "srem",
        arity: -3,
        flags: &["write", "fast"],
        kind: Kind::Write,
        before_auth: false,
    },
];

pub struct SAdd {
    key: bytes::Bytes,
    members: Vec<bytes::Bytes>,
    remove: bool,
}

impl SAdd {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let remove = args.name().eq_ignore_ascii_case(b"srem");
        let key = args.bytes()?;
        let members = args.one_or_more()?;
        Ok(Self {
            key,
            members,
            remove,
        })
    }

    pub fn batched(self, max_len: u64) -> super::Batched {
        let members = self.members;
        let (op, sign) = if self.remove {
            (CollectionOp::SetRemove { members }, -1)
        } else {
            (CollectionOp::SetAdd { members, max_len }, 1)
        };
        collection::write(self.key, op, move |outcome| {
            Ok(Frame::Integer(collection::grown_by(&outcome)? * sign))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched(store.max_value_len()).run(store).await
    }
}
