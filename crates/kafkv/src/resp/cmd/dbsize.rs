//! `DBSIZE`: the number of live keys.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "dbsize",
    arity: 1,
    flags: &["readonly", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct DbSize;

impl DbSize {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        args.finish()?;
        Ok(Self)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        Frame::Integer(session.store.len() as i64)
    }
}
