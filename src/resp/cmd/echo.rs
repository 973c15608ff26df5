//! `ECHO message`.

use super::{Args, Frame};

pub struct Echo {
    message: bytes::Bytes,
}

impl Echo {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let message = args.bytes()?;
        args.finish()?;
        Ok(Self { message })
    }

    pub fn apply(self) -> Frame {
        Frame::Bulk(self.message)
    }
}
