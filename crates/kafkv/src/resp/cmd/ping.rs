//! `PING [message]`.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "ping",
    arity: -1,
    flags: &["fast", "sentinel"],
    kind: Kind::Read,
    // As Redis: with a token set, PING before AUTH answers NOAUTH.
    before_auth: false,
}];

pub struct Ping {
    message: Option<bytes::Bytes>,
}

impl Ping {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let message = args.optional();
        args.finish()?;
        Ok(Self { message })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        if session.in_subscribe_mode() {
            // Redis's subscribe-mode PING: a pong message, not a status.
            return Frame::Array(vec![
                Frame::bulk("pong"),
                Frame::Bulk(self.message.unwrap_or_default()),
            ]);
        }
        match self.message {
            None => Frame::Simple("PONG".into()),
            Some(message) => Frame::Bulk(message),
        }
    }
}
