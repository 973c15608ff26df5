//! `SETBIT key offset bit`: set one bit, growing the value as needed; the
//! reply is the bit's old value.

use super::{Args, Frame, Kind, Spec};
use crate::{op::Op, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "setbit",
    arity: 4,
    flags: &["write", "denyoom"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct SetBit {
    key: bytes::Bytes,
    offset: u64,
    bit: bool,
}

impl SetBit {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let offset = args.bytes()?;
        let bit = args.bytes()?;
        args.finish()?;
        // Redis's bound: a bit inside a 512 MB string.
        let offset = crate::op::parse_i64(&offset)
            .and_then(|offset| u64::try_from(offset).ok())
            .filter(|offset| *offset < crate::op::REDIS_MAX_STRING * 8)
            .ok_or_else(|| Frame::error("ERR bit offset is not an integer or out of range"))?;
        let bit = match &bit[..] {
            b"0" => false,
            b"1" => true,
            _ => return Err(Frame::error("ERR bit is not an integer or out of range")),
        };
        Ok(Self { key, offset, bit })
    }

    pub fn batched(self, max_len: u64) -> super::Batched {
        let op = Op::SetBit {
            offset: self.offset,
            bit: self.bit,
            max_len,
        };
        let (byte, mask) = ((self.offset / 8) as usize, 0x80u8 >> (self.offset % 8));
        super::Batched::one(self.key, Some(op), move |outcome| {
            let before = outcome.before.map(|state| state.value).unwrap_or_default();
            let old = before.get(byte).is_some_and(|b| b & mask != 0);
            Frame::Integer(i64::from(old))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched(store.max_value_len()).run(store).await
    }
}
