//! `LPUSH`, `RPUSH`, `LPUSHX`, `RPUSHX key element [element ...]`: a push
//! operation record; the reply is the list's length where it lands.

use super::{Args, Frame, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

const fn spec(name: &'static str) -> Spec {
    Spec::write(name, -3, &["write", "denyoom", "fast"])
}

pub const SPECS: &[Spec] = &[
    spec("lpush"),
    spec("rpush"),
    spec("lpushx"),
    spec("rpushx"),
];

pub struct Push {
    key: bytes::Bytes,
    values: Vec<bytes::Bytes>,
    left: bool,
    only_if_exists: bool,
}

impl Push {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = args.name().to_ascii_lowercase();
        let key = args.bytes()?;
        let values = args.one_or_more()?;
        Ok(Self {
            key,
            values,
            left: name.starts_with(b"l"),
            only_if_exists: name.ends_with(b"x"),
        })
    }

    pub fn batched(self, max_len: u64) -> super::Batched {
        let op = CollectionOp::Push {
            left: self.left,
            values: self.values,
            only_if_exists: self.only_if_exists,
            max_len,
        };
        collection::write(self.key, op, |outcome| {
            let after = collection::live_after(&outcome).map(|v| &v[..]);
            Ok(Frame::Integer(crate::collection::len(after)? as i64))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched(store.max_value_len()).run(store).await
    }
}
