//! `SELECT index`: kafkv has one database, 0.

use super::{Args, Frame};

pub struct Select {
    index: i64,
}

impl Select {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let index = args.integer()?;
        args.finish()?;
        Ok(Self { index })
    }

    pub fn apply(self) -> Frame {
        if self.index == 0 {
            Frame::ok()
        } else {
            Frame::error("ERR DB index is out of range (kafkv has one database, 0)")
        }
    }
}
