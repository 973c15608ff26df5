//! `SELECT index`: kafkv has one database, 0.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "select",
    arity: 2,
    flags: &["loading", "stale", "fast"],
    kind: Kind::Session,
    before_auth: false,
}];

pub struct Select {
    index: i64,
}

impl Select {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let index = args.integer()?;
        args.finish()?;
        Ok(Self { index })
    }

    pub fn apply(self, _session: &mut Session) -> Frame {
        if self.index == 0 {
            Frame::ok()
        } else {
            Frame::error("ERR DB index is out of range (kafkv has one database, 0)")
        }
    }
}
