//! `INCRBYFLOAT key increment`: a float increment operation record; the
//! reply and the stored value are the sum as Redis prints it.

use super::{Args, Frame, Kind, Spec};
use crate::{op::Op, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "incrbyfloat",
    arity: 3,
    flags: &["write", "denyoom", "fast"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct IncrByFloat {
    key: bytes::Bytes,
    by: f64,
}

impl IncrByFloat {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let by = crate::op::parse_f64(&args.bytes()?)
            .ok_or_else(|| Frame::error("ERR value is not a valid float"))?;
        args.finish()?;
        Ok(Self { key, by })
    }

    pub fn batched(self) -> super::Batched {
        super::Batched::one(self.key, Some(Op::IncrByFloat(self.by)), |outcome| {
            Frame::Bulk(outcome.after.map(|state| state.value).unwrap_or_default())
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}
