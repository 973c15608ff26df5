//! `TOUCH key [key ...]`: how many of the keys exist (kafkv keeps no access
//! times to update).

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "touch",
    arity: -2,
    flags: &["readonly", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Touch {
    keys: Vec<bytes::Bytes>,
}

impl Touch {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            keys: args.one_or_more()?,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        match super::values(session, &self.keys) {
            Ok(found) => Frame::Integer(found.iter().filter(|f| f.is_some()).count() as i64),
            Err(reply) => reply,
        }
    }
}
