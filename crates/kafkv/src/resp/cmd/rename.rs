//! `RENAME key newkey` and `RENAMENX key newkey`: one batch record that
//! moves the value (`newkey` takes it, `key` is deleted) where it lands in
//! the log, conditional on `key` existing there (and, for `RENAMENX`, on
//! `newkey` not existing).

use super::{Args, Frame, Kind, Spec};
use crate::{
    op::{Batch, Condition, Op},
    store::Store,
};

pub const SPECS: &[Spec] = &[
    Spec {
        name: "rename",
        arity: 3,
        flags: &["write"],
        kind: Kind::Write,
        before_auth: false,
    },
    Spec {
        name: "renamenx",
        arity: 3,
        flags: &["write", "fast"],
        kind: Kind::Write,
        before_auth: false,
    },
];

pub struct Rename {
    from: bytes::Bytes,
    to: bytes::Bytes,
    nx: bool,
}

impl Rename {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let nx = args.name().eq_ignore_ascii_case(b"renamenx");
        let from = args.bytes()?;
        let to = args.bytes()?;
        args.finish()?;
        Ok(Self { from, to, nx })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        let mut conditions = vec![(self.from.clone(), Condition::Present)];
        let same = self.from == self.to;
        if self.nx {
            // RENAMENX onto itself: the target exists, so nothing happens.
            conditions.push((self.to.clone(), Condition::Absent));
        }
        let steps = if same {
            Vec::new()
        } else {
            vec![
                (
                    self.to.clone(),
                    Some(Op::CopyFrom {
                        source: self.from.clone(),
                        when: Condition::Always,
                    }),
                ),
                (
                    self.from.clone(),
                    Some(Op::Delete {
                        when: Condition::Always,
                    }),
                ),
            ]
        };
        let nx = self.nx;
        match store.apply_batch(Batch { conditions, steps }).await {
            Ok(applied) if applied.outcome.applied => {
                if nx {
                    Frame::Integer(1)
                } else {
                    Frame::ok()
                }
            }
            Ok(applied) => {
                // The first verdict is the source's.
                let source_exists = applied.outcome.steps.first().is_some_and(|v| v.applied);
                if source_exists {
                    Frame::Integer(0)
                } else {
                    Frame::error("ERR no such key")
                }
            }
            Err(error) => super::store_error(error),
        }
    }
}
