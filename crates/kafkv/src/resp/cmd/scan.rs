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
    /// `TYPE`: only keys of this type (`None` inside: a type name kafkv
    /// has no keys of, which matches nothing, as in Redis 7.0).
    of_type: Option<Option<crate::collection::Type>>,
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
            of_type: None,
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
                    let name = args.bytes()?.to_ascii_lowercase();
                    let name = std::str::from_utf8(&name).unwrap_or_default();
                    scan.of_type = Some(crate::collection::Type::from_name(name));
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
        let mut matching = Vec::with_capacity(keys.len());
        for key in keys {
            if self.pattern.as_ref().is_some_and(|p| !glob::matches(p, &key)) {
                continue;
            }
            if let Some(wanted) = self.of_type {
                // The page holds keys only: the type is a read of each.
                match session.store.get_now(&key) {
                    Ok(Some(found)) if Some(found.ty) == wanted => {}
                    Ok(_) => continue,
                    Err(error) => return super::store_error(error),
                }
            }
            matching.push(Frame::Bulk(key));
        }
        let keys = matching;
        Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(keys)])
    }
}
