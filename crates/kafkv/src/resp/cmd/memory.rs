//! `MEMORY USAGE key [SAMPLES count]`: about how many bytes of memory the key
//! takes (what `redis-cli --memkeys` asks), nil for a missing key.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "memory",
    arity: -2,
    flags: &["readonly"],
    kind: Kind::Read,
    before_auth: false,
}];

/// What the memory table keeps per key beyond the key and value bytes
/// (slot, hash and order indexes: about 45 bytes, docs/design.md "Memory"),
/// rounded up to the allocator's granularity.
const ENTRY_OVERHEAD_BYTES: i64 = 48;

pub struct Memory {
    key: bytes::Bytes,
}

impl Memory {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let sub = args.subcommand()?;
        if !sub.eq_ignore_ascii_case(b"USAGE") {
            return Err(Frame::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. kafkv has \
                 MEMORY USAGE only.",
                String::from_utf8_lossy(&sub)
            )));
        }
        let key = args.bytes()?;
        // SAMPLES is for nested types; a string is measured whole. Parsed
        // as Redis does: repeatable, a count required, none negative.
        while let Some(option) = args.optional() {
            if !option.eq_ignore_ascii_case(b"SAMPLES") || args.remaining() == 0 {
                return Err(crate::resp::parse::syntax_error());
            }
            if args.integer()? < 0 {
                return Err(crate::resp::parse::syntax_error());
            }
        }
        Ok(Self { key })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let key_len = self.key.len() as i64;
        super::with_value(session, &self.key, |found| {
            found.map_or(Frame::Null, |found| {
                Frame::Integer(key_len + found.value.len() as i64 + ENTRY_OVERHEAD_BYTES)
            })
        })
    }
}
