//! `TYPE key`: `string`, `list`, `set`, `hash`, `zset` or `none`.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "type",
    arity: 2,
    flags: &["readonly", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Type {
    key: bytes::Bytes,
}

impl Type {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            key: args.single()?,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        super::with_value(session, &self.key, |found| {
            Frame::Simple(found.map_or("none", |found| found.ty.name()).into())
        })
    }
}
