//! `ZCARD key`, `ZSCORE key member`, `ZRANGE key start stop [WITHSCORES]`
//! (by rank; the `BYSCORE`, `BYLEX`, `REV` and `LIMIT` forms are refused
//! with an error saying so): reads of a sorted set.

use bytes::Bytes;

use super::{Args, Frame, Spec, collection};
use crate::collection::{self as coll, CollectionError, Type};

const fn spec(name: &'static str, arity: i64) -> Spec {
    Spec::read(name, arity, &["readonly", "fast"])
}

pub const SPECS: &[Spec] = &[spec("zcard", 2), spec("zscore", 3), spec("zrange", -4)];

enum Query {
    Card,
    Score(Bytes),
    Range {
        start: i64,
        stop: i64,
        with_scores: bool,
    },
}

pub struct ZSetRead {
    key: Bytes,
    query: Query,
}

impl ZSetRead {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let name = args.name().to_ascii_lowercase();
        let key = args.bytes()?;
        let query = match &name[..] {
            b"zcard" => Query::Card,
            b"zscore" => Query::Score(args.bytes()?),
            _ => {
                let start = args.bytes()?;
                let stop = args.bytes()?;
                let mut with_scores = false;
                for option in args.rest() {
                    if option.eq_ignore_ascii_case(b"WITHSCORES") {
                        with_scores = true;
                    } else if [&b"BYSCORE"[..], b"BYLEX", b"REV", b"LIMIT"]
                        .iter()
                        .any(|known| option.eq_ignore_ascii_case(known))
                    {
                        return Err(Frame::error(
                            "ERR kafkv's ZRANGE reads by rank only: ZRANGE key start stop \
                             [WITHSCORES]",
                        ));
                    } else {
                        return Err(crate::resp::parse::syntax_error());
                    }
                }
                // Read after the options, as Redis checks them first.
                use crate::resp::parse::integer;
                Query::Range {
                    start: integer(&start)?,
                    stop: integer(&stop)?,
                    with_scores,
                }
            }
        };
        args.finish()?;
        Ok(Self { key, query })
    }
}

impl collection::Read for ZSetRead {
    const TYPE: Type = Type::ZSet;

    fn key(&self) -> &Bytes {
        &self.key
    }

    fn answer(&self, value: Option<&Bytes>) -> Result<Frame, CollectionError> {
        Ok(match (&self.query, value) {
            (Query::Card, value) => Frame::Integer(coll::len(value.map(|v| &v[..]))? as i64),
            (Query::Score(_), None) => Frame::Null,
            (Query::Score(member), Some(value)) => {
                coll::zset_score(value, member)?.map_or(Frame::Null, Frame::Double)
            }
            (Query::Range { .. }, None) => Frame::Array(Vec::new()),
            (
                Query::Range {
                    start,
                    stop,
                    with_scores,
                },
                Some(value),
            ) => {
                let entries = coll::zset_range(value, *start, *stop)?;
                if *with_scores {
                    super::zpop::scored(entries)
                } else {
                    collection::bulks(entries.into_iter().map(|(member, _)| member).collect())
                }
            }
        })
    }
}
