//! `QUIT`: answer OK, then close once the reply is written.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "quit",
    arity: -1,
    flags: &["noscript", "loading", "stale", "fast", "no_auth"],
    kind: Kind::Session,
    before_auth: true,
}];

pub struct Quit;

impl Quit {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        // Redis ignores QUIT's arguments.
        args.rest();
        Ok(Self)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        session.quit = true;
        Frame::ok()
    }
}
