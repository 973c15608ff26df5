//! `LPOP`, `RPOP key [count]`: a pop operation record; the reply is what it
//! removed where it lands.

use super::{Args, Frame, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

const fn spec(name: &'static str) -> Spec {
    Spec::write(name, -2, &["write", "fast"])
}

pub const SPECS: &[Spec] = &[spec("lpop"), spec("rpop")];

pub struct Pop {
    key: bytes::Bytes,
    left: bool,
    /// `None`: one element, answered alone (or nil).
    count: Option<u64>,
}

impl Pop {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let left = args.name().eq_ignore_ascii_case(b"lpop");
        let key = args.bytes()?;
        let count = collection::count(args, false)?;
        Ok(Self { key, left, count })
    }

    pub fn batched(self) -> super::Batched {
        let (left, count) = (self.left, self.count);
        let op = CollectionOp::Pop {
            left,
            count: count.unwrap_or(1),
        };
        collection::write(self.key, op, move |outcome| {
            let before = collection::value(&outcome.before);
            let after = collection::live_after(&outcome).map(|v| &v[..]);
            let mut popped = crate::collection::list_popped(before, after, left)?;
            Ok(match count {
                None => popped.pop().map_or(Frame::Null, Frame::Bulk),
                // Redis: a count on a missing key is a null array.
                Some(_) if before.is_none() => Frame::NullArray,
                Some(_) => collection::bulks(popped),
            })
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}
