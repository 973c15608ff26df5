//! `PING [message]`.

use super::{Args, Frame};

pub struct Ping {
    message: Option<bytes::Bytes>,
}

impl Ping {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let message = args.optional();
        args.finish()?;
        Ok(Self { message })
    }

    pub fn apply(self) -> Frame {
        match self.message {
            None => Frame::Simple("PONG".into()),
            Some(message) => Frame::Bulk(message),
        }
    }
}
