//! `COPY source destination [DB 0] [REPLACE]`: one batch record that gives
//! `destination` the value `source` has where it lands in the log, unless
//! `destination` exists there and `REPLACE` was not given. Only database 0
//! exists.

use super::{Args, Frame, Kind, Spec};
use crate::{
    op::{Batch, Condition, Op},
    resp::parse::syntax_error,
    store::Store,
};

pub const SPECS: &[Spec] = &[Spec {
    name: "copy",
    arity: -3,
    flags: &["write", "denyoom"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct Copy {
    from: bytes::Bytes,
    to: bytes::Bytes,
    replace: bool,
}

impl Copy {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let from = args.bytes()?;
        let to = args.bytes()?;
        let mut replace = false;
        while let Some(option) = args.optional() {
            match &option.to_ascii_uppercase()[..] {
                b"REPLACE" => replace = true,
                b"DB" => {
                    let db = args.integer()?;
                    if db != 0 {
                        return Err(Frame::error("ERR DB index is out of range"));
                    }
                }
                _ => return Err(syntax_error()),
            }
        }
        Ok(Self { from, to, replace })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        if self.from == self.to {
            return Frame::error("ERR source and destination objects are the same");
        }
        let mut conditions = vec![(self.from.clone(), Condition::Present)];
        if !self.replace {
            conditions.push((self.to.clone(), Condition::Absent));
        }
        let steps = vec![(
            self.to,
            Some(Op::CopyFrom {
                source: self.from,
                when: Condition::Always,
            }),
        )];
        match store.apply_batch(Batch { conditions, steps }).await {
            Ok(applied) => Frame::Integer(i64::from(applied.outcome.applied)),
            Err(error) => super::store_error(error),
        }
    }
}
