//! `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
//!
//! The cursor is stateless: a place in the view a key keeps while it is live
//! (see `View::scan_from`), so any key present for a whole iteration is
//! returned at least once, whatever is written meanwhile. It is meaningful
//! only to the kafkv instance that issued it.

use super::{Args, Frame, Kind, Session, Spec};
use crate::resp::glob;
use crate::resp::parse::{not_an_integer, syntax_error};

pub const SPECS: &[Spec] = &[Spec {
    name: "scan",
    arity: -2,
    flags: &["readonly"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Scan {
    cursor: u64,
    pattern: Option<bytes::Bytes>,
    count: usize,
    strings_only: Option<bool>,
}

impl Scan {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let cursor = args.bytes()?;
        let cursor = std::str::from_utf8(&cursor)
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Frame::error("ERR invalid cursor"))?;
        let mut scan = Self {
            cursor,
            pattern: None,
            count: 10,
            strings_only: None,
        };
        while let Some(option) = args.optional() {
            match option.to_ascii_uppercase().as_slice() {
                b"MATCH" => scan.pattern = Some(args.bytes()?),
                b"COUNT" => {
                    let count = args.integer()?;
                    if count < 1 {
                        return Err(syntax_error());
                    }
                    scan.count = usize::try_from(count).map_err(|_| not_an_integer())?;
                }
                b"TYPE" => {
                    scan.strings_only = Some(args.bytes()?.eq_ignore_ascii_case(b"string"));
                }
                _ => return Err(syntax_error()),
            }
        }
        Ok(scan)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let (keys, next) = match session.store.scan_from(self.cursor, self.count) {
            Ok(page) => page,
            Err(error) => return super::store_error(error),
        };
        let keys = keys
            .into_iter()
            .filter(|_| self.strings_only.unwrap_or(true))
            .filter(|key| self.pattern.as_ref().is_none_or(|p| glob::matches(p, key)))
            .map(Frame::Bulk)
            .collect();
        Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(keys)])
    }
}
