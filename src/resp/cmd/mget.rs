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
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            keys: args.one_or_more()?,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let mut values = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            match session.store.get_now(key) {
                Ok(found) => values.push(found.map_or(Frame::Null, |f| Frame::Bulk(f.value))),
                Err(error) => return super::store_error(error),
            }
        }
        Frame::Array(values)
    }
}
