//! `EXISTS key [key ...]`: how many of the keys exist (repeats count again).
//! `TOUCH` answers the same: kafkv keeps no access times to update.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[
    Spec {
        name: "exists",
        arity: -2,
        flags: &["readonly", "fast"],
        kind: Kind::Read,
        before_auth: false,
    },
    Spec {
        name: "touch",
        arity: -2,
        flags: &["readonly", "fast"],
        kind: Kind::Read,
        before_auth: false,
    },
];

pub struct Exists {
    keys: Vec<bytes::Bytes>,
}

impl Exists {
    pub fn batched(self) -> super::Batched {
        super::Batched {
            steps: self.keys.into_iter().map(|key| (key, None)).collect(),
            reply: Box::new(|outcomes| {
                Frame::Integer(outcomes.iter().filter(|o| o.before.is_some()).count() as i64)
            }),
        }
    }

    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            keys: args.one_or_more()?,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        match super::values(session, &self.keys) {
            Ok(found) => Frame::Integer(found.iter().filter(|v| v.is_some()).count() as i64),
            Err(reply) => reply,
        }
    }
}
