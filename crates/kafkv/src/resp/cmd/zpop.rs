//! `ZPOPMIN`, `ZPOPMAX key [count]`: an operation record; the reply is the
//! members and scores it removed where it lands, as a flat array.

use super::{Args, Frame, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

const fn spec(name: &'static str) -> Spec {
    Spec::write(name, -2, &["write", "fast"])
}

pub const SPECS: &[Spec] = &[spec("zpopmin"), spec("zpopmax")];

pub struct ZPop {
    key: bytes::Bytes,
    max: bool,
    /// `None`: one entry, answered as a flat `[member, score]`.
    count: Option<u64>,
}

impl ZPop {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let max = args.name().eq_ignore_ascii_case(b"zpopmax");
        let key = args.bytes()?;
        let count = collection::count(args, true)?;
        Ok(Self { key, max, count })
    }

    pub fn batched(self) -> super::Batched {
        let (max, count) = (self.max, self.count);
        let op = CollectionOp::ZPop {
            max,
            count: count.unwrap_or(1),
        };
        collection::write(self.key, op, move |outcome| {
            let before = collection::value(&outcome.before);
            let after = collection::live_after(&outcome).map(|v| &v[..]);
            let popped = crate::collection::zset_popped(before, after, max)?;
            Ok(match count {
                // Redis 7: flat without a count, pairs (nested in RESP3)
                // with one.
                None => Frame::Array(
                    popped
                        .into_iter()
                        .flat_map(|(member, score)| [Frame::Bulk(member), Frame::Double(score)])
                        .collect(),
                ),
                Some(_) => scored(popped),
            })
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}

/// Members with their scores: `member score …` in RESP2, `[member,
/// score]` pairs in RESP3.
pub(super) fn scored(entries: Vec<(bytes::Bytes, f64)>) -> Frame {
    Frame::Pairs(
        entries
            .into_iter()
            .map(|(member, score)| (Frame::Bulk(member), Frame::Double(score)))
            .collect(),
    )
}
