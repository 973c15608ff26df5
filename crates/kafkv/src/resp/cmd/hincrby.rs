//! `HINCRBY key field increment`: an operation record; the reply is the
//! field's value where it lands.

use super::{Args, Frame, Kind, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "hincrby",
    arity: 4,
    flags: &["write", "denyoom", "fast"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct HIncrBy {
    key: bytes::Bytes,
    field: bytes::Bytes,
    by: i64,
}

impl HIncrBy {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let field = args.bytes()?;
        let by = args.integer()?;
        args.finish()?;
        Ok(Self { key, field, by })
    }

    pub fn batched(self, max_len: u64) -> super::Batched {
        let field = self.field.clone();
        let op = CollectionOp::HashIncrBy {
            field: self.field,
            by: self.by,
            max_len,
        };
        collection::write(self.key, op, move |outcome| {
            let after = collection::live_after(&outcome);
            let value = match after {
                Some(after) => crate::collection::hash_get(after, &field)?,
                None => None,
            };
            Ok(value
                .as_deref()
                .and_then(crate::op::parse_i64)
                .map_or_else(crate::resp::parse::not_an_integer, Frame::Integer))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched(store.max_value_len()).run(store).await
    }
}
