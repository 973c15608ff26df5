//! `HSET key field value [field value ...]`, `HMSET` (the same, answering
//! OK) and `HDEL key field [field ...]`: an operation record; `HSET` answers
//! how many fields it created, `HDEL` how many it removed, where it lands.

use super::{Args, Frame, Spec, collection};
use crate::{collection::CollectionOp, store::Store};


pub const SPECS: &[Spec] = &[
    Spec::write("hset", -4, &["write", "denyoom", "fast"]),
    Spec::write("hmset", -4, &["write", "denyoom", "fast"]),
    Spec::write("hdel", -3, &["write", "fast"]),
];

enum Action {
    Set(Vec<(bytes::Bytes, bytes::Bytes)>),
    /// `HMSET`: answers OK.
    MSet(Vec<(bytes::Bytes, bytes::Bytes)>),
    Delete(Vec<bytes::Bytes>),
}

pub struct HSet {
    key: bytes::Bytes,
    action: Action,
}

impl HSet {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = args.name().to_ascii_lowercase();
        let key = args.bytes()?;
        if name == b"hdel" {
            let fields = args.one_or_more()?;
            return Ok(Self {
                key,
                action: Action::Delete(fields),
            });
        }
        let pairs = args.pairs()?;
        let action = if name == b"hmset" {
            Action::MSet(pairs)
        } else {
            Action::Set(pairs)
        };
        Ok(Self { key, action })
    }

    pub fn batched(self, max_len: u64) -> super::Batched {
        let (op, reply): (_, fn(i64) -> Frame) = match self.action {
            Action::Set(pairs) => (CollectionOp::HashSet { pairs, max_len }, Frame::Integer),
            Action::MSet(pairs) => (CollectionOp::HashSet { pairs, max_len }, |_| Frame::ok()),
            Action::Delete(fields) => (CollectionOp::HashDelete { fields }, |n| {
                Frame::Integer(-n)
            }),
        };
        collection::write(self.key, op, move |outcome| {
            Ok(reply(collection::grown_by(&outcome)?))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched(store.max_value_len()).run(store).await
    }
}
