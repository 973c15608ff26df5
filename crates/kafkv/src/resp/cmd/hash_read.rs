//! `HGET`, `HMGET`, `HEXISTS`, `HLEN`, `HGETALL`, `HKEYS`, `HVALS`: reads
//! of a hash.

use bytes::Bytes;

use super::{Args, Frame, Spec, collection};
use crate::collection::{self as coll, CollectionError, Type};

const fn spec(name: &'static str, arity: i64) -> Spec {
    Spec::read(name, arity, &["readonly", "fast"])
}

pub const SPECS: &[Spec] = &[
    spec("hget", 3),
    spec("hmget", -3),
    spec("hexists", 3),
    spec("hlen", 2),
    spec("hgetall", 2),
    spec("hkeys", 2),
    spec("hvals", 2),
];

enum Query {
    Get(Bytes),
    MGet(Vec<Bytes>),
    Exists(Bytes),
    Len,
    GetAll,
    Keys,
    Vals,
}

pub struct HashRead {
    key: Bytes,
    query: Query,
}

impl HashRead {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = args.name().to_ascii_lowercase();
        let key = args.bytes()?;
        let query = match &name[..] {
            b"hget" => Query::Get(args.bytes()?),
            b"hmget" => Query::MGet(args.one_or_more()?),
            b"hexists" => Query::Exists(args.bytes()?),
            b"hlen" => Query::Len,
            b"hgetall" => Query::GetAll,
            b"hkeys" => Query::Keys,
            _ => Query::Vals,
        };
        args.finish()?;
        Ok(Self { key, query })
    }
}

impl collection::Read for HashRead {
    const TYPE: Type = Type::Hash;

    fn key(&self) -> &Bytes {
        &self.key
    }

    fn answer(&self, value: Option<&Bytes>) -> Result<Frame, CollectionError> {
        let get = |field: &Bytes| -> Result<Frame, CollectionError> {
            Ok(match value {
                Some(value) => coll::hash_get(value, field)?.map_or(Frame::Null, Frame::Bulk),
                None => Frame::Null,
            })
        };
        Ok(match &self.query {
            Query::Get(field) => get(field)?,
            Query::MGet(fields) => {
                Frame::Array(fields.iter().map(get).collect::<Result<_, _>>()?)
            }
            Query::Exists(field) => {
                Frame::Integer(matches!(get(field)?, Frame::Bulk(_)).into())
            }
            Query::Len => Frame::Integer(coll::len(value.map(|v| &v[..]))? as i64),
            Query::GetAll => Frame::Map(match value {
                Some(value) => coll::hash_pairs(value)?
                    .into_iter()
                    .map(|(field, value)| (Frame::Bulk(field), Frame::Bulk(value)))
                    .collect(),
                None => Vec::new(),
            }),
            Query::Keys => collection::bulks(match value {
                Some(value) => coll::hash_fields(value)?,
                None => Vec::new(),
            }),
            Query::Vals => collection::bulks(match value {
                Some(value) => coll::hash_values(value)?,
                None => Vec::new(),
            }),
        })
    }
}
