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

/// The change in a collection's length: what `SADD`, `HSET`, `SREM`,
/// `HDEL` and `ZREM` answer.
pub(super) fn grown_by(outcome: &Outcome) -> Result<Frame, CollectionError> {
    let before = crate::collection::len(value(&outcome.before).map(|v| &v[..]))?;
    let after = crate::collection::len(value(&outcome.after).map(|v| &v[..]))?;
    Ok(Frame::Integer(after as i64 - before as i64))
}

/// A `count` argument of `LPOP`, `SPOP`, `ZPOPMIN`: not negative.
pub(super) fn count(args: &mut Args) -> Result<Option<u64>, Frame> {
    let Some(arg) = args.optional() else {
        return Ok(None);
    };
    args.finish()?;
    std::str::from_utf8(&arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|n| u64::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| Frame::error("ERR value is out of range, must be positive"))
}

/// An index argument (`LRANGE`, `LINDEX`, `ZRANGE`).
pub(super) fn index(args: &mut Args) -> Result<i64, Frame> {
    args.integer()
}

/// Elements as a RESP array of bulk strings.
pub(super) fn bulks(items: Vec<Bytes>) -> Frame {
    Frame::Array(items.into_iter().map(Frame::Bulk).collect())
}
