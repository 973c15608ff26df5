//! `INCR`, `DECR`, `INCRBY`, `DECRBY`: an increment operation record,
//! evaluated where it lands in the log (docs/rmw.md); the reply is the value
//! there.

use super::{Args, Frame, Spec};
use crate::{op::Op, resp::parse::not_an_integer, store::Store};

const fn spec(name: &'static str, arity: i64) -> Spec {
    Spec::write(name, arity, &["write", "denyoom", "fast"])
}

pub const SPECS: &[Spec] = &[
    spec("incr", 2),
    spec("decr", 2),
    spec("incrby", 3),
    spec("decrby", 3),
];

pub struct Incr {
    key: bytes::Bytes,
    by: i64,
}

impl Incr {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = args.name().to_ascii_lowercase();
        let key = args.bytes()?;
        let by = match &name[..] {
            b"incr" => 1,
            b"decr" => -1,
            b"incrby" => args.integer()?,
            _ => {
                let by = args.integer()?;
                by.checked_neg()
                    .ok_or_else(|| Frame::error("ERR decrement would overflow"))?
            }
        };
        args.finish()?;
        Ok(Self { key, by })
    }

    pub fn batched(self) -> super::Batched {
        super::Batched::one(self.key, Some(Op::IncrBy(self.by)), |outcome| {
            let after = outcome.after.map(|state| state.value).unwrap_or_default();
            match crate::op::parse_i64(&after) {
                Some(value) => Frame::Integer(value),
                None => not_an_integer(),
            }
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}
