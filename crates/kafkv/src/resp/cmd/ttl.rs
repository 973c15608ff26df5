//! `TTL key`, `PTTL key`, `EXPIRETIME key`, `PEXPIRETIME key`: local reads
//! (docs/expiry.md), -2 for a missing or expired key and -1 for one without
//! an expiry. The remaining time is counted by this machine's clock, as
//! every plain read judges expiry.

use super::{Args, Frame, Session, Spec};

const fn spec(name: &'static str) -> Spec {
    Spec::read(name, 2, &["readonly", "fast"])
}

pub const SPECS: &[Spec] = &[
    spec("ttl"),
    spec("pttl"),
    spec("expiretime"),
    spec("pexpiretime"),
];

pub struct Ttl {
    key: bytes::Bytes,
    /// In ms rather than seconds.
    ms: bool,
    /// The expiry itself rather than the time left.
    absolute: bool,
}

impl Ttl {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = args.name().to_ascii_lowercase();
        Ok(Self {
            ms: name.starts_with(b"p"),
            absolute: name.ends_with(b"time"),
            key: args.single()?,
        })
    }

    /// In a transaction with `WATCH`: the key as the batch's record found it
    /// (expired keys absent), the time left by this machine's clock.
    pub fn batched(self) -> super::Batched {
        let (ms, absolute) = (self.ms, self.absolute);
        super::Batched::one(self.key, None, move |outcome| {
            let found = outcome.before.map(|state| state.expires_at);
            reply(found, crate::state::now_ms(), ms, absolute)
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        super::with_value(session, &self.key, |found| {
            let found = found.map(|found| found.expires_at);
            reply(found, crate::state::now_ms(), self.ms, self.absolute)
        })
    }
}

/// Redis 7.0's `ttlGenericCommand` for a key that is missing (`None`) or
/// has this expiry (`Some(None)`: none), at `now`: the time left (or the
/// expiry) never below 0, and in seconds rounded to the nearest.
fn reply(found: Option<Option<i64>>, now: i64, ms: bool, absolute: bool) -> Frame {
    let Some(expires_at) = found else {
        return Frame::Integer(-2);
    };
    let Some(at) = expires_at else {
        return Frame::Integer(-1);
    };
    let ttl = if absolute { at } else { at.saturating_sub(now) }.max(0);
    Frame::Integer(if ms { ttl } else { seconds_rounded(ttl) })
}

/// `ms` (not negative) in seconds rounded to the nearest, half up: Redis's
/// `(ttl+500)/1000`, without its overflow near `i64::MAX` (an `EXPIRETIME`
/// of a `PXAT 9223372036854775807`, which redis-server answers with the
/// rounded-up 9223372036854776).
fn seconds_rounded(ms: i64) -> i64 {
    ms / 1000 + i64::from(ms % 1000 >= 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::cmd::expiry::tests::args;

    #[test]
    fn names_choose_the_unit_and_the_base() {
        for (name, ms, absolute) in [
            ("TTL", false, false),
            ("pttl", true, false),
            ("ExpireTime", false, true),
            ("pexpiretime", true, true),
        ] {
            let ttl = Ttl::parse(&mut args(name, &["k"])).ok().unwrap();
            assert_eq!((ttl.ms, ttl.absolute), (ms, absolute), "{name}");
        }
        assert!(Ttl::parse(&mut args("ttl", &["k", "x"])).is_err());
    }

    #[test]
    fn replies_as_redis() {
        let now = 1_000_000;
        let int = Frame::Integer;
        assert_eq!(reply(None, now, false, false), int(-2));
        assert_eq!(reply(None, now, true, true), int(-2));
        assert_eq!(reply(Some(None), now, false, false), int(-1));
        assert_eq!(reply(Some(None), now, true, true), int(-1));
        // TTL rounds to the nearest second.
        assert_eq!(reply(Some(Some(now + 1_499)), now, false, false), int(1));
        assert_eq!(reply(Some(Some(now + 1_500)), now, false, false), int(2));
        assert_eq!(reply(Some(Some(now + 499)), now, false, false), int(0));
        assert_eq!(reply(Some(Some(now + 1_499)), now, true, false), int(1_499));
        // Never below 0 (a key expired but still served: the clock moved).
        assert_eq!(reply(Some(Some(now - 10)), now, true, false), int(0));
        assert_eq!(reply(Some(Some(now - 10)), now, false, false), int(0));
        // EXPIRETIME rounds too; PEXPIRETIME is the expiry itself.
        assert_eq!(
            reply(Some(Some(1_700_000_000_600)), now, false, true),
            int(1_700_000_001)
        );
        assert_eq!(
            reply(Some(Some(1_700_000_000_600)), now, true, true),
            int(1_700_000_000_600)
        );
        // Rounded up at the very end of the range too, as redis-server
        // answers, rather than saturating before the division.
        assert_eq!(
            reply(Some(Some(i64::MAX)), now, false, true),
            int(9_223_372_036_854_776)
        );
        assert_eq!(reply(Some(Some(i64::MAX)), now, true, true), int(i64::MAX));
    }
}
