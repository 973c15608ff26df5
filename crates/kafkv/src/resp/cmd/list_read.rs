//! `LLEN key`, `LRANGE key start stop`, `LINDEX key index`: reads of a list.

use bytes::Bytes;

use super::{Args, Frame, Spec, collection};
use crate::collection::{self as coll, CollectionError, Type};

const fn spec(name: &'static str, arity: i64) -> Spec {
    Spec::read(name, arity, &["readonly", "fast"])
}

pub const SPECS: &[Spec] = &[spec("llen", 2), spec("lrange", 4), spec("lindex", 3)];

enum Query {
    Len,
    Range(i64, i64),
    Index(i64),
}

pub struct ListRead {
    key: Bytes,
    query: Query,
}

impl ListRead {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = args.name().to_ascii_lowercase();
        let key = args.bytes()?;
        let query = match &name[..] {
            b"llen" => Query::Len,
            b"lrange" => Query::Range(args.integer()?, args.integer()?),
            _ => Query::Index(args.integer()?),
        };
        args.finish()?;
        Ok(Self { key, query })
    }
}

impl collection::Read for ListRead {
    const TYPE: Type = Type::List;

    fn key(&self) -> &Bytes {
        &self.key
    }

    fn answer(&self, value: Option<&Bytes>) -> Result<Frame, CollectionError> {
        Ok(match (&self.query, value) {
            (Query::Len, value) => Frame::Integer(coll::len(value.map(|v| &v[..]))? as i64),
            (Query::Range(..), None) => Frame::Array(Vec::new()),
            (Query::Range(start, stop), Some(value)) => {
                collection::bulks(coll::list_range(value, *start, *stop)?)
            }
            (Query::Index(_), None) => Frame::Null,
            (Query::Index(index), Some(value)) => {
                coll::list_index(value, *index)?.map_or(Frame::Null, Frame::Bulk)
            }
        })
    }
}
