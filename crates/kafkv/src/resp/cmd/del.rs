//! `DEL key [key ...]` and `UNLINK`: a tombstone per key, all in flight at
//! once; the reply counts the keys that existed here before.

use futures::future::join_all;

use super::{Args, Frame, Kind, Spec};
use crate::store::Store;

/// `UNLINK` is `DEL` here: there is no memory to free in the background.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "del",
        arity: -2,
        flags: &["write"],
        kind: Kind::Write,
        before_auth: false,
    },
    Spec {
        name: "unlink",
        arity: -2,
        flags: &["write", "fast"],
        kind: Kind::Write,
        before_auth: false,
    },
];

pub struct Del {
    keys: Vec<bytes::Bytes>,
}

impl Del {
    pub fn batched(self) -> super::Batched {
        use crate::op::{Condition, Op};
        let when = Condition::Always;
        super::Batched {
            steps: self
                .keys
                .into_iter()
                .map(|key| (key, Some(Op::Delete { when })))
                .collect(),
            // Keys that existed at the batch's point, each counted once.
            reply: Box::new(|outcomes| {
                Frame::Integer(outcomes.iter().filter(|o| o.before.is_some()).count() as i64)
            }),
        }
    }

    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            keys: args.one_or_more()?,
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        let mut existed = 0;
        let unique: std::collections::BTreeSet<&bytes::Bytes> = self.keys.iter().collect();
        for key in &unique {
            if let Err(error) = store.validate(key, None) {
                return super::store_error(error);
            }
            match store.get_now(key) {
                Ok(found) => existed += i64::from(found.is_some()),
                Err(error) => return super::store_error(error),
            }
        }
        // A tombstone even for keys not seen here: another instance may have
        // written one that this instance has not consumed yet.
        let deletes = unique.iter().map(|key| store.delete(key));
        for outcome in join_all(deletes).await {
            if let Err(error) = outcome {
                return super::store_error(error);
            }
        }
        Frame::Integer(existed)
    }
}
