//! `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]`:
//! an operation record; the reply (members added, or changed with `CH`;
//! the new score with `INCR`) is what it did where it lands.

use super::{Args, Frame, Kind, Spec, collection};
use crate::{collection::CollectionOp, store::Store};

pub const SPECS: &[Spec] = &[Spec {
    name: "zadd",
    arity: -4,
    flags: &["write", "denyoom", "fast"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct ZAdd {
    key: bytes::Bytes,
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
    pairs: Vec<(f64, bytes::Bytes)>,
}

impl ZAdd {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let rest = args.rest();
        // Redis's arity: at least a score and a member.
        if rest.len() < 2 {
            return Err(args.wrong_arity());
        }
        let mut zadd = Self {
            key,
            nx: false,
            xx: false,
            gt: false,
            lt: false,
            ch: false,
            incr: false,
            pairs: Vec::new(),
        };
        let mut at = 0;
        while let Some(arg) = rest.get(at) {
            let flag = match arg.to_ascii_uppercase().as_slice() {
                b"NX" => &mut zadd.nx,
                b"XX" => &mut zadd.xx,
                b"GT" => &mut zadd.gt,
                b"LT" => &mut zadd.lt,
                b"CH" => &mut zadd.ch,
                b"INCR" => &mut zadd.incr,
                _ => break,
            };
            *flag = true;
            at += 1;
        }
        let pairs = &rest[at..];
        if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
            return Err(crate::resp::parse::syntax_error());
        }
        if zadd.nx && zadd.xx {
            return Err(Frame::error(
                "ERR XX and NX options at the same time are not compatible",
            ));
        }
        if [zadd.gt, zadd.lt, zadd.nx].iter().filter(|on| **on).count() > 1 {
            return Err(Frame::error(
                "ERR GT, LT, and/or NX options at the same time are not compatible",
            ));
        }
        if zadd.incr && pairs.len() > 2 {
            return Err(Frame::error(
                "ERR INCR option supports a single increment-element pair",
            ));
        }
        for pair in pairs.chunks_exact(2) {
            let score = crate::op::parse_f64(&pair[0])
                .ok_or_else(|| Frame::error("ERR value is not a valid float"))?;
            zadd.pairs.push((score, pair[1].clone()));
        }
        Ok(zadd)
    }

    pub fn batched(self, max_len: u64) -> super::Batched {
        let (ch, incr) = (self.ch, self.incr);
        let op = CollectionOp::ZAdd {
            nx: self.nx,
            xx: self.xx,
            gt: self.gt,
            lt: self.lt,
            incr,
            pairs: self.pairs,
            max_len,
        };
        let planned = op.clone();
        collection::write(self.key, op, move |outcome| {
            let before = collection::value(&outcome.before).map(|v| &v[..]);
            let reply = planned.zadd_reply(before)?.unwrap_or_default();
            Ok(if incr {
                reply.score.map_or(Frame::Null, Frame::Double)
            } else {
                Frame::Integer(reply.count(ch) as i64)
            })
        })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        self.batched(store.max_value_len()).run(store).await
    }
}
