//! `GETRANGE key start end` (and its old name `SUBSTR`): the bytes of the
//! value from `start` to `end` inclusive; negative offsets count from the
//! end; out-of-range offsets are clamped, as Redis does.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[
    Spec {
        name: "getrange",
        arity: 4,
        flags: &["readonly"],
        kind: Kind::Read,
        before_auth: false,
    },
    Spec {
        name: "substr",
        arity: 4,
        flags: &["readonly"],
        kind: Kind::Read,
        before_auth: false,
    },
];

pub struct GetRange {
    key: bytes::Bytes,
    start: i64,
    end: i64,
}

impl GetRange {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let start = args.integer()?;
        let end = args.integer()?;
        args.finish()?;
        Ok(Self { key, start, end })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        super::with_string(session, &self.key, |found| {
            let value = found.unwrap_or_default();
            Frame::Bulk(range(&value, self.start, self.end))
        })
    }
}

/// Redis's `getrangeCommand` arithmetic.
fn range(value: &bytes::Bytes, start: i64, end: i64) -> bytes::Bytes {
    let len = value.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return bytes::Bytes::new();
    }
    let start = if start < 0 { (len + start).max(0) } else { start };
    let end = if end < 0 { (len + end).max(0) } else { end }.min(len - 1);
    if start > end {
        return bytes::Bytes::new();
    }
    value.slice(start as usize..=end as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_redis() {
        let v = bytes::Bytes::from_static(b"Hello World");
        assert_eq!(range(&v, 0, 4), "Hello");
        assert_eq!(range(&v, -3, -1), "rld");
        assert_eq!(range(&v, 0, -1), "Hello World");
        assert_eq!(range(&v, 10, 100), "d");
        assert_eq!(range(&v, 5, 3), "");
        assert_eq!(range(&v, -1, -5), "");
        assert_eq!(range(&bytes::Bytes::new(), 0, -1), "");
    }
}
