//! The materialized view: the topic's live keys (in a [`Table`], memory or
//! disk), this instance's acknowledged-but-not-yet-consumed writes (the
//! [`overlay`]), the per-partition positions ([`progress`]) and the feed of
//! applied changes ([`changes`]).
//!
//! - `table/`: where entries live; the memory and the disk backend.
//! - `overlay.rs`: read-your-writes before the consumer catches up.
//! - `progress.rs`: positions, bootstrap, waiting for an offset.
//! - `changes.rs`: the change hook.
//! - `hazards.rs`: the read-modify-write protocol's per-key bookkeeping
//!   (docs/rmw.md): what an operation or a repair does to a key, and which
//!   keys need a repair.
//! - `scan.rs`: ordered scans and the `SCAN` cursor over table and overlay.
//! - this file: [`View`], which holds them together, and [`View::apply`],
//!   the one place that decides what a record does to a key.
//!
//! Invariants:
//! - `positions[p]` is the offset of the next record to apply from partition
//!   `p`; every record of `p` below it is reflected in the table. With the
//!   disk backend the same positions are the checkpoint, committed in the
//!   same transaction as the records.
//! - Only the consumer thread applies records, so it can read `positions`,
//!   commit a batch, and only then publish the new positions.

pub(crate) mod changes;
mod hazards;
mod heard;
mod overlay;
pub(crate) mod progress;
mod scan;
pub(crate) mod table;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use tokio::sync::{mpsc, oneshot};

use changes::ChangeFeed;
pub use changes::{
    Change, ChangeBatch, ChangeOp, ChangeReceiver, DEFAULT_CHANGE_CAPACITY, DEFAULT_RECENT_BYTES,
    RecentChanges,
};
use overlay::{Acked, Overlay};
use progress::Tracker;
pub use progress::{Bootstrap, Progress};
pub(crate) use table::Table;
pub use table::{Due, StateError, Versioned, disk::Checkpoint};

use crate::{
    collection::Type,
    op::{Batch, KeyState, Op, Outcome},
    record::{Kind, Record},
};
use hazards::{Hazards, Pending};
pub use heard::Heard;
use heard::{LogClock, Roster};

/// What the consumer reports, in log order per partition.
#[derive(Debug)]
pub enum Event {
    Record(Record),
    /// A record kafkv does not apply (no key, or written by a newer kafkv):
    /// its offset still counts as applied.
    Skipped {
        partition: i32,
        offset: i64,
    },
    /// The consumer reached the partition's end as of its last fetch.
    EndOfPartition(i32),
}

#[derive(Debug)]
struct Inner {
    overlay: Overlay,
    positions: Vec<i64>,
}

/// Live entries under a prefix, in key order, and the positions they reflect.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub entries: Vec<(Bytes, Versioned)>,
    pub positions: Vec<i64>,
}

/// What the consumer must do after a batch: ask for the end offsets of the
/// partitions in which it skipped offsets (docs/rmw.md, the ready rule).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub gaps: Vec<i32>,
}

/// A key whose newest record is not self-contained, for the repairer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairHint {
    pub key: Bytes,
    pub partition: i32,
    /// This instance wrote the operation: repair it soon.
    pub own: bool,
    /// The key's newest hazardous record is a batch recorded under another
    /// key, whose repair goes first.
    pub after_record_key: bool,
}

impl From<hazards::Unsettled<'_>> for RepairHint {
    fn from(unsettled: hazards::Unsettled<'_>) -> Self {
        Self {
            key: Bytes::copy_from_slice(unsettled.key),
            partition: unsettled.partition,
            own: unsettled.own,
            after_record_key: unsettled.elsewhere,
        }
    }
}

/// A record's outcome as its writer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub outcome: Outcome,
    /// The view had skipped offsets of the partition (it was not exact), so
    /// the outcome it computed may be wrong.
    pub exact: bool,
}

/// A record this instance wrote and the broker acknowledged, as the fast
/// path needs it: what it does to which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledged {
    /// A put (`Some`) or delete.
    Plain { key: Bytes, value: Option<Bytes> },
    /// A single-key operation.
    Op { key: Bytes, op: Op },
    /// A repair: on an exact view it changes no key.
    Repair,
    /// Anything else (a batch, a repair): the fast path stops at it.
    Other,
}

/// One of this instance's acknowledged records in the fast path's tail.
#[derive(Debug, Clone)]
struct TailEntry {
    record: Acknowledged,
    /// The writer still waiting for this record's outcome, when it could not
    /// be answered at acknowledgement (an earlier offset was unknown then).
    /// Whoever fills the last unknown offset before it answers it.
    waiting: Option<u64>,
    /// The key's state right after this record, once the fast path has
    /// computed it: the next operation on the key starts from it instead of
    /// evaluating every earlier one again (a hot key has many in flight).
    after: Option<Option<KeyState>>,
}

impl TailEntry {
    fn known(record: Acknowledged) -> Self {
        Self {
            record,
            waiting: None,
            after: None,
        }
    }
}

/// A writer's slot for its record's outcome.
#[derive(Debug)]
enum Waiter {
    /// The writer waits for the consumer to apply the record.
    Reply(oneshot::Sender<Delivered>),
    /// The writer was answered at acknowledgement with this outcome; the
    /// consumer's must be the same (checked, and an error if not).
    Check(Outcome),
}

/// What a repair restates, read consistently: the key's state as of `restates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairStatement {
    pub restates: i64,
    pub state: Option<KeyState>,
}

/// The shared materialized view.
///
/// A `parking_lot::RwLock` rather than a concurrent map: reads take a shared
/// lock for a lookup and a value copy (nanoseconds), the consumer takes the
/// exclusive lock for each part of [`View::INSTALL_PART`] records of a
/// batch, so no reader waits long, and one lock keeps the table's in-memory
/// entries, the overlay and `positions` consistent with each other. It is never held
/// across an `.await`. A table with transactions of its own (disk) commits a
/// batch before the lock is taken (see [`Table`]).
#[derive(Debug)]
pub struct View {
    inner: RwLock<Inner>,
    table: Box<dyn Table>,
    tracker: Tracker,
    changes: ChangeFeed,
    /// The protocol's per-key bookkeeping. The consumer holds it for a whole
    /// batch (resolve, commit, install), so whoever else takes it sees the
    /// table and the positions at a batch boundary. Taken before `inner`.
    hazards: Mutex<Hazards>,
    /// Writers waiting for their record's outcome, by `kafkv.id`.
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// Per partition, this instance's acknowledged records that the consumer
    /// has not applied yet, by offset (the fast path: docs/rmw.md).
    /// Lock order, everywhere: `hazards`, then `inner`, then `tail`, then
    /// `waiters`.
    tail: Mutex<Vec<BTreeMap<i64, TailEntry>>>,
    /// Where keys needing a repair are reported (none until a repairer runs).
    repair_hints: Mutex<Option<mpsc::UnboundedSender<RepairHint>>>,
    /// The `kafkv.id`s of this instance's records carry this in their top 32 bits.
    id_prefix: u64,
    next_id: std::sync::atomic::AtomicU32,
    /// The instances heard sweeping and writing expiring puts: the
    /// sweeper's ranking (`store/sweeper.rs`).
    roster: Roster,
    /// How far each partition is read, in log time: the sweeper's judge of
    /// what the others did.
    log_clock: LogClock,
    /// SWEEPs this process applied that deleted their key (`INFO stats`
    /// `expired_keys`: bootstrap included, as Redis counts a load's).
    expired_keys: std::sync::atomic::AtomicU64,
}

impl View {
    /// The consumer applies at most this many records per batch (one
    /// `hazards` hold, one table commit).
    pub const MAX_BATCH: usize = 1024;

    /// Records installed per hold of `inner`'s exclusive lock: readers wait
    /// at most one part (tens of microseconds), not a whole batch. A batch
    /// of 1,024 SWEEPs held it for 0.3 to 1 ms, longer when the holder was
    /// preempted on a busy machine, and that set GET p99 during a bulk
    /// sweep.
    const INSTALL_PART: usize = 128;

    /// A view over `table`, which already holds every record below
    /// `positions`; its bootstrap ends at `targets`.
    pub fn new(table: Box<dyn Table>, positions: Vec<i64>, targets: Vec<i64>) -> Self {
        let partitions = positions.len();
        Self {
            inner: RwLock::new(Inner {
                overlay: Overlay::default(),
                positions: positions.clone(),
            }),
            table,
            tracker: Tracker::new(positions, targets),
            changes: ChangeFeed::new(
                changes::DEFAULT_CHANGE_CAPACITY,
                changes::DEFAULT_RECENT_BYTES,
            ),
            hazards: Mutex::new(Hazards::new(partitions)),
            waiters: Mutex::new(HashMap::new()),
            tail: Mutex::new(vec![BTreeMap::new(); partitions]),
            repair_hints: Mutex::new(None),
            id_prefix: u64::from(fastrand::u32(..)) << 32,
            next_id: std::sync::atomic::AtomicU32::new(0),
            roster: Roster::default(),
            log_clock: LogClock::new(partitions),
            expired_keys: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A fresh `kafkv.id` for a record of this instance, and the receiver its
    /// outcome is delivered to once the consumer applies the record. Dropping
    /// the receiver gives up waiting; [`View::forget_waiter`] frees the slot
    /// of a record that was never written.
    pub fn register_waiter(&self) -> (u64, oneshot::Receiver<Delivered>) {
        let seq = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = self.id_prefix | u64::from(seq);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(id, Waiter::Reply(tx));
        (id, rx)
    }

    pub fn forget_waiter(&self, id: u64) {
        self.waiters.lock().remove(&id);
    }

    /// This instance's id: the top half of its `kafkv.id`s, and the
    /// `<writer>`/`<sweeper>` its expiring puts and SWEEPs name.
    pub fn instance_id(&self) -> u32 {
        (self.id_prefix >> 32) as u32
    }

    /// Counts a SWEEP applied here by what it did, and how long after the
    /// expiry it names it was written (its record time, so every instance
    /// reports the same delay for it).
    fn note_sweep(&self, was_present: bool, is_present: bool, record: &Record, expires_at: i64) {
        let result = match (was_present, is_present) {
            (_, true) => "live",
            (true, false) => {
                self.expired_keys
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                "deleted"
            }
            (false, false) => "absent",
        };
        metrics::counter!("kafkv_sweeps_applied_total", "result" => result).increment(1);
        let delay_ms = record.time().saturating_sub(expires_at).max(0);
        metrics::histogram!("kafkv_sweep_delay_seconds").record(delay_ms as f64 / 1000.0);
    }

    /// How many SWEEPs this process applied deleted their key.
    pub fn expired_keys(&self) -> u64 {
        self.expired_keys.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The instances whose SWEEPs this process applied (its own included),
    /// each with the newest one's times.
    pub fn sweepers_heard(&self) -> Vec<Heard> {
        self.roster.sweepers()
    }

    /// The writers of the expiring puts this process applied.
    pub fn expiry_writers_heard(&self) -> Vec<Heard> {
        self.roster.writers()
    }

    /// The log time up to which this process has applied every record of
    /// `partition` (see [`heard::LogClock::read_until`]).
    pub fn read_until(&self, partition: i32, now_ms: i64) -> i64 {
        self.log_clock.read_until(partition, now_ms)
    }

    fn is_own(&self, id: Option<u64>) -> bool {
        id.is_some_and(|id| id & !0xffff_ffff == self.id_prefix)
    }

    /// Where to report keys that need a repair from now on.
    pub fn set_repair_hints(&self, hints: mpsc::UnboundedSender<RepairHint>) {
        // `hazards` before `repair_hints`, the order `apply` takes them in.
        let hazards = self.hazards.lock();
        let mut slot = self.repair_hints.lock();
        // Every key already unsettled is reported at once, so none is missed.
        for unsettled in hazards.unsettled() {
            let _ = hints.send(unsettled.into());
        }
        *slot = Some(hints);
    }

    /// `key`'s state as of the newest offset applied in `partition`, if its
    /// newest record is not self-contained (else no repair is needed).
    pub fn repair_statement(
        &self,
        key: &[u8],
        partition: i32,
    ) -> Result<Option<RepairStatement>, StateError> {
        let hazards = self.hazards.lock();
        if !hazards.is_unsettled(key) {
            return Ok(None);
        }
        // With `hazards` held no batch is being applied: the table and the
        // positions agree.
        let Some(position) = self.inner.read().positions.get(partition as usize).copied() else {
            return Ok(None);
        };
        let state = self.table.get(key)?.map(versioned_state);
        Ok(Some(RepairStatement {
            restates: position - 1,
            state,
        }))
    }

    /// What a SWEEP of `key` names (docs/expiry.md): the newest offset
    /// applied in `partition` and the key's expiry, if the key is settled
    /// and has expired by `upto` (ms since the epoch). `None`: nothing to
    /// sweep (rewritten, swept, unsettled: the repairer's, or not ready).
    pub fn sweep_statement(
        &self,
        key: &[u8],
        partition: i32,
        upto: i64,
    ) -> Result<Option<(i64, i64)>, StateError> {
        let hazards = self.hazards.lock();
        if hazards.is_unsettled(key) || hazards.is_inexact_partition(partition) {
            return Ok(None);
        }
        // With `hazards` held no batch is being applied: the table and the
        // positions agree.
        let Some(position) = self.inner.read().positions.get(partition as usize).copied() else {
            return Ok(None);
        };
        Ok(self
            .table
            .get(key)?
            .and_then(|v| v.expires_at)
            .filter(|at| *at <= upto)
            .map(|at| (position - 1, at)))
    }

    /// Keys whose newest record is not self-contained (for metrics and tests).
    pub fn unsettled_keys(&self) -> usize {
        self.hazards.lock().unsettled().count()
    }

    /// The view starts after offsets of `partition` that no longer exist
    /// (the log starts above 0): it is not exact there until it reaches its
    /// bootstrap target (docs/rmw.md, the ready rule).
    pub fn mark_skipped(&self, partition: i32) {
        self.hazards.lock().mark_inexact(partition);
    }

    /// After the consumer skipped offsets of `partition`: bootstrap is not
    /// done until the partition reaches `end`, and the partition is not exact
    /// until then (docs/rmw.md, the ready rule).
    pub fn retarget(&self, partition: i32, end: i64) {
        let mut hazards = self.hazards.lock();
        if self.tracker.retarget(partition, end) {
            hazards.mark_exact(partition);
        }
    }

    /// The same view with a change feed of `capacity` batches per subscriber
    /// and a recent window of `recent_bytes` (see `changes.rs`).
    pub fn with_change_limits(mut self, capacity: usize, recent_bytes: usize) -> Self {
        self.changes = ChangeFeed::new(capacity, recent_bytes);
        self
    }

    /// An empty view in memory whose bootstrap ends at `targets` (one per partition).
    #[cfg(test)]
    pub fn in_memory(targets: Vec<i64>) -> Self {
        let positions = vec![0; targets.len()];
        Self::new(
            Box::<table::memory::MemoryTable>::default(),
            positions,
            targets,
        )
    }

    /// Whether the start-up read finished (cheap: one atomic load).
    pub fn is_bootstrapped(&self) -> bool {
        self.tracker.is_bootstrapped()
    }

    /// The current value of `key`, acknowledged writes of this instance
    /// included; a key whose expiry has passed by this machine's clock is
    /// absent (docs/expiry.md: plain reads use the local clock).
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError> {
        let inner = self.inner.read();
        let found = match inner.overlay.get(key) {
            Some(acked) => acked.versioned(),
            None => self.table.get(key)?,
        };
        Ok(found.filter(|v| !v.is_expired_at(now_ms())))
    }

    /// Number of live keys (acknowledged writes not yet consumed included,
    /// keys expired by this machine's clock left out).
    pub fn len(&self) -> usize {
        let inner = self.inner.read();
        let expired = self
            .table
            .volatile_counts(now_ms())
            .map_or(0, |(_, expired)| expired);
        let mut len = self.table.len() as isize - expired as isize;
        for (key, write) in inner.overlay.iter() {
            let in_table = self.table.contains(key).unwrap_or(false);
            len += write.value.is_some() as isize - in_table as isize;
        }
        len.max(0) as usize
    }

    /// Keys with an expiry not yet passed, and expired keys not yet swept.
    pub fn expiry_counts(&self) -> (usize, usize) {
        self.table
            .volatile_counts(now_ms())
            .map_or((0, 0), |(volatile, expired)| (volatile - expired, expired))
    }

    /// Up to `limit` keys expired by `upto` (ms since the epoch), after
    /// `cursor`, with the partition position they were read at.
    pub fn due(
        &self,
        upto: i64,
        cursor: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<Due>, StateError> {
        self.table.due(upto, cursor, limit)
    }

    /// Heap bytes the table holds beyond its entries' own key and value
    /// allocations (0 for the disk backend).
    #[cfg(test)]
    pub fn memory_overhead_bytes(&self) -> usize {
        self.table.overhead_bytes()
    }

    /// Notes a repair this instance wrote, acknowledged at `(partition,
    /// offset)`, so the fast path knows that offset.
    pub fn acknowledge_repair(&self, partition: i32, offset: i64) {
        let hazards = self.hazards.lock();
        let mut inner = self.inner.write();
        if inner
            .positions
            .get(partition as usize)
            .is_some_and(|p| offset >= *p)
        {
            let mut tails = self.tail.lock();
            tails[partition as usize].insert(offset, TailEntry::known(Acknowledged::Repair));
            self.answer_known(&hazards, &mut inner, &mut tails, partition, None);
        }
    }

    /// Records a write the broker acknowledged at `(partition, offset)`, so reads
    /// see it before the consumer gets there.
    pub fn acknowledge(&self, key: &[u8], value: Option<Bytes>, partition: i32, offset: i64) {
        self.acknowledge_with_expiry(key, value, None, partition, offset);
    }

    /// [`View::acknowledge`] for a put with an expiry, readable until the
    /// consumer applies it with `expires_at` (an estimate, see
    /// [`overlay::Acked::expires_at`]). Its effect on the key depends on the
    /// record's time, so the fast path evaluates nothing after it in its
    /// partition: a later operation waits for the consumer.
    pub fn acknowledge_expiring(
        &self,
        key: &[u8],
        value: Bytes,
        expires_at: i64,
        partition: i32,
        offset: i64,
    ) {
        self.acknowledge_with_expiry(key, Some(value), Some(expires_at), partition, offset);
    }

    fn acknowledge_with_expiry(
        &self,
        key: &[u8],
        value: Option<Bytes>,
        expires_at: Option<i64>,
        partition: i32,
        offset: i64,
    ) {
        let mut inner = self.inner.write();
        let Some(position) = inner.positions.get(partition as usize).copied() else {
            return;
        };
        if offset < position {
            // The consumer already applied it (and maybe something newer).
            return;
        }
        let unblocks = {
            let mut tails = self.tail.lock();
            let Some(tail) = tails.get_mut(partition as usize) else {
                return;
            };
            let record = match expires_at {
                None => Acknowledged::Plain {
                    key: Bytes::copy_from_slice(key),
                    value: value.clone(),
                },
                Some(_) => Acknowledged::Other,
            };
            tail.insert(offset, TailEntry::known(record));
            tail.range(offset..)
                .any(|(_, entry)| entry.waiting.is_some())
        };
        inner.overlay.insert(
            key,
            Acked {
                value,
                partition,
                offset,
                expires_at,
                ty: crate::collection::Type::String,
            },
        );
        // This put may have been the last unknown offset before a waiting
        // operation: answer it now, with the locks in order. Plain writes
        // with no operation waiting never take `hazards`.
        if unblocks {
            drop(inner);
            let hazards = self.hazards.lock();
            let mut inner = self.inner.write();
            let mut tails = self.tail.lock();
            self.answer_known(&hazards, &mut inner, &mut tails, partition, None);
        }
    }

    /// The fast path (docs/rmw.md): the outcome of this instance's record
    /// `record` (waited on under `id`), acknowledged at `(partition,
    /// offset)`, computed now if this view knows every record before it —
    /// the ones it applied, then its own acknowledged ones, with no offset
    /// between them unknown. The view then reads the record's effect at once
    /// (the overlay), and the consumer checks its own outcome against this
    /// one when it gets there. `None`: wait for the consumer.
    pub fn outcome_at_ack(
        &self,
        id: u64,
        record: Acknowledged,
        partition: i32,
        offset: i64,
    ) -> Result<Option<Outcome>, StateError> {
        // Applied already (the consumer often beats the acknowledgement
        // when other instances write): the consumer delivered the outcome.
        // Seen under the shared lock alone, so the writer's thread does not
        // wait for `hazards`, which the consumer holds for a whole batch.
        // Positions only grow, so the answer cannot turn false.
        let applied = |positions: &[i64]| {
            positions
                .get(partition as usize)
                .is_none_or(|position| offset < *position)
        };
        if applied(&self.inner.read().positions) {
            return Ok(None);
        }
        let hazards = self.hazards.lock();
        let mut inner = self.inner.write();
        if applied(&inner.positions) {
            return Ok(None);
        }
        let answerable = matches!(record, Acknowledged::Plain { .. } | Acknowledged::Op { .. });
        let mut tails = self.tail.lock();
        tails[partition as usize].insert(
            offset,
            TailEntry {
                record,
                waiting: answerable.then_some(id),
                after: None,
            },
        );
        Ok(self.answer_known(&hazards, &mut inner, &mut tails, partition, Some(id)))
    }

    /// Answers every writer waiting in `partition`'s tail whose record now
    /// has every earlier offset known (applied, or this instance's own
    /// acknowledged records with none missing between), in offset order,
    /// and makes each answer readable at once (the overlay). Acknowledgements
    /// come back in offset order but their writers run in any order, so the
    /// record that fills the last unknown offset answers the ones after it.
    /// The outcome of the writer `own` is returned rather than sent; the
    /// consumer later checks each answer against its own.
    fn answer_known(
        &self,
        hazards: &Hazards,
        inner: &mut Inner,
        tails: &mut [BTreeMap<i64, TailEntry>],
        partition: i32,
        own: Option<u64>,
    ) -> Option<Outcome> {
        if hazards.is_inexact_partition(partition) {
            return None;
        }
        let position = *inner.positions.get(partition as usize)?;
        let tail = tails.get_mut(partition as usize)?;
        // The waiting entries reachable from `position` without a gap.
        let ready: Vec<(i64, u64)> = tail
            .range(position..)
            .zip(position..)
            .take_while(|((at, _), expected)| *at == expected)
            .filter_map(|((at, entry), _)| Some((*at, entry.waiting?)))
            .collect();
        let mut answered_own = None;
        for (at, id) in ready {
            let outcome = match self.outcome_in_tail(tail, position, at) {
                Ok(Some(outcome)) => outcome,
                // A record the fast path cannot follow (a batch): the
                // consumer answers this one and every later one.
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "could not evaluate a write at acknowledgement");
                    break;
                }
            };
            if let Some(entry) = tail.get_mut(&at) {
                entry.waiting = None;
                entry.after = Some(outcome.after.clone());
            }
            if outcome.after != outcome.before
                && let Some(TailEntry {
                    record: Acknowledged::Plain { key, .. } | Acknowledged::Op { key, .. },
                    ..
                }) = tail.get(&at)
            {
                let value = outcome.after.as_ref().map(|state| state.value.clone());
                let expires_at = outcome.after.as_ref().and_then(|state| state.expires_at);
                let ty = outcome
                    .after
                    .as_ref()
                    .map_or(Type::String, |state| state.ty);
                inner.overlay.insert(
                    key,
                    Acked {
                        value,
                        partition,
                        offset: at,
                        expires_at,
                        ty,
                    },
                );
            }
            let mut waiters = self.waiters.lock();
            if Some(id) == own {
                waiters.insert(id, Waiter::Check(outcome.clone()));
                answered_own = Some(outcome);
            } else if let Some(Waiter::Reply(reply)) = waiters.remove(&id) {
                waiters.insert(id, Waiter::Check(outcome.clone()));
                let _ = reply.send(Delivered {
                    outcome,
                    exact: true,
                });
            }
        }
        answered_own
    }

    /// The outcome of the tail's record at `offset`, every offset from
    /// `position` to it being in the tail: the key's applied state, then
    /// this instance's records before it. `None` for a record the fast path
    /// does not answer, or one after a record it cannot follow.
    fn outcome_in_tail(
        &self,
        tail: &BTreeMap<i64, TailEntry>,
        position: i64,
        offset: i64,
    ) -> Result<Option<Outcome>, StateError> {
        let Some(entry) = tail.get(&offset) else {
            return Ok(None);
        };
        let key = match &entry.record {
            Acknowledged::Plain { key, .. } | Acknowledged::Op { key, .. } => key,
            Acknowledged::Repair | Acknowledged::Other => return Ok(None),
        };
        let earlier = tail.range(position..offset);
        if earlier
            .clone()
            .any(|(_, e)| matches!(e.record, Acknowledged::Other))
        {
            return Ok(None);
        }
        // Start from the newest earlier record of the key whose resulting
        // state is known (a put states it), else from the applied table.
        let same_key = |e: &TailEntry| match &e.record {
            Acknowledged::Plain { key: k, .. } | Acknowledged::Op { key: k, .. } => k == key,
            _ => false,
        };
        let start = earlier
            .clone()
            .rev()
            .find_map(|(at, e)| match (&e.record, &e.after) {
                (_, Some(after)) if same_key(e) => Some((*at, after.clone())),
                (Acknowledged::Plain { key: k, value }, _) if k == key => {
                    Some((*at, value.clone().map(|value| KeyState::new(value, *at))))
                }
                _ => None,
            });
        let (from, mut state) = match start {
            Some((at, state)) => (at + 1, state),
            None => (position, self.table.get(key)?.map(versioned_state)),
        };
        // Expiry is decided at the record's timestamp, which only the
        // consumer knows: a key with an expiry is left to it.
        if state.as_ref().is_some_and(|s| s.expires_at.is_some()) {
            return Ok(None);
        }
        for (at, earlier) in tail.range(from..offset) {
            state = match &earlier.record {
                Acknowledged::Plain { key: k, value } if k == key => {
                    value.clone().map(|value| KeyState::new(value, *at))
                }
                Acknowledged::Op { key: k, op } if k == key => {
                    if op.depends_on_time() {
                        return Ok(None);
                    }
                    op.evaluate(state.as_ref(), untimed(*at)).1.after
                }
                Acknowledged::Other => return Ok(None),
                _ => state,
            };
        }
        Ok(match &entry.record {
            Acknowledged::Plain { value, .. } => {
                let after = value.clone().map(|value| KeyState::new(value, offset));
                Some(Outcome::replaced(state, after))
            }
            Acknowledged::Op { op, .. } if op.depends_on_time() => None,
            Acknowledged::Op { op, .. } => Some(op.evaluate(state.as_ref(), untimed(offset)).1),
            Acknowledged::Repair | Acknowledged::Other => None,
        })
    }

    /// Applies the consumer's events in order, publishes the applied changes
    /// to change subscribers, then the new positions, then hands writers
    /// their records' outcomes. On success `events` is left empty; on a
    /// table error nothing was applied and the same events can be retried.
    pub fn apply(&self, events: &mut Vec<Event>) -> Result<Applied, StateError> {
        if events.is_empty() {
            return Ok(Applied::default());
        }
        // Held until the batch is installed: see the field's comment.
        let mut hazards = self.hazards.lock();
        // Only this (the consumer's) thread moves positions.
        let mut positions = self.inner.read().positions.clone();
        let mut ends = Vec::new();
        let mut gaps = Vec::new();
        // Per partition: whether the batch left it at its end or at a record.
        let mut at_end = vec![None; positions.len()];
        // Per partition: the newest record time the batch holds.
        let mut newest = vec![None; positions.len()];
        // Indexes of the records not applied before (not a redelivery), and
        // whether offsets were skipped just before each.
        let mut fresh = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let (partition, end) = match event {
                Event::Record(record) => {
                    if let Some(slot) = newest.get_mut(record.partition as usize) {
                        *slot = Some(record.time().max(slot.unwrap_or(i64::MIN)));
                    }
                    match advance(&mut positions, record.partition, record.offset) {
                        Step::Old => {}
                        Step::Next => fresh.push((i, false)),
                        Step::Gap => {
                            gaps.push(record.partition);
                            fresh.push((i, true));
                        }
                    }
                    (record.partition, false)
                }
                Event::Skipped { partition, offset } => {
                    if advance(&mut positions, *partition, *offset) == Step::Gap {
                        gaps.push(*partition);
                        hazards.mark_inexact(*partition);
                    }
                    (*partition, false)
                }
                Event::EndOfPartition(partition) => {
                    ends.push(*partition);
                    (*partition, true)
                }
            };
            if let Some(slot) = at_end.get_mut(partition as usize) {
                *slot = Some(end);
            }
        }
        let records = fresh.iter().map(|(i, gap)| match &events[*i] {
            Event::Record(record) => (record, *gap),
            _ => unreachable!("fresh holds records"),
        });
        let resolved = self.resolve(&mut hazards, records)?;
        let mut to_table: Vec<&Record> = Vec::with_capacity(resolved.len());
        for (resolution, (i, _)) in resolved.iter().zip(&fresh) {
            match (&resolution.effect, &events[*i]) {
                (Effect::Same, Event::Record(record)) => to_table.push(record),
                (Effect::Replace(states), _) => to_table.extend(states),
                _ => {}
            }
        }
        self.table.commit(&to_table, &positions, &at_end)?;
        drop(to_table);

        // Readers wait for this lock: from waiting for it to the last part
        // installed (a batch, at most a few hundred microseconds), this
        // thread must not be preempted by background work (crate::scheduling,
        // measure 3).
        let ceiling = crate::scheduling::Ceiling::raise();
        let mut inner = self.inner.write();
        // Decided under the lock, so a subscription (taken under it too)
        // receives exactly the parts applied after its positions; decided
        // again each time the lock was let go (below).
        let mut watched = self.changes.is_watched();
        // Where the part installed so far ends, per partition: moved event
        // by event as `positions` was, so it ends equal to it.
        let mut reached = inner.positions.clone();
        let mut changes = Vec::new();
        let mut applied = Vec::with_capacity(resolved.len().min(Self::INSTALL_PART));
        let mut visible = Vec::with_capacity(resolved.len().min(Self::INSTALL_PART));
        let mut delivered = Vec::new();
        let count = resolved.len() as u64;
        let mut resolved = resolved.into_iter();
        let mut fresh = fresh.into_iter().map(|(i, _)| i).peekable();
        for (i, event) in events.drain(..).enumerate() {
            match &event {
                Event::Record(record) => {
                    advance(&mut reached, record.partition, record.offset);
                }
                Event::Skipped { partition, offset } => {
                    advance(&mut reached, *partition, *offset);
                }
                Event::EndOfPartition(_) => {}
            }
            if fresh.next_if_eq(&i).is_none() {
                continue;
            }
            let Event::Record(record) = event else {
                unreachable!("fresh holds records")
            };
            let Resolution { effect, outcome } = resolved.next().expect("one per fresh record");
            if watched {
                match &effect {
                    Effect::Same => changes.push(Change::from(&record)),
                    // The keys' new states, at the record's own place in the
                    // log, named after what the record did to each.
                    Effect::Replace(states) => {
                        changes.extend(states.iter().map(|state| Change::replaced(&record, state)))
                    }
                    // Nothing changed (a refused condition, a repair that
                    // restates what this view holds): nothing to report.
                    Effect::None => {}
                }
            }
            if let (Some(id), Some(outcome)) = (record.id, outcome) {
                let exact = !hazards.is_inexact_partition(record.partition);
                delivered.push((id, Delivered { outcome, exact }));
            }
            let offset = record.offset;
            // Each key the table receives: whether it was readable through
            // the overlay before, then the overlay forgets what it supersedes.
            match effect {
                Effect::Same => {
                    visible.push(inner.overlay.contains(record.key()));
                    inner.overlay.forget(record.key(), offset);
                    applied.push(record);
                }
                Effect::Replace(states) => {
                    inner.overlay.forget(record.key(), offset);
                    for state in states {
                        visible.push(inner.overlay.contains(state.key()));
                        inner.overlay.forget(state.key(), offset);
                        applied.push(state);
                    }
                }
                Effect::None => inner.overlay.forget(record.key(), offset),
            }
            if applied.len() >= Self::INSTALL_PART {
                let part = (std::mem::take(&mut applied), std::mem::take(&mut visible));
                self.install_part(&mut inner, part, &reached, std::mem::take(&mut changes));
                RwLockWriteGuard::bump(&mut inner);
                watched = self.changes.is_watched();
            }
        }
        debug_assert_eq!(reached, positions, "the parts end where the batch does");
        self.install_part(&mut inner, (applied, visible), &positions, changes);
        drop(inner);
        drop(ceiling);
        let unsettled: Vec<RepairHint> = hazards
            .take_touched_unsettled()
            .into_iter()
            .map(RepairHint::from)
            .collect();
        for partition in &gaps {
            self.tracker.await_target(*partition);
        }
        self.log_clock.advance(&newest, &at_end);
        self.tracker.advance(positions, count, &ends);
        // After the positions moved: the repairer ignores a hint for a key
        // whose repair it has not yet seen applied, counting on the batch
        // that applies it to report the key again if it still needs one.
        self.report_unsettled(unsettled);
        if hazards.any_inexact() {
            for (partition, reached) in self.tracker.reached().into_iter().enumerate() {
                if reached {
                    hazards.mark_exact(partition as i32);
                }
            }
        }
        drop(hazards);
        if !delivered.is_empty() {
            let mut waiters = self.waiters.lock();
            for (id, delivered) in delivered {
                match waiters.remove(&id) {
                    Some(Waiter::Reply(waiter)) => {
                        let _ = waiter.send(delivered);
                    }
                    Some(Waiter::Check(answered)) if answered != delivered.outcome => {
                        metrics::counter!("kafkv_fast_path_mismatches_total").increment(1);
                        tracing::error!(
                            ?answered,
                            applied = ?delivered.outcome,
                            "a read-modify-write was answered at acknowledgement with another \
                             outcome than the log gives; please report this"
                        );
                    }
                    _ => {}
                }
            }
        }
        Ok(Applied { gaps })
    }

    /// Installs one part of a batch under `inner`, whose overlay already
    /// forgot what the part supersedes: the part's records into the table,
    /// `reached` (where the part ends) as the positions, this instance's
    /// records below it out of the fast path's tail, and the part's changes
    /// to subscribers. Between parts a reader sees the log applied up to a
    /// record boundary, with overlay, table, positions and tail agreeing.
    fn install_part(
        &self,
        inner: &mut Inner,
        (applied, visible): (Vec<Record>, Vec<bool>),
        reached: &[i64],
        changes: Vec<Change>,
    ) {
        self.table.install(applied, &visible);
        inner.positions.clone_from_slice(reached);
        // This instance's records the consumer has now applied leave the
        // fast path's tail (taken after `inner`, as everywhere).
        for (tail, position) in self.tail.lock().iter_mut().zip(reached) {
            if tail.first_key_value().is_some_and(|(at, _)| at < position) {
                *tail = tail.split_off(position);
            }
        }
        if !changes.is_empty() {
            self.changes.publish(ChangeBatch {
                changes,
                positions: reached.to_vec(),
            });
        }
    }

    /// Works out what each fresh record does, in order (a record sees the
    /// effect of the ones before it in the batch). On a table error the
    /// batch is retried; the bookkeeping of the records already resolved is
    /// idempotent (`Hazards::resolve`).
    fn resolve<'a>(
        &self,
        hazards: &mut Hazards,
        records: impl Iterator<Item = (&'a Record, bool)> + Clone,
    ) -> Result<Vec<Resolution>, StateError> {
        // Keys a batch touches besides its own.
        let batched = records.clone().flat_map(|(record, _)| match &record.kind {
            Kind::Op(Op::Batch(multi)) => multi.keys().into_iter().map(|key| &key[..]).collect(),
            _ => Vec::new(),
        });
        // Keys a record of the batch is evaluated against: only their plain
        // writes need remembering in `batch` (usually there are none).
        let evaluated: hashbrown::HashSet<&[u8]> = records
            .clone()
            .filter(|(record, _)| record.kind != Kind::Plain || record.id.is_some())
            .map(|(record, _)| record.key())
            .chain(batched)
            .collect();
        // Those keys' states as this batch left them so far.
        let mut batch: HashMap<&[u8], Option<KeyState>> = HashMap::new();
        let mut out = Vec::new();
        // Instances that wrote expiring puts, and that swept, in this batch:
        // sweepers to rank (`store/sweeper.rs`).
        let mut writers: Vec<(u32, i64)> = Vec::new();
        let mut sweepers: Vec<(u32, i64)> = Vec::new();
        for (record, gap) in records {
            if gap {
                hazards.mark_inexact(record.partition);
            }
            if let Some(writer) = record.sweeper
                && writers.last().is_none_or(|(last, _)| *last != writer)
            {
                writers.push((writer, record.time()));
            }
            let plain = record.kind == Kind::Plain;
            if plain && record.id.is_none() && !hazards.is_inexact_partition(record.partition) {
                // The common case: a plain put or delete nobody waits for.
                hazards.resolve_plain(record);
                if evaluated.contains(record.key()) {
                    batch.insert(record.key(), record.plain_state());
                }
                out.push(Resolution {
                    effect: Effect::Same,
                    outcome: None,
                });
                continue;
            }
            if let Kind::Op(Op::Batch(multi)) = &record.kind {
                out.push(self.resolve_batch(hazards, &mut batch, record, multi)?);
                continue;
            }
            let before = self.state_before(&batch, record.key())?;
            let resolved = hazards.resolve(record, before.clone(), self.is_own(record.id));
            if let Kind::Sweep {
                sweeper,
                expires_at,
                ..
            } = &record.kind
            {
                sweepers.push((*sweeper, record.time()));
                self.note_sweep(
                    before.is_some(),
                    resolved.after.is_some(),
                    record,
                    *expires_at,
                );
            }
            let effect = if plain {
                Effect::Same
            } else if resolved.after == before {
                Effect::None
            } else {
                let state = state_record(
                    record.partition,
                    record.offset,
                    record.key(),
                    &resolved.after,
                );
                Effect::Replace(vec![state.with_timestamp(record.timestamp)])
            };
            batch.insert(record.key(), resolved.after);
            out.push(Resolution {
                effect,
                outcome: record.id.map(|_| resolved.outcome),
            });
        }
        self.roster.note(&sweepers, &writers);
        Ok(out)
    }

    /// `key`'s state just before the record being resolved: as the batch left
    /// it, else as the table holds it.
    fn state_before(
        &self,
        batch: &HashMap<&[u8], Option<KeyState>>,
        key: &[u8],
    ) -> Result<Option<KeyState>, StateError> {
        Ok(match batch.get(key) {
            Some(state) => state.clone(),
            None => self.table.get(key)?.map(versioned_state),
        })
    }

    /// A multi-key batch: evaluated on all its keys at once; every key it
    /// writes, and the key it is recorded under, now has a hazardous newest
    /// record (docs/rmw.md).
    fn resolve_batch<'a>(
        &self,
        hazards: &mut Hazards,
        batch: &mut HashMap<&'a [u8], Option<KeyState>>,
        record: &'a Record,
        multi: &'a Batch,
    ) -> Result<Resolution, StateError> {
        let mut keys: Vec<&'a [u8]> = multi.keys().into_iter().map(|key| &key[..]).collect();
        if !keys.contains(&record.key()) {
            keys.push(record.key());
        }
        let mut states = Vec::with_capacity(keys.len());
        for key in &keys {
            states.push((Bytes::copy_from_slice(key), self.state_before(batch, key)?));
        }
        let befores = states.clone();
        let (held, steps) = multi.evaluate(&mut states, record.at());
        let own = self.is_own(record.id);
        let mut replaced = Vec::new();
        for ((key, (_, before)), (_, after)) in keys.iter().zip(befores).zip(states) {
            let ops: Vec<Op> = multi
                .steps
                .iter()
                .filter(|(step_key, op)| step_key == key && op.is_some())
                .filter_map(|(_, op)| op.clone())
                .collect();
            if ops.is_empty() && *key != record.key() {
                continue;
            }
            let pending = if ops.iter().any(|op| matches!(op, Op::CopyFrom { .. })) {
                // The value came from another key, whose state then a repair
                // of this one cannot bring back: re-apply the result, type
                // included (a renamed list stays a list).
                Pending::Copied {
                    held,
                    after: after.clone(),
                }
            } else {
                Pending::Steps { held, ops }
            };
            hazards.record_hazard(
                key,
                record.partition,
                record.at(),
                before.as_ref(),
                pending,
                own,
                *key != record.key(),
            );
            if after != before {
                let state = state_record(record.partition, record.offset, key, &after);
                replaced.push(state.with_timestamp(record.timestamp));
            }
            batch.insert(key, after);
        }
        let outcome = Outcome {
            before: None,
            after: None,
            applied: held,
            error: None,
            steps,
        };
        Ok(Resolution {
            effect: if replaced.is_empty() {
                Effect::None
            } else {
                Effect::Replace(replaced)
            },
            outcome: record.id.map(|_| outcome),
        })
    }

    /// Tells the repairer about keys a batch left not self-contained (it
    /// coalesces repeats).
    fn report_unsettled(&self, unsettled: Vec<RepairHint>) {
        if unsettled.is_empty() {
            return;
        }
        let hints = self.repair_hints.lock();
        let Some(hints) = hints.as_ref() else {
            return;
        };
        for hint in unsettled {
            let _ = hints.send(hint);
        }
    }

    /// A subscription to the changes applied from now on, and the positions
    /// it starts after: it receives every batch applied after them, and none
    /// before.
    pub fn subscribe_changes(&self) -> (ChangeReceiver, Vec<i64>) {
        let inner = self.inner.read();
        (self.changes.subscribe(), inner.positions.clone())
    }

    /// Like [`View::subscribe_changes`], with the recent window (switched on
    /// if it was off) as of the same instant: its batches end exactly where
    /// the subscription begins.
    pub fn subscribe_with_recent(&self) -> (ChangeReceiver, Vec<i64>, RecentChanges) {
        let inner = self.inner.read();
        let recent = self.changes.recent(&inner.positions);
        (self.changes.subscribe(), inner.positions.clone(), recent)
    }

    /// Every live key under `prefix` the consumer has applied (this
    /// instance's unapplied acknowledged writes excluded), in key order, with
    /// the positions it reflects: a snapshot to continue from with changes
    /// after those positions. Holds the view's read lock while it copies.
    pub fn applied_snapshot(&self, prefix: &[u8]) -> Result<Snapshot, StateError> {
        let inner = self.inner.read();
        let mut entries = Vec::new();
        let positions = self
            .table
            .visit_at(std::ops::Bound::Included(prefix), &mut |live| {
                if !live.key.starts_with(prefix) {
                    return false;
                }
                entries.push(live.to_owned_entry());
                true
            })?;
        // The disk table may hold a batch committed but not yet installed:
        // its own positions, read with the entries, are then the right ones.
        Ok(Snapshot {
            entries,
            positions: positions.unwrap_or_else(|| inner.positions.clone()),
        })
    }

    /// Makes the disk checkpoint durable (a no-op in memory).
    pub fn sync(&self) -> Result<(), StateError> {
        self.table.sync()
    }

    pub fn progress(&self) -> Progress {
        self.tracker.progress()
    }

    /// Waits until every partition's position reached `targets[p]`
    /// (i.e. every record below it is applied), or `timeout` passes.
    /// Returns `false` on timeout or when the view is closed.
    pub async fn wait_for_positions(&self, targets: &[i64], timeout: Duration) -> bool {
        self.tracker.wait_for_positions(targets, timeout).await
    }

    /// Waits until the start-up read finished.
    pub async fn wait_bootstrapped(&self) -> bool {
        self.tracker.wait_bootstrapped().await
    }

    /// Wakes every waiter; they return `false`.
    pub fn close(&self) {
        self.tracker.close();
    }
}

/// What one record of the batch does to the table, the change feed and its writer.
struct Resolution {
    effect: Effect,
    /// For a record whose writer waits.
    outcome: Option<Outcome>,
}

/// What the table receives for a record.
enum Effect {
    /// A plain put or delete: the record itself.
    Same,
    /// An operation or repair changed keys: their new states, each a put at
    /// the key's version or a tombstone.
    Replace(Vec<Record>),
    /// The key did not change (a failed condition, a repair on an exact view).
    None,
}

/// This machine's clock in ms since the Unix epoch: what plain reads judge
/// expiry by (never what a state change is decided at), and what watch
/// tokens are stamped with.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A table entry as evaluation sees it.
fn versioned_state(v: Versioned) -> KeyState {
    KeyState {
        value: v.value,
        version: v.offset,
        expires_at: v.expires_at,
        ty: v.ty,
    }
}

/// What the table receives for a key an operation, repair or SWEEP at
/// `offset` left in `state`: a put at the key's version with its expiry, or
/// a tombstone.
fn state_record(partition: i32, offset: i64, key: &[u8], state: &Option<KeyState>) -> Record {
    match state {
        Some(state) => Record::put(partition, state.version, key, &state.value)
            .with_expiry(state.expires_at)
            .with_type(state.ty),
        None => Record::tombstone(partition, offset, key),
    }
}

/// The fast path evaluates only records whose outcome does not depend on
/// time (no expiry anywhere in sight), so any time gives the same result.
fn untimed(offset: i64) -> crate::op::At {
    crate::op::At { offset, time: 0 }
}

/// Where a record sits relative to its partition's position.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Already applied (a duplicate delivery after a reconnect), or an
    /// unknown partition.
    Old,
    /// The next offset.
    Next,
    /// Beyond the next offset: compaction removed what lay between.
    Gap,
}

/// Moves `partition`'s position past `offset`.
fn advance(positions: &mut [i64], partition: i32, offset: i64) -> Step {
    match positions.get_mut(partition as usize) {
        Some(position) if offset >= *position => {
            let step = if offset == *position {
                Step::Next
            } else {
                Step::Gap
            };
            *position = offset + 1;
            step
        }
        _ => Step::Old,
    }
}
