//! `MGET key [key ...]`.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "mget",
    arity: -2,
    flags: &["readonly", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct MGet {
    keys: Vec<bytes::Bytes>,
}

impl MGet {
    pub fn batched(self) -> super::Batched {
        super::Batched {
            steps: self.keys.into_iter().map(|key| (key, None)).collect(),
            reply: Box::new(|outcomes| {
                Frame::Array(
                    outcomes
                        .into_iter()
                        .map(|o| match o.before {
                            Some(state) if state.is_string() => Frame::Bulk(state.value),
                            _ => Frame::Null,
                        })
                        .collect(),
                )
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
            Ok(found) => Frame::Array(
                found
                    .into_iter()
                    // A key of another type is nil, as in Redis.
                    .map(|v| match v {
                        Some(f) if f.is_string() => Frame::Bulk(f.value),
                        _ => Frame::Null,
                    })
                    .collect(),
            ),
            Err(reply) => reply,
        }
    }
}
