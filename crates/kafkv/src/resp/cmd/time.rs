//! `TIME`: the server's clock as `[seconds, microseconds]`.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "time",
    arity: 1,
    flags: &["loading", "stale", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Time;

impl Time {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        args.finish()?;
        Ok(Self)
    }

    pub fn apply(self, _session: &mut Session) -> Frame {
        let now = since_epoch();
        Frame::Array(vec![
            Frame::bulk(now.as_secs().to_string()),
            Frame::bulk(now.subsec_micros().to_string()),
        ])
    }
}

/// The wall clock as time since the Unix epoch (`TIME`, `LASTSAVE`, `INFO`).
pub fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
