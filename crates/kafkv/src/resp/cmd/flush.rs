//! `FLUSHDB [ASYNC|SYNC]` and `FLUSHALL [ASYNC|SYNC]`: a tombstone for every
//! live key this instance sees, answered once every tombstone is
//! acknowledged (`ASYNC` is accepted and waits all the same). Keys another
//! instance wrote and this one has not consumed yet are not deleted; like
//! every write, it is guarded by `--auth-token`.

use futures::StreamExt;

use super::{Args, Frame, Kind, Spec, Store};

/// Tombstones in flight at once.
const IN_FLIGHT: usize = 1024;

pub const SPECS: &[Spec] = &[
    Spec {
        name: "flushdb",
        arity: -1,
        flags: &["write"],
        kind: Kind::Write,
        before_auth: false,
    },
    Spec {
        name: "flushall",
        arity: -1,
        flags: &["write"],
        kind: Kind::Write,
        before_auth: false,
    },
];

pub struct Flush;

impl Flush {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        if let Some(mode) = args.optional()
            && !mode.eq_ignore_ascii_case(b"ASYNC")
            && !mode.eq_ignore_ascii_case(b"SYNC")
        {
            return Err(super::super::parse::syntax_error());
        }
        args.finish()?;
        Ok(Self)
    }

    pub async fn apply(self, store: &Store) -> Frame {
        let keys = match store.keys_with_prefix(b"") {
            Ok(keys) => keys,
            Err(error) => return super::store_error(error),
        };
        let mut deletes = futures::stream::iter(keys)
            .map(|key| async move { store.delete(&key).await })
            .buffer_unordered(IN_FLIGHT);
        while let Some(outcome) = deletes.next().await {
            if let Err(error) = outcome {
                return super::store_error(error);
            }
        }
        Frame::ok()
    }
}
