//! `GET key`.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "get",
    arity: 2,
    flags: &["readonly", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Get {
    key: bytes::Bytes,
}

impl Get {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            key: args.single()?,
        })
    }

    pub fn batched(self) -> super::Batched {
        super::Batched::one(self.key, None, |outcome| {
            super::getset::previous(outcome)
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        super::with_string(session, &self.key, |found| {
            found.map_or(Frame::Null, Frame::Bulk)
        })
    }
}
