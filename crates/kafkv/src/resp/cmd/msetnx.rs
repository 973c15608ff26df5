//! `MSETNX key value [key value ...]`: one batch record that sets every key
//! only if none of them exists where it lands in the log; the reply is 1 if
//! it did, 0 if not.

use super::{Args, Frame, Kind, Spec};
use crate::{
    op::{Batch, Condition, Op},
    store::Store,
};

pub const SPECS: &[Spec] = &[Spec {
    name: "msetnx",
    arity: -3,
    flags: &["write", "denyoom"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct MSetNx {
    pairs: Vec<(bytes::Bytes, bytes::Bytes)>,
}

impl MSetNx {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            pairs: args.pairs()?,
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        let batch = Batch {
            conditions: self
                .pairs
                .iter()
                .map(|(key, _)| (key.clone(), Condition::Absent))
                .collect(),
            steps: self
                .pairs
                .into_iter()
                .map(|(key, value)| {
                    let when = Condition::Always;
                    (key, Some(Op::Set { value, when }))
                })
                .collect(),
        };
        match store.apply_batch(batch).await {
            Ok(applied) => Frame::Integer(i64::from(applied.outcome.applied)),
            Err(error) => super::store_error(error),
        }
    }
}
