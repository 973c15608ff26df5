//! `RANDOMKEY`: a live key picked at random, nil when there is none.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "randomkey",
    arity: 1,
    flags: &["readonly"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct RandomKey;

impl RandomKey {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        args.finish()?;
        Ok(Self)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        match session.store.random_key() {
            Ok(key) => key.map_or(Frame::Null, Frame::Bulk),
            Err(error) => super::store_error(error),
        }
    }
}
