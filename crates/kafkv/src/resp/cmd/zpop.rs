//! `ZPOPMIN`, `ZPOPMAX key [count]`: an operation record; the reply is the
//! members and scores it removed where it lands, as a flat array.

use super::{Args, Frame, Kind, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

const fn spec(name: &'static str) -> Spec {
    Spec {
        name,
        arity: -2,
        flags: &["write", "fast"],
        kind: Kind::Write,
        before_auth: false,
    }
}

pub const SPECS: &[Spec] = &[spec("zpopmin"), spec("zpopmax")];

pub struct ZPop {
    key: bytes::Bytes,
    max: bool,
    count: u64,
}

impl ZPop {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let max = args.name().eq_ignore_ascii_case(b"zpopmax");
        let key = args.bytes()?;
        let count = collection::count(args)?.unwrap_or(1);
        Ok(Self { key, max, count })
    }

    pub fn batched(self) -> super::Batched {
        let max = self.max;
        let op = CollectionOp::ZPop {
            max,
            count: self.count,
        };
        collection::write(self.key, op, move |outcome| {
            let before = collection::value(&outcome.before);
            let after = collection::live_after(&outcome).map(|v| &v[..]);
            let popped = crate::collection::zset_popped(before, after, max)?;
            Ok(scored(popped))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}

/// Members and scores as one flat array, `member score member score …`.
pub(super) fn scored(entries: Vec<(bytes::Bytes, f64)>) -> Frame {
    Frame::Array(
        entries
            .into_iter()
            .flat_map(|(member, score)| {
                [
                    Frame::Bulk(member),
                    Frame::bulk(crate::collection::format_score(score)),
                ]
            })
            .collect(),
    )
}
