//! `ECHO message`.

use super::{Args, Frame};

pub struct Echo {
    message: bytes::Bytes,
}

impl Echo {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            message: args.single()?,
        })
    }

    pub fn apply(self) -> Frame {
        Frame::Bulk(self.message)
    }
}
