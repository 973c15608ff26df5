//! `SCARD key`, `SISMEMBER key member`, `SMEMBERS key`: reads of a set.

use bytes::Bytes;

use super::{Args, Frame, Spec, collection};
use crate::collection::{self as coll, CollectionError, Type};

const fn spec(name: &'static str, arity: i64) -> Spec {
    Spec::read(name, arity, &["readonly", "fast"])
}

pub const SPECS: &[Spec] = &[
    spec("scard", 2),
    spec("sismember", 3),
    spec("smembers", 2),
];

enum Query {
    Card,
    IsMember(Bytes),
    Members,
}

pub struct SetRead {
    key: Bytes,
    query: Query,
}

impl SetRead {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = args.name().to_ascii_lowercase();
        let key = args.bytes()?;
        let query = match &name[..] {
            b"scard" => Query::Card,
            b"sismember" => Query::IsMember(args.bytes()?),
            _ => Query::Members,
        };
        args.finish()?;
        Ok(Self { key, query })
    }
}

impl collection::Read for SetRead {
    const TYPE: Type = Type::Set;

    fn key(&self) -> &Bytes {
        &self.key
    }

    fn answer(&self, value: Option<&Bytes>) -> Result<Frame, CollectionError> {
        Ok(match (&self.query, value) {
            (Query::Card, value) => Frame::Integer(coll::len(value.map(|v| &v[..]))? as i64),
            (Query::IsMember(_), None) => Frame::Integer(0),
            (Query::IsMember(member), Some(value)) => {
                Frame::Integer(coll::set_contains(value, member)?.into())
            }
            (Query::Members, None) => Frame::Set(Vec::new()),
            (Query::Members, Some(value)) => Frame::Set(
                coll::set_members(value)?
                    .into_iter()
                    .map(Frame::Bulk)
                    .collect(),
            ),
        })
    }
}
