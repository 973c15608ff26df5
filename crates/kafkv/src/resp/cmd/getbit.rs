//! `GETBIT key offset`: the bit at `offset` of the value (bit 0 is the most
//! significant bit of the first byte), 0 past its end or for a missing key.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "getbit",
    arity: 3,
    flags: &["readonly", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

/// Redis's largest bit offset: a value may be at most 512 MB.
const MAX_BIT_OFFSET: i64 = 4 * 1024 * 1024 * 1024 - 1;

pub struct GetBit {
    key: bytes::Bytes,
    offset: u64,
}

impl GetBit {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let offset = args.bytes()?;
        let offset = std::str::from_utf8(&offset)
            .ok()
            .and_then(|offset| offset.parse::<i64>().ok())
            .filter(|offset| (0..=MAX_BIT_OFFSET).contains(offset))
            .ok_or_else(|| Frame::error("ERR bit offset is not an integer or out of range"))?;
        args.finish()?;
        Ok(Self {
            key,
            offset: offset as u64,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        super::with_string(session, &self.key, |found| {
            let value = found.unwrap_or_default();
            Frame::Integer(bit(&value, self.offset).into())
        })
    }
}

fn bit(value: &[u8], offset: u64) -> u8 {
    let byte = usize::try_from(offset / 8).ok().and_then(|i| value.get(i));
    byte.map_or(0, |byte| (byte >> (7 - offset % 8)) & 1)
}

#[cfg(test)]
mod tests {
    use super::bit;

    #[test]
    fn bits_count_from_the_most_significant_bit_of_the_first_byte() {
        // '`' is 0b0110_0000.
        let bits: Vec<u8> = (0..10).map(|i| bit(b"`", i)).collect();
        assert_eq!(bits, [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bit(b"", 0), 0);
        assert_eq!(bit(b"\x01\x80", 7), 1);
        assert_eq!(bit(b"\x01\x80", 8), 1);
    }
}
