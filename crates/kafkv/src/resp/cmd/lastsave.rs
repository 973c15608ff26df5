//! `LASTSAVE`: the Unix time of the last save. Every acknowledged write is
//! already in Kafka, so nothing is ever waiting to be saved and the answer is
//! now (as `INFO persistence` says `rdb_changes_since_last_save:0`).

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "lastsave",
    arity: 1,
    flags: &["loading", "stale", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct LastSave;

impl LastSave {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        args.finish()?;
        Ok(Self)
    }

    pub fn apply(self, _session: &mut Session) -> Frame {
        Frame::Integer(unix_seconds())
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_seconds() -> i64 {
    super::time::since_epoch().as_secs() as i64
}
