//! `MULTI`, `EXEC`, `DISCARD`: transactions. The handler runs them
//! (`handler.rs`: it keeps the queue, which is connection state of the
//! pipeline, not of the session); these specs declare the names, arities and
//! flags. What reaches `apply` here is `EXEC` or `DISCARD` outside a
//! transaction, answered as Redis answers.

use super::{Args, Frame, Kind, Session, Spec};

const FLAGS: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

pub const SPECS: &[Spec] = &[
    Spec {
        name: "multi",
        arity: 1,
        flags: FLAGS,
        kind: Kind::Session,
        before_auth: false,
    },
    Spec {
        name: "exec",
        arity: 1,
        flags: &["noscript", "loading", "stale", "skip_slowlog"],
        kind: Kind::Session,
        before_auth: false,
    },
    Spec {
        name: "discard",
        arity: 1,
        flags: FLAGS,
        kind: Kind::Session,
        before_auth: false,
    },
];

pub struct Transaction {
    name: &'static str,
}

impl Transaction {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = if args.name().eq_ignore_ascii_case(b"exec") {
            "EXEC"
        } else if args.name().eq_ignore_ascii_case(b"discard") {
            "DISCARD"
        } else {
            "MULTI"
        };
        args.finish()?;
        Ok(Self { name })
    }

    /// `"multi"`, `"exec"` or `"discard"`.
    pub fn verb(&self) -> &'static str {
        match self.name {
            "EXEC" => "exec",
            "DISCARD" => "discard",
            _ => "multi",
        }
    }

    /// Outside a transaction (the handler runs `MULTI` itself).
    pub fn apply(self, _session: &mut Session) -> Frame {
        Frame::error(format!("ERR {} without MULTI", self.name))
    }
}
