//! `FUNCTION FLUSH` and `SCRIPT FLUSH`: kafkv runs no scripts or functions,
//! so there is nothing to flush, and they answer OK (Redis's test suite sends
//! both before every test). Their other subcommands are refused clearly.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[
    Spec {
        name: "function",
        arity: -2,
        flags: &["noscript"],
        kind: Kind::Read,
        before_auth: false,
    },
    Spec {
        name: "script",
        arity: -2,
        flags: &["noscript"],
        kind: Kind::Read,
        before_auth: false,
    },
];

pub struct Scripting {
    reply: Frame,
}

impl Scripting {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let command = String::from_utf8_lossy(args.name()).to_ascii_uppercase();
        let sub = args.subcommand()?;
        if sub.eq_ignore_ascii_case(b"FLUSH") {
            if let Some(mode) = args.optional()
                && !mode.eq_ignore_ascii_case(b"ASYNC")
                && !mode.eq_ignore_ascii_case(b"SYNC")
            {
                return Err(super::super::parse::syntax_error());
            }
            args.finish()?;
            return Ok(Self { reply: Frame::ok() });
        }
        args.rest();
        Ok(Self {
            reply: Frame::error(format!(
                "ERR {command} {} is not supported: kafkv runs no scripts or functions",
                String::from_utf8_lossy(&sub).to_ascii_uppercase()
            )),
        })
    }

    pub fn apply(self, _session: &mut Session) -> Frame {
        self.reply
    }
}
