//! What the list, set, hash and sorted-set commands share: reading a key as
//! one collection type (WRONGTYPE for any other), their argument forms, and
//! running a [`CollectionOp`] as an operation record (docs/rmw.md), whose
//! reply is derived from the key's state before and after it.

use bytes::Bytes;

use super::{Args, Batched, Frame, Session, wrong_type};
use crate::{
    collection::{CollectionError, CollectionOp, Type},
    op::{KeyState, Op, Outcome},
};

/// The reply to a collection whose stored value does not decode.
pub(super) fn error(error: CollectionError) -> Frame {
    match error {
        CollectionError::WrongType => wrong_type(),
        other => Frame::error(format!("ERR {other}")),
    }
}

/// The value of `state` when it holds `ty`; WRONGTYPE for another type.
fn of_type(state: Option<(Type, Bytes)>, ty: Type) -> Result<Option<Bytes>, Frame> {
    match state {
        None => Ok(None),
        Some((found, value)) if found == ty => Ok(Some(value)),
        Some(_) => Err(wrong_type()),
    }
}

/// A read of `key` as a collection of type `ty`: `answer` turns its value
/// (`None`: absent) into the reply, as this view holds it or, in a batch,
/// as the batch's record found it.
pub(super) trait Read: Sized + Send + 'static {
    const TYPE: Type;

    fn key(&self) -> &Bytes;

    fn answer(&self, value: Option<&Bytes>) -> Result<Frame, CollectionError>;

    fn reply(self, state: Option<(Type, Bytes)>) -> Frame {
        match of_type(state, Self::TYPE) {
            Ok(value) => self.answer(value.as_ref()).unwrap_or_else(error),
            Err(reply) => reply,
        }
    }

    fn apply(self, session: &mut Session) -> Frame {
        match session.store.get_now(self.key()) {
            Ok(found) => self.reply(found.map(|found| (found.ty, found.value))),
            Err(error) => super::store_error(error),
        }
    }

    fn batched(self) -> Batched {
        let key = self.key().clone();
        Batched::one(key, None, move |outcome| {
            self.reply(outcome.before.map(|state| (state.ty, state.value)))
        })
    }
}

/// The value of an operation's state, which evaluation already checked to
/// be of the operation's type.
pub(super) fn value(state: &Option<KeyState>) -> Option<&Bytes> {
    state.as_ref().map(|state| &state.value)
}

/// The value an operation left, as its reply counts it: an expired key the
/// operation found absent and left alone (until its SWEEP) counts as
/// absent. A collection operation on an absent key never leaves an
/// expiry (it keeps the live key's), so an expiring state after one that
/// found none is that untouched expired key.
pub(super) fn live_after(outcome: &Outcome) -> Option<&Bytes> {
    match (&outcome.before, &outcome.after) {
        (None, Some(after)) if after.expires_at.is_some() => None,
        (_, after) => value(after),
    }
}

/// `op` on `key` as a one-step batch, replying with `reply` (which gets
/// the outcome; a collection that does not decode is an error reply).
pub(super) fn write(
    key: Bytes,
    op: CollectionOp,
    reply: impl FnOnce(Outcome) -> Result<Frame, CollectionError> + Send + 'static,
) -> Batched {
    Batched::one(key, Some(Op::Collection(op)), move |outcome| {
        reply(outcome).unwrap_or_else(error)
    })
}

/// The change in a collection's length: what `SADD` and `HSET` answer,
/// and negated what `SREM`, `HDEL` and `ZREM` do.
pub(super) fn grown_by(outcome: &Outcome) -> Result<i64, CollectionError> {
    let before = crate::collection::len(value(&outcome.before).map(|v| &v[..]))?;
    let after = crate::collection::len(live_after(outcome).map(|v| &v[..]))?;
    Ok(after as i64 - before as i64)
}

/// A `count` argument of `LPOP`, `SPOP`, `ZPOPMIN`: not negative. More
/// arguments after it are an arity error for `LPOP`, and a syntax error for
/// `SPOP` and `ZPOPMIN` (`extra_is_syntax`), as Redis 7 answers them.
pub(super) fn count(args: &mut Args, extra_is_syntax: bool) -> Result<Option<u64>, Frame> {
    let Some(arg) = args.optional() else {
        return Ok(None);
    };
    if extra_is_syntax && args.remaining() > 0 {
        return Err(crate::resp::parse::syntax_error());
    }
    args.finish()?;
    std::str::from_utf8(&arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|n| u64::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| Frame::error("ERR value is out of range, must be positive"))
}

/// Elements as a RESP array of bulk strings.
pub(super) fn bulks(items: Vec<Bytes>) -> Frame {
    Frame::Array(items.into_iter().map(Frame::Bulk).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{At, KeyState};

    /// Regression: on an expired key not yet swept, `SREM`, `HDEL` and
    /// `ZREM` answered minus the expired collection's size, and `LPUSHX` its
    /// length: the operation found the key absent and left the expired
    /// state in place, which the replies counted.
    #[test]
    fn an_expired_key_left_alone_counts_as_absent_in_replies() {
        let members = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        let add = CollectionOp::SetAdd {
            members: members.clone(),
            max_len: 1 << 20,
        };
        let created = Op::Collection(add)
            .evaluate(None, At { offset: 1, time: 0 })
            .1;
        let expired = KeyState {
            expires_at: Some(50),
            ..created.after.unwrap()
        };
        let late = At {
            offset: 2,
            time: 100,
        };
        let srem = Op::Collection(CollectionOp::SetRemove { members });
        let (_, outcome) = srem.evaluate(Some(&expired), late);
        assert_eq!(
            outcome.after.as_ref(),
            Some(&expired),
            "left until its SWEEP"
        );
        assert_eq!(grown_by(&outcome).unwrap(), 0);
        let pushx = Op::Collection(CollectionOp::Push {
            left: true,
            values: vec![Bytes::from_static(b"x")],
            only_if_exists: true,
            max_len: 1 << 20,
        });
        let (_, outcome) = pushx.evaluate(Some(&expired), late);
        assert_eq!(live_after(&outcome), None);
        // A write that finds the key expired starts it afresh, without one.
        let sadd = Op::Collection(CollectionOp::SetAdd {
            members: vec![Bytes::from_static(b"c")],
            max_len: 1 << 20,
        });
        let (_, outcome) = sadd.evaluate(Some(&expired), late);
        assert_eq!(grown_by(&outcome).unwrap(), 1);
    }
}
