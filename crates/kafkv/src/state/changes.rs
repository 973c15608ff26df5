//! The change hook: every batch the consumer applies is published, once and
//! in log order, as a [`ChangeBatch`] to whoever subscribed (watch streams,
//! keyspace notifications). This is the one place both backends report what
//! a record did to a key.
//!
//! Publishing never waits: the feed is a bounded broadcast ring, and a
//! subscriber that falls more than its capacity behind is told it lagged
//! (`RecvError::Lagged`) when it next receives, instead of slowing the
//! consumer, the other subscribers or writes. Batches are only built while
//! someone is subscribed or the recent window is on, so an instance nobody
//! ever watched copies nothing.
//!
//! The **recent window** keeps the latest batches, bounded by bytes, so that
//! a watch resuming from a recent token replays them from memory instead of
//! reading the topic. It is switched on by the first watch that asks for it
//! and stays on.

use std::{collections::VecDeque, sync::Arc};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::{
    op::{Batch, Op, SetExpiry},
    record::{Kind, Record},
};

/// What one applied record did to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Bytes,
    /// The new value; `None`: the key was deleted (a tombstone). A
    /// collection's is its encoding ([`crate::collection`]).
    pub value: Option<Bytes>,
    /// The new value's type.
    pub ty: crate::collection::Type,
    /// When the new value expires (ms since the epoch); `None`: never, or
    /// the key was deleted.
    pub expires_at: Option<i64>,
    /// What produced the new value (Redis's keyspace-notification event).
    pub op: ChangeOp,
    /// A `Set` that also gave the key a new expiry (`SET … EX`, `SETEX`,
    /// HTTP `?ttl=`, not `KEEPTTL`): Redis notifies `expire` after `set`.
    pub sets_expiry: bool,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp in milliseconds since the epoch, where the
    /// broker gave one.
    pub timestamp: Option<i64>,
}

impl From<&Record> for Change {
    /// A record that states its key's value itself: a plain put or delete,
    /// or a repair (its value is the key's, not an operation).
    fn from(record: &Record) -> Self {
        Change {
            key: Bytes::copy_from_slice(record.key()),
            value: record.value().map(Bytes::copy_from_slice),
            ty: record.ty,
            expires_at: record.value().and(record.expires_at),
            op: ChangeOp::of(&record.kind, record.key(), record.value()),
            sets_expiry: record.kind == Kind::Plain
                && record.value().is_some()
                && record.expires_at.is_some(),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
        }
    }
}

impl Change {
    /// The new state `state` (a put at the key's version, or a tombstone)
    /// that `record`, an operation or a repair, left one of its keys in,
    /// reported at the record's own place in the log.
    pub(super) fn replaced(record: &Record, state: &Record) -> Self {
        let op = ChangeOp::of(&record.kind, state.key(), state.value());
        let sets_expiry = op == ChangeOp::Set
            && matches!(
                &record.kind,
                Kind::Op(Op::SetEx {
                    expiry: SetExpiry::Until(_),
                    ..
                })
            );
        Change {
            key: Bytes::copy_from_slice(state.key()),
            value: state.value().map(Bytes::copy_from_slice),
            ty: state.ty,
            expires_at: state.value().and(state.expires_at),
            op,
            sets_expiry,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
        }
    }
}

/// What changed a key, named as Redis 7 names the keyspace-notification
/// event of the command that does it ([`ChangeOp::name`]). Only a record that
/// changed its key is a change, so a refused condition (`SET NX` on an
/// existing key, `RENAME` of a missing key) or a repair that restates what
/// the view holds has no name: it makes no change at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    /// A plain put (`SET`, `GETSET`, `MSET`, `PUT`), a conditional one
    /// (`SET NX|XX`, `MSETNX`, compare-and-set), or a repair that corrected
    /// this view's value.
    Set,
    /// A tombstone (`DEL`, `UNLINK`, `GETDEL`, `DELETE`), a conditional
    /// delete, or a repair that corrected this view to absent.
    Del,
    /// `INCR`, `INCRBY`, `DECR`, `DECRBY`.
    IncrBy,
    IncrByFloat,
    Append,
    SetRange,
    SetBit,
    /// `RENAME`'s source key, now absent.
    RenameFrom,
    /// `RENAME`'s destination, now holding the source's value.
    RenameTo,
    /// `COPY`'s destination.
    CopyTo,
    /// `EXPIRE` and friends, `GETEX` with a time: a new expiry.
    Expire,
    /// A write to a list, set, hash or sorted set, by Redis's event name
    /// (`lpush`, `sadd`, `hset`, `zadd`, …).
    Collection {
        event: &'static str,
        ty: crate::collection::Type,
    },
    /// `PERSIST`, `GETEX PERSIST`: the expiry removed.
    Persist,
    /// A SWEEP removed the key once its expiry had passed.
    Expired,
}

impl ChangeOp {
    pub const ALL: [ChangeOp; 13] = [
        ChangeOp::Set,
        ChangeOp::Del,
        ChangeOp::IncrBy,
        ChangeOp::IncrByFloat,
        ChangeOp::Append,
        ChangeOp::SetRange,
        ChangeOp::SetBit,
        ChangeOp::RenameFrom,
        ChangeOp::RenameTo,
        ChangeOp::CopyTo,
        ChangeOp::Expire,
        ChangeOp::Persist,
        ChangeOp::Expired,
    ];

    /// The event name, exactly as Redis 7 publishes it.
    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::Set => "set",
            ChangeOp::Del => "del",
            ChangeOp::IncrBy => "incrby",
            ChangeOp::IncrByFloat => "incrbyfloat",
            ChangeOp::Append => "append",
            ChangeOp::SetRange => "setrange",
            ChangeOp::SetBit => "setbit",
            ChangeOp::RenameFrom => "rename_from",
            ChangeOp::RenameTo => "rename_to",
            ChangeOp::CopyTo => "copy_to",
            ChangeOp::Expire => "expire",
            ChangeOp::Persist => "persist",
            ChangeOp::Expired => "expired",
            ChangeOp::Collection { event, .. } => event,
        }
    }

    /// What a record of `kind` did to `key` (its own key, or for a batch
    /// any key it wrote), which it left holding `value` (`None`: deleted).
    /// This is the one place that names changes.
    pub fn of(kind: &Kind, key: &[u8], value: Option<&[u8]>) -> ChangeOp {
        match kind {
            // A record stating the value itself: a put or a delete.
            Kind::Plain | Kind::Repair { .. } => ChangeOp::stated(value),
            Kind::Sweep { .. } => ChangeOp::Expired,
            Kind::Op(Op::Batch(batch)) => ChangeOp::in_batch(batch, key, value),
            Kind::Op(op) if Self::could_leave(op, value) => ChangeOp::of_step(op),
            Kind::Op(_) => ChangeOp::stated(value),
        }
    }

    fn stated(value: Option<&[u8]>) -> ChangeOp {
        match value {
            Some(_) => ChangeOp::Set,
            None => ChangeOp::Del,
        }
    }

    /// The name of one operation (alone, or a step of a batch) that changed
    /// its key.
    fn of_step(op: &Op) -> ChangeOp {
        match op {
            Op::IncrBy(_) => ChangeOp::IncrBy,
            Op::IncrByFloat(_) => ChangeOp::IncrByFloat,
            Op::Append { .. } => ChangeOp::Append,
            Op::SetRange { .. } => ChangeOp::SetRange,
            Op::SetBit { .. } => ChangeOp::SetBit,
            Op::Set { .. } | Op::SetEx { .. } => ChangeOp::Set,
            Op::Expire { .. } => ChangeOp::Expire,
            Op::Persist => ChangeOp::Persist,
            Op::Delete { .. } => ChangeOp::Del,
            Op::CopyFrom { .. } => ChangeOp::CopyTo,
            Op::Collection(op) => ChangeOp::Collection {
                event: op.event_name(),
                ty: op.result_type(),
            },
            // Never a step; named per key by `in_batch`.
            Op::Batch(_) => ChangeOp::Set,
        }
    }

    /// Whether `op` can have left its key holding `value`: only a delete
    /// leaves it absent, and a put leaves its own value.
    fn could_leave(op: &Op, value: Option<&[u8]>) -> bool {
        match (op, value) {
            (Op::Delete { .. }, deleted) => deleted.is_none(),
            // A deadline already past deletes, and Redis names that `del`.
            (Op::Expire { .. }, None) => false,
            (_, None) => false,
            (Op::Set { value: put, .. } | Op::SetEx { value: put, .. }, Some(value)) => {
                put[..] == *value
            }
            (_, Some(_)) => true,
        }
    }

    /// What a batch did to `key`: its last step on the key that can have
    /// left it as it is (a later step on it whose condition failed changed
    /// nothing). `RENAME` is the batch `[to ← CopyFrom(from), from ←
    /// Delete]`: the delete of a key copied from earlier in the batch is
    /// `rename_from`, and a copy whose source is deleted later is
    /// `rename_to`; any other copy is `COPY`'s `copy_to`.
    ///
    /// A batch is one change per key, so a transaction that writes a key
    /// twice reports the last write only; and a failed step that could
    /// have left the key as it is (an `INCR` that found no integer, after a
    /// `SET` of the key in the same transaction) lends it its name.
    fn in_batch(batch: &Batch, key: &[u8], value: Option<&[u8]>) -> ChangeOp {
        let steps = &batch.steps;
        let last = steps
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, (k, op))| match op {
                Some(op) if k == key && Self::could_leave(op, value) => Some((i, op)),
                _ => None,
            });
        match last {
            Some((i, Op::Delete { .. })) => {
                let copied = steps[..i].iter().any(
                    |(_, op)| matches!(op, Some(Op::CopyFrom { source, .. }) if source == key),
                );
                if copied {
                    ChangeOp::RenameFrom
                } else {
                    ChangeOp::Del
                }
            }
            Some((i, Op::CopyFrom { source, .. })) => {
                let moved = steps[i + 1..]
                    .iter()
                    .any(|(k, op)| k == source && matches!(op, Some(Op::Delete { .. })));
                if moved {
                    ChangeOp::RenameTo
                } else {
                    ChangeOp::CopyTo
                }
            }
            Some((_, op)) => ChangeOp::of_step(op),
            None => ChangeOp::stated(value),
        }
    }
}

/// The records of one applied batch, in the order they were applied (log
/// order within each partition), and the positions right after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    pub changes: Vec<Change>,
    /// The next offset to apply, per partition, once this batch is applied:
    /// where a reader resumes to see exactly what follows it.
    pub positions: Vec<i64>,
}

/// A subscription: receives every batch applied after it was taken.
pub type ChangeReceiver = broadcast::Receiver<Arc<ChangeBatch>>;

/// Batches a subscriber may fall behind before it is told it lagged.
pub const DEFAULT_CHANGE_CAPACITY: usize = 1024;

/// Bytes of recent changes kept for resuming watches from memory.
pub const DEFAULT_RECENT_BYTES: usize = 16 << 20;

impl ChangeBatch {
    /// Bytes of keys and values it holds, for the recent window's bound.
    fn bytes(&self) -> usize {
        self.changes
            .iter()
            .map(|c| c.key.len() + c.value.as_ref().map_or(0, Bytes::len) + 64)
            .sum()
    }
}

/// The recent window as a subscriber receives it: the batches it holds, and
/// the positions they start from (every change at or after `floor[p]` in
/// partition `p`, up to the view's positions, is in `batches`).
#[derive(Debug, Clone, Default)]
pub struct RecentChanges {
    pub floor: Vec<i64>,
    pub batches: Vec<Arc<ChangeBatch>>,
}

#[derive(Debug, Default)]
struct Recent {
    /// `None` until a watch switches the window on.
    floor: Option<Vec<i64>>,
    batches: VecDeque<Arc<ChangeBatch>>,
    bytes: usize,
}

/// The publishing side, owned by the view.
#[derive(Debug)]
pub(super) struct ChangeFeed {
    sender: broadcast::Sender<Arc<ChangeBatch>>,
    recent: Mutex<Recent>,
    recent_max_bytes: usize,
}

impl ChangeFeed {
    pub fn new(capacity: usize, recent_max_bytes: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            recent: Mutex::new(Recent::default()),
            recent_max_bytes,
        }
    }

    /// Whether a batch published now would be kept or received.
    pub fn is_watched(&self) -> bool {
        self.sender.receiver_count() > 0 || self.recent.lock().floor.is_some()
    }

    pub fn subscribe(&self) -> ChangeReceiver {
        self.sender.subscribe()
    }

    /// The recent window, switched on (from `positions`, the view's now)
    /// if it was off. Called under the view's lock, as `publish` is.
    pub fn recent(&self, positions: &[i64]) -> RecentChanges {
        let mut recent = self.recent.lock();
        if self.recent_max_bytes == 0 {
            return RecentChanges {
                floor: positions.to_vec(),
                batches: Vec::new(),
            };
        }
        let floor = recent
            .floor
            .get_or_insert_with(|| positions.to_vec())
            .clone();
        RecentChanges {
            floor,
            batches: recent.batches.iter().cloned().collect(),
        }
    }

    /// Publishes without waiting; a batch nobody receives is dropped. The
    /// recent window keeps it, dropping its oldest batches to stay in bounds.
    pub fn publish(&self, batch: ChangeBatch) {
        let batch = Arc::new(batch);
        {
            let mut recent = self.recent.lock();
            if recent.floor.is_some() {
                recent.bytes += batch.bytes();
                recent.batches.push_back(batch.clone());
                while recent.bytes > self.recent_max_bytes {
                    let Some(oldest) = recent.batches.pop_front() else {
                        break;
                    };
                    recent.bytes -= oldest.bytes();
                    recent.floor = Some(oldest.positions.clone());
                }
            }
        }
        let _ = self.sender.send(batch);
    }
}
