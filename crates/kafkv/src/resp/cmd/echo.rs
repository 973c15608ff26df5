//! `ECHO message`.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "echo",
    arity: 2,
    flags: &["fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Echo {
    message: bytes::Bytes,
}

impl Echo {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            message: args.single()?,
        })
    }

    pub fn apply(self, _session: &mut Session) -> Frame {
        Frame::Bulk(self.message)
    }
}
