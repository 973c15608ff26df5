//! `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]` and
//! `SETNX key value` (docs/expiry.md for the records each form writes).
//!
//! - A plain `SET` is a put, which clears any expiry and overwrites a
//!   collection, as in Redis.
//! - A plain `SET` with `EX`/`PX`/`EXAT`/`PXAT` is a put carrying its
//!   expiry, self-contained like any put. An `EXAT`/`PXAT` already past by
//!   this machine's clock is written as a delete: Redis deletes the key too.
//! - `NX`/`XX`, `KEEPTTL`, and `GET` are a conditional operation
//!   record, decided where it lands in the log (docs/rmw.md): the condition,
//!   the kept expiry and the replaced value all depend on the key's state
//!   there, expired keys counting as absent. `GET` on a collection answers
//!   WRONGTYPE and writes nothing.

use super::{Args, Frame, Kind, Spec, expiry};
use crate::{
    op::{Condition, Deadline, Op, SetExpiry},
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
    /// `None`: no expiry option (the put clears any expiry).
    expiry: Option<SetExpiry>,
}

impl Set {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let setnx = args.name().eq_ignore_ascii_case(b"setnx");
        let key = args.bytes()?;
        let value = args.bytes()?;
        if setnx {
            args.finish()?;
            return Ok(Self {
                key,
                value,
                when: Some(Condition::Absent),
                get: false,
                setnx,
                expiry: None,
            });
        }
        // Redis checks every option before the time's argument.
        let options = expiry::string_options(args, true)?;
        let expiry = match &options.time {
            Some((option, argument)) => Some(SetExpiry::Until(expiry::string_deadline(
                *option,
                argument,
                "set",
                crate::state::now_ms(),
            )?)),
            None => options.keep_ttl.then_some(SetExpiry::Keep),
        };
        let when = if options.nx {
            Some(Condition::Absent)
        } else if options.xx {
            Some(Condition::Present)
        } else {
            None
        };
        Ok(Self {
            key,
            value,
            when,
            get: options.get,
            setnx,
            expiry,
        })
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

    /// The operation record this `SET` is when it is one (and its form in a
    /// batch): a past `EXAT`/`PXAT` deletes where it is evaluated.
    fn op(self) -> (bytes::Bytes, Op) {
        let when = match (self.when, self.get) {
            (None, false) => Condition::Always,
            // GET answers the old string: on a collection it is WRONGTYPE
            // and writes nothing (NX already does not write over one).
            (None, true) => Condition::StringOrAbsent,
            (Some(Condition::Present), true) => Condition::PresentString,
            (Some(when), _) => when,
        };
        let op = match self.expiry {
            None => Op::Set {
                value: self.value,
                when,
            },
            Some(expiry) => Op::SetEx {
                value: self.value,
                when,
                expiry,
            },
        };
        (self.key, op)
    }

    pub fn batched(self) -> super::Batched {
        let reply = self.reply();
        let (key, op) = self.op();
        super::Batched::one(key, Some(op), reply)
    }

    pub async fn apply(self, store: &Store) -> Frame {
        let written = match (self.when, self.expiry, self.get) {
            (None, None, false) => store.put(&self.key, self.value).await.map(drop),
            (None, Some(SetExpiry::Until(Deadline::At(at))), false)
                if at <= crate::state::now_ms() =>
            {
                store.delete(&self.key).await.map(drop)
            }
            (None, Some(SetExpiry::Until(deadline)), false) => store
                .put_expiring_acked(&self.key, self.value, deadline)
                .await
                .map(drop),
            // A condition, KEEPTTL, or GET with a time needs the key's
            // state where the record lands (GET: its live value there).
            _ => {
                let reply = self.reply();
                let (key, op) = self.op();
                return super::op_reply(store.apply_op(&key, op).await, reply);
            }
        };
        match written {
            Ok(()) => Frame::ok(),
            Err(error) => super::store_error(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{cmd::expiry::tests::args, parse::syntax_error};

    fn parse(parts: &[&str]) -> Result<Set, Frame> {
        Set::parse(&mut args(
            "set",
            &["k", "v"].iter().chain(parts).copied().collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn options_become_a_condition_and_an_expiry() {
        let set = parse(&[]).ok().unwrap();
        assert_eq!((set.when, set.expiry, set.get), (None, None, false));
        let set = parse(&["NX", "EX", "10"]).ok().unwrap();
        assert_eq!(set.when, Some(Condition::Absent));
        assert_eq!(set.expiry, Some(SetExpiry::Until(Deadline::In(10_000))));
        let set = parse(&["xx", "get", "keepttl"]).ok().unwrap();
        assert_eq!(set.when, Some(Condition::Present));
        assert_eq!(set.expiry, Some(SetExpiry::Keep));
        assert!(set.get);
        let set = parse(&["PXAT", "12345"]).ok().unwrap();
        assert_eq!(set.expiry, Some(SetExpiry::Until(Deadline::At(12345))));
        let set = parse(&["EXAT", "12"]).ok().unwrap();
        assert_eq!(set.expiry, Some(SetExpiry::Until(Deadline::At(12_000))));
    }

    #[test]
    fn errors_as_redis_answers_them() {
        let error = |parts: &[&str]| parse(parts).err().unwrap();
        let invalid = Frame::error("ERR invalid expire time in 'set' command");
        assert_eq!(error(&["EX", "0"]), invalid);
        assert_eq!(error(&["PX", "-1"]), invalid);
        assert_eq!(error(&["EX", &(i64::MAX / 1000 + 1).to_string()]), invalid);
        assert_eq!(error(&["EX", "ten"]), crate::resp::parse::not_an_integer());
        assert_eq!(error(&["EX", "1", "PX", "1"]), syntax_error());
        assert_eq!(error(&["KEEPTTL", "PX", "1"]), syntax_error());
        assert_eq!(error(&["NX", "XX"]), syntax_error());
        // Options are checked before the time's argument.
        assert_eq!(error(&["EX", "0", "NX", "XX"]), syntax_error());
        assert_eq!(error(&["EX", "0", "XX", "GET"]), invalid);
    }

    #[test]
    fn setnx_takes_no_options() {
        let mut setnx = args("setnx", &["k", "v", "EX", "1"]);
        assert!(Set::parse(&mut setnx).is_err());
        let set = Set::parse(&mut args("SETNX", &["k", "v"])).ok().unwrap();
        assert_eq!(set.when, Some(Condition::Absent));
        assert!(set.setnx);
    }
}
