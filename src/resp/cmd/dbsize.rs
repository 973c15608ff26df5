//! `DBSIZE`: the number of live keys.

use super::{Args, Frame, Session};

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
