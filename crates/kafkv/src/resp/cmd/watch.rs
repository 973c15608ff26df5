//! `WATCH key [key ...]` and `UNWATCH`. kafkv cannot make a transaction
//! conditional on keys yet (that needs conditional writes, which need a
//! protocol that survives compaction), so `WATCH` answers a clear error
//! rather than pretending; `UNWATCH` has nothing to undo.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[
    Spec {
        name: "watch",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        kind: Kind::Session,
        before_auth: false,
    },
    Spec {
        name: "unwatch",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        kind: Kind::Session,
        before_auth: false,
    },
];

pub struct Watch {
    unwatch: bool,
}

impl Watch {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let unwatch = args.name().eq_ignore_ascii_case(b"unwatch");
        if unwatch {
            args.finish()?;
        } else {
            args.one_or_more()?;
        }
        Ok(Self { unwatch })
    }

    pub fn is_unwatch(&self) -> bool {
        self.unwatch
    }

    pub fn apply(self, _session: &mut Session) -> Frame {
        if self.unwatch {
            return Frame::ok();
        }
        Frame::error(
            "ERR WATCH is not supported by kafkv yet: a transaction cannot be made conditional \
             on keys until kafkv has conditional writes. MULTI/EXEC runs without it",
        )
    }
}
