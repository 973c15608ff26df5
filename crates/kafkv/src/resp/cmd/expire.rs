//! `EXPIRE key seconds [NX|XX|GT|LT]`, `PEXPIRE key ms [...]`, `EXPIREAT
//! key unix-seconds [...]`, `PEXPIREAT key unix-ms [...]`: an operation
//! record that sets the live key's expiry where it lands in the log, when
//! the condition holds there (docs/expiry.md). A time at or before the
//! record's deletes the key. The reply is 1 if it did either, else 0.

use super::{Args, Frame, Spec, expiry};
use crate::{
    op::{Deadline, ExpireWhen, Op},
    store::Store,
};

const fn spec(name: &'static str) -> Spec {
    Spec::write(name, -3, &["write", "fast"])
}

pub const SPECS: &[Spec] = &[
    spec("expire"),
    spec("pexpire"),
    spec("expireat"),
    spec("pexpireat"),
];

pub struct Expire {
    key: bytes::Bytes,
    deadline: Deadline,
    when: ExpireWhen,
}

impl Expire {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = String::from_utf8_lossy(args.name()).to_ascii_lowercase();
        let (seconds, relative) = match name.as_str() {
            "expire" => (true, true),
            "pexpire" => (false, true),
            "expireat" => (true, false),
            _ => (false, false),
        };
        let key = args.bytes()?;
        let time = args.bytes()?;
        // Redis checks the options before the time.
        let when = condition(&args.rest())?;
        let deadline =
            expiry::expire_deadline(&time, seconds, relative, &name, crate::state::now_ms())?;
        Ok(Self {
            key,
            deadline,
            when,
        })
    }

    pub fn batched(self) -> super::Batched {
        let op = Op::Expire {
            deadline: self.deadline,
            when: self.when,
        };
        super::Batched::one(self.key, Some(op), |outcome| {
            Frame::Integer(i64::from(outcome.applied))
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched().run(store).await
    }
}

/// The condition `options` ask for, with Redis 7.0's errors
/// (`parseExtendedExpireArgumentsOrReply`): a repeated option is accepted,
/// `XX` goes with `GT` or `LT`, and `NX` with none of them.
fn condition(options: &[bytes::Bytes]) -> Result<ExpireWhen, Frame> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                // As Redis's addReplyErrorFormat: no line break may reach
                // the error line.
                let option = String::from_utf8_lossy(option).replace(['\r', '\n'], " ");
                return Err(Frame::error(format!("ERR Unsupported option {option}")));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Frame::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(Frame::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(match (nx, xx, gt, lt) {
        (true, ..) => ExpireWhen::Nx,
        (_, true, true, _) => ExpireWhen::XxGt,
        (_, true, _, true) => ExpireWhen::XxLt,
        (_, true, ..) => ExpireWhen::Xx,
        (_, _, true, _) => ExpireWhen::Gt,
        (.., true) => ExpireWhen::Lt,
        _ => ExpireWhen::Always,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{cmd::expiry::tests::args, parse::not_an_integer};

    fn parse(name: &str, parts: &[&str]) -> Result<Expire, Frame> {
        Expire::parse(&mut args(name, parts))
    }

    fn when(options: &[&str]) -> Result<ExpireWhen, Frame> {
        let mut parts = vec!["k", "10"];
        parts.extend(options);
        parse("expire", &parts).map(|expire| expire.when)
    }

    #[test]
    fn each_name_has_its_unit_and_base() {
        let deadline = |name| parse(name, &["k", "-3"]).ok().unwrap().deadline;
        assert_eq!(deadline("EXPIRE"), Deadline::In(-3_000));
        assert_eq!(deadline("pexpire"), Deadline::In(-3));
        assert_eq!(deadline("expireat"), Deadline::At(-3_000));
        assert_eq!(deadline("PExpireAt"), Deadline::At(-3));
    }

    #[test]
    fn conditions_as_redis_7_allows_them() {
        assert_eq!(when(&[]), Ok(ExpireWhen::Always));
        assert_eq!(when(&["nx"]), Ok(ExpireWhen::Nx));
        assert_eq!(when(&["NX", "NX"]), Ok(ExpireWhen::Nx));
        assert_eq!(when(&["XX"]), Ok(ExpireWhen::Xx));
        assert_eq!(when(&["GT"]), Ok(ExpireWhen::Gt));
        assert_eq!(when(&["lt"]), Ok(ExpireWhen::Lt));
        assert_eq!(when(&["XX", "GT"]), Ok(ExpireWhen::XxGt));
        assert_eq!(when(&["gt", "xx"]), Ok(ExpireWhen::XxGt));
        assert_eq!(when(&["LT", "XX"]), Ok(ExpireWhen::XxLt));
        let nx = Err(Frame::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
        for options in [
            &["NX", "XX"][..],
            &["NX", "GT"],
            &["LT", "NX"],
            &["NX", "GT", "LT"],
        ] {
            assert_eq!(when(options), nx, "{options:?}");
        }
        let gt_lt = Err(Frame::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
        assert_eq!(when(&["GT", "LT"]), gt_lt);
        assert_eq!(when(&["XX", "LT", "GT"]), gt_lt);
        assert_eq!(
            when(&["xx", "Foo"]),
            Err(Frame::error("ERR Unsupported option Foo"))
        );
        assert_eq!(
            when(&["a\r\nb"]),
            Err(Frame::error("ERR Unsupported option a  b"))
        );
    }

    #[test]
    fn errors_in_redis_order() {
        fn error(name: &str, parts: &[&str]) -> Frame {
            parse(name, parts).err().unwrap()
        }
        // Options first, then the time.
        assert_eq!(
            error("expire", &["k", "x", "bad"]),
            Frame::error("ERR Unsupported option bad")
        );
        assert_eq!(error("expire", &["k", "x"]), not_an_integer());
        assert_eq!(
            error("expire", &["k", &i64::MAX.to_string()]),
            Frame::error("ERR invalid expire time in 'expire' command")
        );
        assert_eq!(
            error("PEXPIRE", &["k", &i64::MAX.to_string()]),
            Frame::error("ERR invalid expire time in 'pexpire' command")
        );
        assert_eq!(
            error("expireat", &["k", &(i64::MAX / 1000 + 1).to_string()]),
            Frame::error("ERR invalid expire time in 'expireat' command")
        );
        assert!(parse("pexpireat", &["k", &i64::MAX.to_string()]).is_ok());
        assert_eq!(
            error("expire", &["k"]),
            Frame::error("ERR wrong number of arguments for 'expire' command")
        );
    }
}
