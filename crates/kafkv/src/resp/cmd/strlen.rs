//! `STRLEN key`: the value's length, 0 for a missing key.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "strlen",
    arity: 2,
    flags: &["readonly", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Strlen {
    key: bytes::Bytes,
}

impl Strlen {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            key: args.single()?,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        super::with_string(session, &self.key, |found| {
            Frame::Integer(found.map_or(0, |value| value.len() as i64))
        })
    }
}
