//! `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`: the value, and with an
//! option its expiry changed by an operation record (docs/expiry.md),
//! replying the value the key had where the record landed (an `EXAT`/`PXAT`
//! already past there deletes it, as in Redis).
//!
//! Without an option it is a plain read, and runs as one (after the writes
//! before it in a pipeline, see `Command::kind`), although Redis files it
//! as a write.

use super::{Args, Frame, Kind, Spec, expiry};
use crate::{
    op::{Deadline, ExpireWhen, Op},
    store::Store,
};

pub const SPECS: &[Spec] = &[Spec {
    name: "getex",
    arity: -2,
    flags: &["write", "fast"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct GetEx {
    key: bytes::Bytes,
    action: Action,
}

enum Action {
    /// No option: the value.
    Read,
    /// The time was refused. Redis checks it only once it found the key, so
    /// a missing key still answers nil and only a present one this error.
    Refused(Frame),
    Expire(Deadline),
    Persist,
}

impl GetEx {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let options = expiry::string_options(args, false)?;
        let action = match &options.time {
            Some((option, argument)) => {
                match expiry::string_deadline(*option, argument, "getex", crate::state::now_ms()) {
                    Ok(deadline) => Action::Expire(deadline),
                    Err(error) => Action::Refused(error),
                }
            }
            None if options.persist => Action::Persist,
            None => Action::Read,
        };
        Ok(Self { key, action })
    }

    /// Whether it writes a record; if not, it runs as a read.
    pub fn writes(&self) -> bool {
        matches!(self.action, Action::Expire(_) | Action::Persist)
    }

    pub fn batched(self) -> super::Batched {
        match self.action {
            Action::Read => super::Batched::one(self.key, None, super::getset::previous),
            Action::Refused(error) => {
                super::Batched::one(self.key, None, move |outcome| match outcome.before {
                    Some(_) => error,
                    None => Frame::Null,
                })
            }
            Action::Expire(deadline) => {
                let op = Op::Expire {
                    deadline,
                    when: ExpireWhen::Always,
                };
                super::Batched::one(self.key, Some(op), super::getset::previous)
            }
            Action::Persist => {
                super::Batched::one(self.key, Some(Op::Persist), super::getset::previous)
            }
        }
    }

    pub async fn apply(self, store: &Store) -> Frame {
        match self.action {
            Action::Read => match store.get_now(&self.key) {
                Ok(None) => Frame::Null,
                Ok(Some(found)) if found.is_string() => {
                    Frame::Bulk(found.value)
                }
                Ok(Some(_)) => super::wrong_type(),
                Err(error) => super::store_error(error),
            },
            Action::Refused(error) => match store.get_now(&self.key) {
                Ok(Some(_)) => error,
                Ok(None) => Frame::Null,
                Err(error) => super::store_error(error),
            },
            Action::Expire(_) | Action::Persist => {
                // GETEX is a string command: on a collection Redis answers
                // WRONGTYPE and changes nothing. This view's type is the
                // check (the expiry record cannot test the type); a
                // collection written meanwhile elsewhere gets the expiry
                // and the reply WRONGTYPE.
                match store.get_now(&self.key) {
                    Ok(Some(found)) if !found.is_string() => {
                        super::wrong_type()
                    }
                    Err(error) => super::store_error(error),
                    Ok(_) => self.batched().run(store).await,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{cmd::expiry::tests::args, parse::syntax_error};

    fn parse(parts: &[&str]) -> Result<GetEx, Frame> {
        GetEx::parse(&mut args("getex", parts))
    }

    #[test]
    fn options_become_an_action() {
        assert!(matches!(parse(&["k"]).ok().unwrap().action, Action::Read));
        assert!(matches!(
            parse(&["k", "persist"]).ok().unwrap().action,
            Action::Persist
        ));
        assert!(matches!(
            parse(&["k", "EX", "2"]).ok().unwrap().action,
            Action::Expire(Deadline::In(2_000))
        ));
        assert!(matches!(
            parse(&["k", "PXAT", "7"]).ok().unwrap().action,
            Action::Expire(Deadline::At(7))
        ));
        assert!(!parse(&["k"]).ok().unwrap().writes());
        assert!(parse(&["k", "PX", "1"]).ok().unwrap().writes());
    }

    #[test]
    fn a_refused_time_waits_for_the_key() {
        let Action::Refused(error) = parse(&["k", "EX", "0"]).ok().unwrap().action else {
            panic!("not refused");
        };
        assert_eq!(
            error,
            Frame::error("ERR invalid expire time in 'getex' command")
        );
        let getex = parse(&["k", "PX", "x"]).ok().unwrap();
        assert!(matches!(getex.action, Action::Refused(_)) && !getex.writes());
    }

    #[test]
    fn option_errors_are_syntax_errors() {
        for bad in [
            &["k", "EX", "1", "PERSIST"][..],
            &["k", "KEEPTTL"],
            &["k", "EX"],
            &["k", "EX", "1", "PX", "1"],
        ] {
            assert_eq!(parse(bad).err(), Some(syntax_error()), "{bad:?}");
        }
        assert_eq!(
            parse(&[]).err(),
            Some(Frame::error(
                "ERR wrong number of arguments for 'getex' command"
            ))
        );
    }
}
