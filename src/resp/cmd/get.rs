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

    pub fn apply(self, session: &mut Session) -> Frame {
        match session.store.get_now(&self.key) {
            Ok(Some(found)) => Frame::Bulk(found.value),
            Ok(None) => Frame::Null,
            Err(error) => super::store_error(error),
        }
    }
}
