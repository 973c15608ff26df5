//! `TYPE key`: every kafkv value is a string.

use super::{Args, Frame, Session};

pub struct Type {
    key: bytes::Bytes,
}

impl Type {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            key: args.single()?,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        match session.store.get_now(&self.key) {
            Ok(Some(_)) => Frame::Simple("string".into()),
            Ok(None) => Frame::Simple("none".into()),
            Err(error) => super::store_error(error),
        }
    }
}
