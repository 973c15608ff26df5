//! `SET key value [NX|XX] [GET]` and `SETNX key value`. A plain `SET` is a
//! put; `GET` alone is a put that answers what it replaced; `NX`/`XX` are a
//! conditional operation record, decided where it lands in the log
//! (docs/rmw.md). Expiry options are refused by name until kafkv has expiry
//! (`KEEPTTL` is accepted: no key has a time to live to keep); an option is
//! never ignored.

use super::{Args, Frame, Kind, Spec};
use crate::{
    op::{Condition, Op},
    resp::parse::syntax_error,
    store::Store,
};

pub const SPECS: &[Spec] = &[
    Spec {
        name: "set",
        arity: -3,
        flags: &["write", "denyoom"],
        kind: Kind::Write,
        before_auth: false,
    },
    Spec {
        name: "setnx",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        kind: Kind::Write,
        before_auth: false,
    },
];

pub struct Set {
    key: bytes::Bytes,
    value: bytes::Bytes,
    when: Option<Condition>,
    get: bool,
    /// `SETNX`: the reply is 1 or 0.
    setnx: bool,
}

impl Set {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let setnx = args.name().eq_ignore_ascii_case(b"setnx");
        let key = args.bytes()?;
        let value = args.bytes()?;
        let mut set = Self {
            key,
            value,
            when: setnx.then_some(Condition::Absent),
            get: false,
            setnx,
        };
        if setnx {
            args.finish()?;
            return Ok(set);
        }
        while let Some(option) = args.optional() {
            let name = String::from_utf8_lossy(&option).to_ascii_uppercase();
            match name.as_str() {
                "NX" if set.when.is_none() => set.when = Some(Condition::Absent),
                "XX" if set.when.is_none() => set.when = Some(Condition::Present),
                "GET" => set.get = true,
                "KEEPTTL" => {}
                "EX" | "PX" | "EXAT" | "PXAT" => {
                    return Err(Frame::error(format!(
                        "ERR SET option {name} is not supported by kafkv: it needs an expiry, \
                         which kafkv does not have yet"
                    )));
                }
                _ => return Err(syntax_error()),
            }
        }
        Ok(set)
    }

    /// The reply once the write's outcome is known.
    fn reply(&self) -> impl FnOnce(crate::op::Outcome) -> Frame + Send + 'static {
        let (get, setnx) = (self.get, self.setnx);
        move |outcome| {
            if get {
                super::getset::previous(outcome)
            } else if setnx {
                Frame::Integer(i64::from(outcome.applied))
            } else if outcome.applied {
                Frame::ok()
            } else {
                Frame::Null
            }
        }
    }

    pub fn batched(self) -> super::Batched {
        let reply = self.reply();
        let op = Op::Set {
            value: self.value,
            when: self.when.unwrap_or(Condition::Always),
        };
        super::Batched::one(self.key, Some(op), reply)
    }

    pub async fn apply(self, store: &Store) -> Frame {
        let Some(when) = self.when else {
            if self.get {
                return super::op_reply(
                    store.replace(&self.key, Some(self.value)).await,
                    super::getset::previous,
                );
            }
            return match store.put(&self.key, self.value).await {
                Ok(_) => Frame::ok(),
                Err(error) => super::store_error(error),
            };
        };
        let reply = self.reply();
        let op = Op::Set {
            value: self.value,
            when,
        };
        super::op_reply(store.apply_op(&self.key, op).await, reply)
    }
}
