//! `SETEX key seconds value` and `PSETEX key milliseconds value`: Redis's
//! `SET key value EX|PX time`, a put carrying its time to live, which every
//! instance resolves against the record's timestamp (docs/expiry.md).

use super::{Args, Frame, Spec, expiry};
use crate::{
    op::{Condition, Deadline, Op, SetExpiry},
    store::Store,
};

const fn spec(name: &'static str) -> Spec {
    Spec::write(name, 4, &["write", "denyoom"])
}

pub const SPECS: &[Spec] = &[spec("setex"), spec("psetex")];

pub struct SetEx {
    key: bytes::Bytes,
    value: bytes::Bytes,
    /// Relative, positive.
    deadline: Deadline,
}

impl SetEx {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let psetex = args.name().eq_ignore_ascii_case(b"psetex");
        let key = args.bytes()?;
        let time = args.bytes()?;
        let value = args.bytes()?;
        args.finish()?;
        let (option, command) = match psetex {
            true => (expiry::TimeOption::Px, "psetex"),
            false => (expiry::TimeOption::Ex, "setex"),
        };
        let deadline = expiry::string_deadline(option, &time, command, crate::state::now_ms())?;
        Ok(Self {
            key,
            value,
            deadline,
        })
    }

    pub fn batched(self) -> super::Batched {
        let op = Op::SetEx {
            value: self.value,
            when: Condition::Always,
            expiry: SetExpiry::Until(self.deadline),
        };
        super::Batched::one(self.key, Some(op), |_| Frame::ok())
    }

    pub async fn apply(self, store: &Store) -> Frame {
        match store
            .put_expiring_acked(&self.key, self.value, self.deadline)
            .await
        {
            Ok(_) => Frame::ok(),
            Err(error) => super::store_error(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{cmd::expiry::tests::args, parse::not_an_integer};

    fn parse(name: &str, parts: &[&str]) -> Result<SetEx, Frame> {
        SetEx::parse(&mut args(name, parts))
    }

    #[test]
    fn times_are_relative_in_the_named_unit() {
        let setex = parse("SETEX", &["k", "10", "v"]).ok().unwrap();
        assert_eq!(setex.deadline, Deadline::In(10_000));
        assert_eq!(&setex.value[..], b"v");
        let psetex = parse("psetex", &["k", "10", "v"]).ok().unwrap();
        assert_eq!(psetex.deadline, Deadline::In(10));
    }

    #[test]
    fn errors_name_the_command() {
        fn error(name: &str, parts: &[&str]) -> Frame {
            parse(name, parts).err().unwrap()
        }
        for (name, time) in [("setex", "0"), ("setex", "-1"), ("psetex", "0")] {
            assert_eq!(
                error(name, &["k", time, "v"]),
                Frame::error(format!("ERR invalid expire time in '{name}' command"))
            );
        }
        assert_eq!(error("setex", &["k", "x", "v"]), not_an_integer());
        assert_eq!(
            error("setex", &["k", "1"]),
            Frame::error("ERR wrong number of arguments for 'setex' command")
        );
        // The arity is checked first: a refusal before running.
        assert_eq!(
            error("psetex", &["k", "0", "v", "extra"]),
            Frame::error("ERR wrong number of arguments for 'psetex' command")
        );
    }
}
