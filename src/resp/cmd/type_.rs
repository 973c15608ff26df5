//! `TYPE key`: every kafkv value is a string.

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
        match session.store.get_now(&self.key) {
            Ok(Some(_)) => Frame::Simple("string".into()),
            Ok(None) => Frame::Simple("none".into()),
            Err(error) => super::store_error(error),
        }
    }
}
