//! `KEYS pattern`: every key matching a glob pattern, found with a prefix
//! scan over the pattern's literal start. Like Redis's, it visits every
//! candidate key at once; `SCAN` is the incremental form.

use super::{Args, Frame, Kind, Session, Spec};
use crate::resp::glob;

pub const SPECS: &[Spec] = &[Spec {
    name: "keys",
    arity: 2,
    flags: &["readonly"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Keys {
    pattern: bytes::Bytes,
}

impl Keys {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        Ok(Self {
            pattern: args.single()?,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let prefix = glob::literal_prefix(&self.pattern);
        match session.store.keys_with_prefix(&prefix) {
            Ok(keys) => Frame::Array(
                keys.into_iter()
                    .filter(|key| glob::matches(&self.pattern, key))
                    .map(Frame::Bulk)
                    .collect(),
            ),
            Err(error) => super::store_error(error),
        }
    }
}
