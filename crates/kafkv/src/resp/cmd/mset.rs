//! `MSET key value [key value ...]`: every record is produced before any
//! acknowledgement is awaited, so it costs one round trip, not one per key.
//! Unlike Redis's, it is not atomic: each key is its own record, and if the
//! broker fails part-way some keys may be written and others not (the reply
//! is then an error).

use futures::future::join_all;

use super::{Args, Frame, Kind, Spec};
use crate::store::Store;

pub const SPECS: &[Spec] = &[Spec {
    name: "mset",
    arity: -3,
    flags: &["write", "denyoom"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct MSet {
    pairs: Vec<(bytes::Bytes, bytes::Bytes)>,
}

impl MSet {
    pub fn batched(self) -> super::Batched {
        use crate::op::{Condition, Op};
        super::Batched {
            steps: self
                .pairs
                .into_iter()
                .map(|(key, value)| {
                    let op = Op::Set {
                        value,
                        when: Condition::Always,
                    };
                    (key, Some(op))
                })
                .collect(),
            reply: Box::new(|_| Frame::ok()),
        }
    }

    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            pairs: args.pairs()?,
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        // Refuse the whole command before producing anything if one pair is bad.
        for (key, value) in &self.pairs {
            if let Err(error) = store.validate(key, Some(value)) {
                return super::store_error(error);
            }
        }
        let writes = self
            .pairs
            .into_iter()
            .map(|(key, value)| async move { store.put(&key, value).await });
        for outcome in join_all(writes).await {
            if let Err(error) = outcome {
                return super::store_error(error);
            }
        }
        Frame::ok()
    }
}
