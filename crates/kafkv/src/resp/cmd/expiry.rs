//! What the expiry commands share: Redis 7.0's parsing of `SET`'s and
//! `GETEX`'s options and of expire times, with its exact error texts
//! (docs/expiry.md, "Surfaces").
//!
//! The front end checks only what Redis checks before touching the key; the
//! local clock enters only those checks (Redis's overflow test after adding
//! its own clock) and the replies of local reads. Whether a key is expired,
//! and when a relative time ends, is decided at the record's timestamp
//! (`op.rs`), so every instance agrees.

use bytes::Bytes;

use super::{Args, Frame};
use crate::{
    op::{Deadline, parse_i64},
    resp::parse::{not_an_integer, syntax_error},
};

/// Redis's `addReplyErrorExpireTime`, naming the command as sent.
pub(super) fn invalid_expire_time(command: &str) -> Frame {
    Frame::error(format!("ERR invalid expire time in '{command}' command"))
}

/// `SET`'s and `GETEX`'s time options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeOption {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl TimeOption {
    const NAMES: [(&'static str, TimeOption); 4] = [
        ("EX", TimeOption::Ex),
        ("PX", TimeOption::Px),
        ("EXAT", TimeOption::ExAt),
        ("PXAT", TimeOption::PxAt),
    ];

    fn in_seconds(self) -> bool {
        matches!(self, TimeOption::Ex | TimeOption::ExAt)
    }

    fn is_relative(self) -> bool {
        matches!(self, TimeOption::Ex | TimeOption::Px)
    }
}

/// The options of `SET` (`set`) or `GETEX` (not `set`), as Redis 7.0's
/// `parseExtendedStringArgumentsOrReply` takes them. The time's argument is
/// kept as sent: Redis checks it only after the options, and `GETEX` only
/// once it found the key.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct StringOptions {
    pub nx: bool,
    pub xx: bool,
    pub get: bool,
    pub keep_ttl: bool,
    pub persist: bool,
    pub time: Option<(TimeOption, Bytes)>,
}

/// Parses the rest of `args` as `SET` or `GETEX` options. Redis accepts an
/// option twice (`NX NX`, `EX 1 EX 2`: the last time wins) and answers a
/// syntax error for anything else: an unknown word, a conflict (`NX XX`,
/// `EX … PX …`, `KEEPTTL` with a time, `PERSIST` with a time) or a time
/// option without its argument.
pub(super) fn string_options(args: &mut Args, set: bool) -> Result<StringOptions, Frame> {
    let mut options = StringOptions::default();
    while let Some(option) = args.optional() {
        let is = |name: &str| option.eq_ignore_ascii_case(name.as_bytes());
        let time = options.time.as_ref().map(|(time, _)| *time);
        let time_option = TimeOption::NAMES
            .into_iter()
            .find(|(name, _)| is(name))
            .map(|(_, time)| time)
            .filter(|new| {
                !options.keep_ttl
                    && !options.persist
                    && time.is_none_or(|time| time == *new)
                    && args.remaining() > 0
            });
        if set && is("NX") && !options.xx {
            options.nx = true;
        } else if set && is("XX") && !options.nx {
            options.xx = true;
        } else if set && is("GET") {
            options.get = true;
        } else if set && is("KEEPTTL") && time.is_none() {
            options.keep_ttl = true;
        } else if !set && is("PERSIST") && time.is_none() {
            options.persist = true;
        } else if let Some(time_option) = time_option {
            let argument = args.bytes()?;
            options.time = Some((time_option, argument));
        } else {
            return Err(syntax_error());
        }
    }
    Ok(options)
}

/// The deadline a `SET`/`SETEX`/`PSETEX`/`GETEX` time means, checked as
/// Redis 7.0's `getExpireMillisecondsOrReply` checks it: an integer, above
/// 0, within range once in ms and, for a relative time, once added to this
/// machine's clock (`now`). A relative time stays relative: the record's
/// timestamp resolves it.
pub(super) fn string_deadline(
    option: TimeOption,
    argument: &[u8],
    command: &str,
    now: i64,
) -> Result<Deadline, Frame> {
    let number = parse_i64(argument).ok_or_else(not_an_integer)?;
    let ms = Some(number)
        .filter(|number| *number > 0)
        .and_then(|number| match option.in_seconds() {
            true => number.checked_mul(1000),
            false => Some(number),
        })
        .ok_or_else(|| invalid_expire_time(command))?;
    deadline(ms, option.is_relative(), command, now)
}

/// The deadline `EXPIRE` (`seconds`, relative), `PEXPIRE`, `EXPIREAT` or
/// `PEXPIREAT` means, checked as Redis 7.0's `expireGenericCommand`
/// checks it: any integer (a time at or before now deletes the key), but
/// within range once in ms and, when relative, once added to this
/// machine's clock (`now`; Redis's `LLONG_MAX - basetime` test).
pub(super) fn expire_deadline(
    argument: &[u8],
    seconds: bool,
    relative: bool,
    command: &str,
    now: i64,
) -> Result<Deadline, Frame> {
    let number = parse_i64(argument).ok_or_else(not_an_integer)?;
    let ms = match seconds {
        true => number.checked_mul(1000),
        false => Some(number),
    }
    .ok_or_else(|| invalid_expire_time(command))?;
    deadline(ms, relative, command, now)
}

/// `ms` as a deadline: a relative one must stay in range once added to this
/// machine's clock (Redis's `LLONG_MAX - basetime` test), and stays
/// relative: the record's timestamp resolves it.
fn deadline(ms: i64, relative: bool, command: &str, now: i64) -> Result<Deadline, Frame> {
    if !relative {
        return Ok(Deadline::At(ms));
    }
    now.checked_add(ms)
        .ok_or_else(|| invalid_expire_time(command))?;
    Ok(Deadline::In(ms))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `Args` over `parts`, as a request named `name` would give them.
    pub fn args(name: &str, parts: &[&str]) -> Args {
        let rest: Vec<Bytes> = parts
            .iter()
            .map(|part| Bytes::from(part.to_string()))
            .collect();
        Args::new(Bytes::from(name.to_string()), rest.into_iter())
    }

    fn set_options(parts: &[&str]) -> Result<StringOptions, Frame> {
        string_options(&mut args("set", parts), true)
    }

    fn getex_options(parts: &[&str]) -> Result<StringOptions, Frame> {
        string_options(&mut args("getex", parts), false)
    }

    fn time(option: TimeOption, argument: &str) -> Option<(TimeOption, Bytes)> {
        Some((option, Bytes::from(argument.to_string())))
    }

    #[test]
    fn set_options_as_redis_accepts_them() {
        let options = set_options(&["nx", "GET", "px", "100"]).unwrap();
        assert!(options.nx && options.get && !options.xx);
        assert_eq!(options.time, time(TimeOption::Px, "100"));
        // Repeats are accepted; the last time wins.
        let options = set_options(&["NX", "NX", "EX", "1", "ex", "2"]).unwrap();
        assert!(options.nx);
        assert_eq!(options.time, time(TimeOption::Ex, "2"));
        let options = set_options(&["XX", "KEEPTTL", "KEEPTTL"]).unwrap();
        assert!(options.xx && options.keep_ttl);
        assert_eq!(
            set_options(&["EXAT", "x"]).unwrap().time,
            time(TimeOption::ExAt, "x")
        );
        assert_eq!(set_options(&[]).unwrap(), StringOptions::default());
    }

    #[test]
    fn set_option_conflicts_are_syntax_errors() {
        for bad in [
            &["NX", "XX"][..],
            &["XX", "NX"],
            &["EX", "1", "PX", "1"],
            &["PX", "1", "EXAT", "1"],
            &["EXAT", "1", "PXAT", "1"],
            &["KEEPTTL", "EX", "1"],
            &["EX", "1", "KEEPTTL"],
            &["EX"],
            &["PERSIST"],
            &["EXPIRE", "1"],
            &["NXX"],
        ] {
            assert_eq!(set_options(bad), Err(syntax_error()), "{bad:?}");
        }
    }

    #[test]
    fn getex_options_as_redis_accepts_them() {
        assert!(getex_options(&["persist"]).unwrap().persist);
        assert_eq!(
            getex_options(&["PXAT", "5"]).unwrap().time,
            time(TimeOption::PxAt, "5")
        );
        for bad in [
            &["PERSIST", "EX", "1"][..],
            &["EX", "1", "PERSIST"],
            &["NX"],
            &["GET"],
            &["KEEPTTL"],
            &["PX"],
        ] {
            assert_eq!(getex_options(bad), Err(syntax_error()), "{bad:?}");
        }
    }

    #[test]
    fn string_deadlines_as_redis_checks_them() {
        let now = 1_700_000_000_000;
        let deadline =
            |option, argument: &str| string_deadline(option, argument.as_bytes(), "set", now);
        assert_eq!(deadline(TimeOption::Ex, "10"), Ok(Deadline::In(10_000)));
        assert_eq!(deadline(TimeOption::Px, "10"), Ok(Deadline::In(10)));
        assert_eq!(deadline(TimeOption::ExAt, "10"), Ok(Deadline::At(10_000)));
        assert_eq!(deadline(TimeOption::PxAt, "10"), Ok(Deadline::At(10)));
        let invalid = Err(invalid_expire_time("set"));
        assert_eq!(
            invalid,
            Err(Frame::error("ERR invalid expire time in 'set' command"))
        );
        for option in [
            TimeOption::Ex,
            TimeOption::Px,
            TimeOption::ExAt,
            TimeOption::PxAt,
        ] {
            assert_eq!(deadline(option, "0"), invalid, "{option:?}");
            assert_eq!(deadline(option, "-1"), invalid, "{option:?}");
            assert_eq!(deadline(option, "1x"), Err(not_an_integer()), "{option:?}");
            assert_eq!(deadline(option, "+1"), Err(not_an_integer()), "{option:?}");
            assert_eq!(deadline(option, "01"), Err(not_an_integer()), "{option:?}");
        }
        // Seconds that overflow once in ms.
        let most_seconds = (i64::MAX / 1000).to_string();
        let too_many_seconds = (i64::MAX / 1000 + 1).to_string();
        assert_eq!(deadline(TimeOption::ExAt, &too_many_seconds), invalid);
        assert_eq!(
            deadline(TimeOption::ExAt, &most_seconds),
            Ok(Deadline::At(i64::MAX / 1000 * 1000))
        );
        // A relative time that overflows once added to the clock.
        assert_eq!(deadline(TimeOption::Ex, &most_seconds), invalid);
        assert_eq!(deadline(TimeOption::Px, &i64::MAX.to_string()), invalid);
        assert_eq!(
            deadline(TimeOption::Px, &(i64::MAX - now).to_string()),
            Ok(Deadline::In(i64::MAX - now))
        );
        assert_eq!(
            deadline(TimeOption::PxAt, &i64::MAX.to_string()),
            Ok(Deadline::At(i64::MAX))
        );
    }

    #[test]
    fn expire_deadlines_as_redis_checks_them() {
        let now = 1_700_000_000_000;
        let invalid = Err(invalid_expire_time("expire"));
        let deadline = |argument: &str, seconds, relative| {
            expire_deadline(argument.as_bytes(), seconds, relative, "expire", now)
        };
        assert_eq!(deadline("10", true, true), Ok(Deadline::In(10_000)));
        // Zero and negative times are accepted: they delete the key.
        assert_eq!(deadline("0", true, true), Ok(Deadline::In(0)));
        assert_eq!(deadline("-5", false, true), Ok(Deadline::In(-5)));
        assert_eq!(deadline("-5", true, false), Ok(Deadline::At(-5_000)));
        assert_eq!(deadline("x", true, true), Err(not_an_integer()));
        assert_eq!(
            deadline(&(i64::MAX / 1000 + 1).to_string(), true, false),
            invalid
        );
        assert_eq!(
            deadline(&(i64::MIN / 1000 - 1).to_string(), true, false),
            invalid
        );
        assert_eq!(
            deadline(&(i64::MIN / 1000).to_string(), true, true),
            Ok(Deadline::In(i64::MIN / 1000 * 1000))
        );
        assert_eq!(deadline(&i64::MAX.to_string(), false, true), invalid);
        assert_eq!(
            deadline(&(i64::MAX - now).to_string(), false, true),
            Ok(Deadline::In(i64::MAX - now))
        );
        assert_eq!(
            deadline(&i64::MAX.to_string(), false, false),
            Ok(Deadline::At(i64::MAX))
        );
    }
}
