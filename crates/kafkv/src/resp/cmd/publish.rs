//! `PUBLISH channel message`: refused. kafkv's channels carry only the
//! keyspace notifications of the store's own changes.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "publish",
    arity: 3,
    flags: &["pubsub", "loading", "stale", "fast"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Publish;

impl Publish {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        args.bytes()?;
        args.bytes()?;
        args.finish()?;
        Ok(Self)
    }

    pub fn apply(self, _session: &mut Session) -> Frame {
        Frame::error(
            "ERR kafkv has no message bus: PUBLISH is not supported. Its channels carry the \
             store's own changes only: SUBSCRIBE __keyspace@0__:<key> or \
             __keyevent@0__:<event> (set, del, incrby, ...; or PSUBSCRIBE a pattern of them)",
        )
    }
}
