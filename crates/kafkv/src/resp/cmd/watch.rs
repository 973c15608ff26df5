//! `WATCH key [key ...]` and `UNWATCH`. `WATCH` notes each key's version as
//! this instance holds it now; the next `EXEC` becomes one batch record
//! conditional on all of them being unchanged where it lands in the log
//! (docs/rmw.md), so a write by any instance in between makes it answer nil
//! and write nothing. This instance may not have applied a write that
//! another one acknowledged just before the `WATCH`: the `EXEC` then fails
//! although nothing changed after the `WATCH` — a spurious abort, which
//! optimistic transactions allow, never a lost update.

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
    keys: Vec<bytes::Bytes>,
}

impl Watch {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let unwatch = args.name().eq_ignore_ascii_case(b"unwatch");
        let keys = if unwatch {
            args.finish()?;
            Vec::new()
        } else {
            args.one_or_more()?
        };
        Ok(Self { unwatch, keys })
    }

    pub fn is_unwatch(&self) -> bool {
        self.unwatch
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        if self.unwatch {
            session.watched.clear();
            return Frame::ok();
        }
        for key in self.keys {
            if session.watched.iter().any(|(watched, _)| *watched == key) {
                continue;
            }
            match session.store.get_now(&key) {
                Ok(found) => session.watched.push((key, found.map(|v| v.offset))),
                Err(error) => return super::store_error(error),
            }
        }
        Frame::ok()
    }
}
