//! The read-modify-write protocol's per-key bookkeeping (docs/rmw.md): what
//! one record does to a key's state, given what this instance knows of the
//! key's history, and which keys' newest record is not self-contained (so
//! needs a repair).
//!
//! Invariants:
//! - A key has an unsettled entry exactly when its newest applied record is
//!   not self-contained (an operation, a repair that does not state the
//!   key's current state, or a stale repair). A key an operation touched, or
//!   any key of an inexact partition, keeps a settled entry (a *marker*) for
//!   [`MARKER_WINDOW_MS`] of record time after it was last stated whole: its
//!   base, without which a stale repair arriving after a delete could not
//!   be told from a current one (an absent key has no version).
//! - An *exact* partition (no offset of it was ever skipped since this view
//!   started, or since it last caught up with its target after a skip)
//!   holds the true state of every key: a repair, which restates a true
//!   state, cannot change it, so its state is not applied there; it only
//!   decides whether the key's newest record is now self-contained.
//! - An inexact partition (a compaction gap was skipped) may hold a wrong
//!   state for a key whose base was removed; there a repair is applied when
//!   no self-contained record newer than the offset it restates was applied,
//!   and the operations after that offset are re-applied on top of it.
//!
//! Only the consumer thread mutates this; the repairer reads it under the
//! same lock (see `View::repair_statement`).

use std::collections::HashMap;

use bytes::Bytes;

use crate::{
    op::{At, KeyState, Op, Outcome},
    record::{Kind, Record},
};

/// An operation of a key's history after its base, to re-apply on top of a
/// repair (in an inexact partition).
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    /// A single-key operation, evaluated again.
    Op(Op),
    /// This key's steps of a batch: whether its conditions held where it was
    /// first evaluated, and the steps on this key in order. The conditions
    /// may be on other keys, whose past states a repair of this key does not
    /// bring back; what the batch did to this key beyond that is restated by
    /// this key's own repair after the batch.
    Steps { held: bool, ops: Vec<Op> },
    /// This key's steps of a batch that copied another key's value into it
    /// (`RENAME`, `COPY`): the source's state then cannot be brought back,
    /// so the result is re-applied as it was (value, expiry and type).
    Copied { held: bool, after: Option<KeyState> },
    /// A SWEEP that did not settle the key (docs/expiry.md).
    Sweep { restates: i64, expires_at: i64 },
}

impl Pending {
    fn reapply(&self, mut state: Option<KeyState>, at: At) -> Option<KeyState> {
        match self {
            Pending::Op(op) => op.evaluate(state.as_ref(), at).1.after,
            Pending::Sweep {
                restates,
                expires_at,
            } => apply_sweep(state, *restates, *expires_at, at.time),
            Pending::Steps { held: false, .. } | Pending::Copied { held: false, .. } => state,
            Pending::Copied { held: true, after } => after.clone().map(|after| KeyState {
                version: at.offset,
                ..after
            }),
            Pending::Steps { held: true, ops } => {
                for op in ops {
                    state = op.evaluate(state.as_ref(), at).1.after;
                }
                state
            }
        }
    }
}

/// What this instance knows of one key's history.
#[derive(Debug, Default)]
struct Entry {
    partition: i32,
    /// The offset as of which the key was last stated whole (a put's or
    /// delete's own offset, or the offset an applied repair restates).
    base: Option<i64>,
    /// The operations applied after `base`, in log order.
    pending: Vec<(At, Pending)>,
    /// The offset of the newest record applied to the key since it has had
    /// an entry: a SWEEP settles its key only if nothing touched the key
    /// after the sweeper's view.
    touched: i64,
    /// Whether the newest record is self-contained (kept only in inexact
    /// partitions, for `base`).
    settled: bool,
    /// The newest operation was written by this instance.
    own: bool,
    /// The newest hazardous record is a batch recorded under another key.
    /// That key's repair must be in the log before this one's: Kafka removes
    /// this key's records (a repair tombstone included) by this key alone,
    /// while the batch survives until a newer record of *its* key is
    /// cleanable (docs/rmw.md, "Limits").
    elsewhere: bool,
    /// When (record time, ms) the key was last stated whole, for sweeping
    /// settled entries after [`MARKER_WINDOW`].
    at: Option<i64>,
}

/// A key whose newest record is not self-contained, as the repairer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsettled<'a> {
    pub key: &'a [u8],
    pub partition: i32,
    /// This instance wrote the newest operation.
    pub own: bool,
    /// The newest hazardous record is a batch recorded under another key.
    pub elsewhere: bool,
}

/// How long (in record time) a settled key's base is remembered after an
/// operation touched it: a repair restating an offset before it can only be
/// written by an instance lagging that far behind, and the topic's tombstone
/// retention (at least `MIN_TIMING_MARGIN`, 10 minutes by default with
/// `--min-compaction-lag`) must outlast it too (docs/rmw.md).
pub const MARKER_WINDOW_MS: i64 = 10 * 60 * 1000;

/// How often (in record time) settled entries older than the window are swept.
const SWEEP_EVERY_MS: i64 = 10 * 1000;

impl Entry {
    /// A key stated whole by the plain `record` (settled), remembered for its base.
    fn marker(record: &Record) -> Self {
        Self {
            partition: record.partition,
            base: Some(record.offset),
            touched: record.offset,
            settled: true,
            at: record.timestamp,
            ..Self::default()
        }
    }
}

/// What applying one record did.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The key's state after the record.
    pub after: Option<KeyState>,
    /// The record's outcome, for its writer.
    pub outcome: Outcome,
}

/// Keys whose newest record needs a repair, and the bases inexact partitions keep.
#[derive(Debug, Default)]
pub(crate) struct Hazards {
    entries: HashMap<Box<[u8]>, Entry>,
    /// Per partition: a compaction gap was skipped and the view has not yet
    /// caught up with the target set then.
    inexact: Vec<bool>,
    /// The record time of the last sweep.
    swept_at: i64,
    /// Keys a record touched since [`Hazards::take_touched_unsettled`] last
    /// ran: only a record of a key can unsettle it, so only these can need
    /// a repair the repairer has not heard of.
    touched: Vec<Box<[u8]>>,
}

impl Hazards {
    pub fn new(partitions: usize) -> Self {
        Self {
            entries: HashMap::new(),
            inexact: vec![false; partitions],
            swept_at: 0,
            touched: Vec::new(),
        }
    }

    /// A plain put or delete in an exact partition, whose writer does not
    /// wait: it settles its key.
    pub fn resolve_plain(&mut self, record: &Record) {
        if self.entries.is_empty() {
            return;
        }
        // A key an operation touched keeps its base (a marker) for a while,
        // so a stale repair arriving later is known as stale.
        if let Some(entry) = self.entries.get_mut(record.key()) {
            *entry = Entry::marker(record);
        }
        self.sweep(record.timestamp);
    }

    pub fn is_inexact_partition(&self, partition: i32) -> bool {
        self.inexact
            .get(partition as usize)
            .copied()
            .unwrap_or(false)
    }

    pub fn any_inexact(&self) -> bool {
        self.inexact.iter().any(|inexact| *inexact)
    }

    /// A gap was skipped in `partition`.
    pub fn mark_inexact(&mut self, partition: i32) {
        if let Some(slot) = self.inexact.get_mut(partition as usize) {
            *slot = true;
        }
    }

    /// The view caught up with the target set at the last gap: its state is
    /// the log's again (docs/rmw.md, the ready rule), and the bases kept
    /// only for settled keys can go.
    pub fn mark_exact(&mut self, partition: i32) {
        if let Some(slot) = self.inexact.get_mut(partition as usize) {
            *slot = false;
        }
    }

    /// Forgets settled entries stated whole more than [`MARKER_WINDOW_MS`]
    /// before `now` (a record's time), at most every [`SWEEP_EVERY_MS`].
    fn sweep(&mut self, now: Option<i64>) {
        let Some(now) = now else {
            return;
        };
        if now < self.swept_at + SWEEP_EVERY_MS {
            return;
        }
        self.swept_at = now;
        let inexact = &self.inexact;
        self.entries.retain(|_, entry| {
            !entry.settled
                || inexact
                    .get(entry.partition as usize)
                    .copied()
                    .unwrap_or(false)
                || entry.at.is_none_or(|at| now - at < MARKER_WINDOW_MS)
        });
    }

    /// Keys whose newest record is not self-contained, with whether this
    /// instance wrote the newest operation.
    pub fn unsettled(&self) -> impl Iterator<Item = Unsettled<'_>> {
        self.entries
            .iter()
            .filter(|(_, entry)| !entry.settled)
            .map(|(key, entry)| Unsettled {
                key,
                partition: entry.partition,
                own: entry.own,
                elsewhere: entry.elsewhere,
            })
    }

    /// The keys touched since the last call that are unsettled now, once
    /// each: what the repairer needs to hear after a batch. Reporting every
    /// unsettled key after every batch cost time in proportion to all keys
    /// an operation touched in the last ten minutes: INCR on 100,000
    /// random keys fell to 31 per second on one client.
    pub fn take_touched_unsettled(&mut self) -> Vec<Unsettled<'_>> {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        touched
            .iter()
            .filter_map(|key| {
                let (key, entry) = self.entries.get_key_value(key)?;
                (!entry.settled).then_some(Unsettled {
                    key,
                    partition: entry.partition,
                    own: entry.own,
                    elsewhere: entry.elsewhere,
                })
            })
            .collect()
    }

    /// Whether `key`'s newest record is not self-contained.
    pub fn is_unsettled(&self, key: &[u8]) -> bool {
        self.entries.get(key).is_some_and(|entry| !entry.settled)
    }

    /// Applies `record` to its key, whose state just before it is `before`.
    /// `own` says whether this instance wrote it.
    pub fn resolve(&mut self, record: &Record, before: Option<KeyState>, own: bool) -> Resolved {
        let key = record.key();
        self.touched.push(key.into());
        let offset = record.offset;
        let inexact = self.is_inexact_partition(record.partition);
        match &record.kind {
            Kind::Plain => {
                let after = record.plain_state();
                if inexact {
                    // Remember where the key was stated whole: a repair
                    // restating an earlier offset must not undo this.
                    self.entries.insert(key.into(), Entry::marker(record));
                } else {
                    self.resolve_plain(record);
                }
                // What a put replaced, as GETSET and `SET … GET` answer:
                // absent if it had expired at the record's time.
                let replaced = crate::op::live_at(before.as_ref(), record.time()).cloned();
                Resolved {
                    outcome: Outcome::replaced(replaced, after.clone()),
                    after,
                }
            }
            Kind::Op(op) => {
                let (_, outcome) = op.evaluate(before.as_ref(), record.at());
                self.record_hazard(
                    key,
                    record.partition,
                    record.at(),
                    before.as_ref(),
                    Pending::Op(op.clone()),
                    own,
                    false,
                );
                Resolved {
                    after: outcome.after.clone(),
                    outcome,
                }
            }
            Kind::Repair { restates, version } => {
                let stated = match (record.value(), version) {
                    (Some(value), Some(version)) => Some(KeyState {
                        value: Bytes::copy_from_slice(value),
                        version: *version,
                        expires_at: record.expires_at,
                        ty: record.ty,
                    }),
                    _ => None,
                };
                let entry = self.entries.remove(key);
                let base = match &entry {
                    Some(entry) => entry.base,
                    None => before.as_ref().map(|state| state.version),
                };
                let mut after = before.clone();
                let elsewhere = entry.as_ref().is_some_and(|entry| entry.elsewhere);
                let mut pending = entry.map(|entry| entry.pending).unwrap_or_default();
                let applies = base.is_none_or(|base| base <= *restates);
                if applies {
                    pending.retain(|(at, _)| at.offset > *restates);
                }
                if inexact && applies {
                    after = stated.clone();
                    for (at, op) in &pending {
                        after = op.reapply(after, *at);
                    }
                }
                // A stale repair is never self-contained, even when what it
                // states happens to be the key's state: once compaction keeps
                // it alone, a view that read a newer record before a gap would
                // ignore it (the model's counterexample, docs/rmw.md).
                // Nor does one that restates an offset before a batch still
                // pending on the key: the batch is re-applied with the
                // verdict this instance first gave it, which a lost base may
                // have made wrong (the model's counterexample
                // `a_repair_before_a_batch_must_not_settle_its_key`).
                let settled = applies
                    && after == stated
                    && !pending.iter().any(|(_, pending)| {
                        matches!(pending, Pending::Steps { .. } | Pending::Copied { .. })
                    });
                self.entries.insert(
                    key.into(),
                    Entry {
                        partition: record.partition,
                        base: if applies { Some(*restates) } else { base },
                        pending: if settled { Vec::new() } else { pending },
                        touched: offset,
                        settled,
                        own: false,
                        elsewhere: elsewhere && !settled,
                        at: record.timestamp,
                    },
                );
                self.sweep(record.timestamp);
                Resolved {
                    outcome: Outcome::replaced(before, after.clone()),
                    after,
                }
            }
            Kind::Sweep {
                restates,
                expires_at,
                ..
            } => {
                let after = apply_sweep(before.clone(), *restates, *expires_at, record.time());
                let entry = self.entries.get(key);
                // Nothing touched the key after the sweeper's view: its
                // state is no newer than `restates`, and no record since
                // (a failed condition, a repair, a delete, another SWEEP)
                // left a trace. An absent key may have been deleted after
                // the view, which leaves none: then the SWEEP counts as a
                // hazard (one repair more, never a wrong state). Entries
                // outlive a SWEEP's flight: a marker lasts
                // MARKER_WINDOW_MS of record time, and a SWEEP is appended
                // within the producer's delivery timeout of its view.
                let alone = before
                    .as_ref()
                    .is_some_and(|state| state.version <= *restates)
                    && entry.is_none_or(|entry| entry.settled && entry.touched <= *restates);
                if !inexact && after.is_none() && alone {
                    // A DEL for the protocol.
                    if let Some(entry) = self.entries.get_mut(key) {
                        *entry = Entry::marker(record);
                    }
                    self.sweep(record.timestamp);
                } else {
                    self.record_hazard(
                        key,
                        record.partition,
                        record.at(),
                        before.as_ref(),
                        Pending::Sweep {
                            restates: *restates,
                            expires_at: *expires_at,
                        },
                        own,
                        false,
                    );
                }
                Resolved {
                    outcome: Outcome::replaced(before, after.clone()),
                    after,
                }
            }
        }
    }

    /// `key` is touched by a hazardous record at `offset` (an operation, or
    /// a batch that writes it or is keyed by it; `elsewhere`: keyed by
    /// another key); `before` is its state just before.
    #[allow(clippy::too_many_arguments)]
    pub fn record_hazard(
        &mut self,
        key: &[u8],
        partition: i32,
        at: At,
        before: Option<&KeyState>,
        pending: Pending,
        own: bool,
        elsewhere: bool,
    ) {
        self.touched.push(key.into());
        let entry = self.entries.entry(key.into()).or_insert_with(|| Entry {
            partition,
            // A key with no entry was last stated whole at its version
            // (present) or is unknown (absent).
            base: before.map(|state| state.version),
            ..Entry::default()
        });
        // A batch retried after a table error resolves its records again.
        if entry
            .pending
            .last()
            .is_none_or(|(last, _)| last.offset < at.offset)
        {
            entry.pending.push((at, pending));
        }
        entry.touched = entry.touched.max(at.offset);
        entry.settled = false;
        entry.own = own;
        // Sticky until the key is settled or restated by a put or delete: an
        // operation on the key after the batch does not release it (the
        // model's `an_operation_after_a_batch_must_not_release_its_key`).
        entry.elsewhere |= elsewhere;
    }
}

/// A SWEEP naming the sweeper's view (`restates`, `expires_at`) applied at
/// `time` to `state` (docs/expiry.md, "SWEEP in the protocol"): a state no
/// newer than the view is deleted when the view's expiry has passed,
/// whatever it holds — it may be a wrong state behind a gap, which the
/// SWEEP must overwrite as a DEL would; a newer state is deleted only if its
/// own expiry has passed. On a view holding the log's state both agree.
pub(crate) fn apply_sweep(
    state: Option<KeyState>,
    restates: i64,
    expires_at: i64,
    time: i64,
) -> Option<KeyState> {
    match state {
        Some(state) if state.version <= restates => (expires_at > time).then_some(state),
        Some(state) => (!state.is_expired_at(time)).then_some(state),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(value: &str, version: i64) -> Option<KeyState> {
        Some(KeyState::new(
            Bytes::copy_from_slice(value.as_bytes()),
            version,
        ))
    }

    fn expiring(value: &str, version: i64, expires_at: i64) -> Option<KeyState> {
        state(value, version).map(|s| KeyState {
            expires_at: Some(expires_at),
            ..s
        })
    }

    /// A SWEEP at `offset`, time `time`, by a sweeper that had applied up
    /// to `restates` and saw the key expire at `expires_at`.
    fn sweep(offset: i64, time: i64, restates: i64, expires_at: i64) -> Record {
        Record::tombstone(0, offset, b"k")
            .with_timestamp(Some(time))
            .with_kind(Kind::Sweep {
                restates,
                expires_at,
                sweeper: 1,
            })
    }

    #[test]
    fn a_winning_sweep_settles_without_bookkeeping() {
        let mut hazards = Hazards::new(1);
        let after = run(
            &mut hazards,
            expiring("v", 3, 100),
            &[sweep(7, 100, 6, 100)],
        );
        assert_eq!(after, None);
        assert!(!hazards.is_unsettled(b"k"));
        assert_eq!(hazards.entries.len(), 0, "no entry for a plain expiry");
    }

    #[test]
    fn a_losing_sweep_is_a_hazard_and_its_repair_settles() {
        let mut hazards = Hazards::new(1);
        // Rewritten after the sweeper's view (version 8 > 6): it stays.
        let after = run(&mut hazards, state("new", 8), &[sweep(9, 100, 6, 100)]);
        assert_eq!(after, state("new", 8));
        assert!(hazards.is_unsettled(b"k"));
        let after = run(&mut hazards, after, &[repair(10, 9, state("new", 8))]);
        assert_eq!(after, state("new", 8));
        assert!(!hazards.is_unsettled(b"k"));
        // Landed before the expiry: nothing, and a hazard too.
        let mut hazards = Hazards::new(1);
        let after = run(&mut hazards, expiring("v", 3, 100), &[sweep(7, 99, 6, 100)]);
        assert_eq!(after, expiring("v", 3, 100));
        assert!(hazards.is_unsettled(b"k"));
    }

    #[test]
    fn a_sweep_after_a_record_it_did_not_see_is_a_hazard_even_when_it_deletes() {
        // An operation on the key after the sweeper's view that changed
        // nothing (a failed SET NX), repaired, then the SWEEP: it deletes,
        // but a reader that evaluated the operation without its base and
        // lost the repair to compaction would keep a wrong value, so the
        // key is repaired once more (docs/expiry.md, I5).
        let nx = Op::Set {
            value: Bytes::from_static(b"x"),
            when: crate::op::Condition::Absent,
        };
        let failed_nx = Record::put(0, 7, b"k", &nx.encode())
            .with_timestamp(Some(50))
            .with_kind(Kind::Op(nx));
        let mut hazards = Hazards::new(1);
        let start = expiring("v", 3, 100);
        let mut repaired = repair(8, 7, start.clone());
        repaired.expires_at = Some(100);
        let after = run(&mut hazards, start, &[failed_nx, repaired]);
        assert!(!hazards.is_unsettled(b"k"));
        let after = run(&mut hazards, after, &[sweep(9, 100, 6, 100)]);
        assert_eq!(after, None);
        assert!(
            hazards.is_unsettled(b"k"),
            "a record lay between r and the SWEEP"
        );
        // A SWEEP finding the key already absent may follow a delete it
        // did not see: a hazard as well.
        let mut hazards = Hazards::new(1);
        run(&mut hazards, None, &[sweep(9, 100, 6, 100)]);
        assert!(hazards.is_unsettled(b"k"));
    }

    #[test]
    fn a_sweep_overwrites_a_wrong_state_no_newer_than_its_view() {
        // The model's counterexample (a_sweep_must_name_the_view_it_deletes):
        // behind a gap, this view applied a stale repair restating 1v0 with
        // no expiry (it lost the put with a TTL after it). The SWEEP names
        // the sweeper's view at offset 2, where the key expired at 100:
        // version 0 is no newer, so the key goes, as the log says.
        let mut hazards = Hazards::new(1);
        hazards.mark_inexact(0);
        let after = run(&mut hazards, None, &[repair(2, 0, state("1", 0))]);
        assert_eq!(after, state("1", 0));
        let after = run(&mut hazards, after, &[sweep(3, 100, 2, 100)]);
        assert_eq!(after, None);
        // A state newer than the view is judged by its own expiry.
        assert_eq!(apply_sweep(state("2", 5), 2, 100, 100), state("2", 5));
        assert_eq!(apply_sweep(expiring("2", 5, 90), 2, 100, 100), None);
    }

    fn incr(offset: i64) -> Record {
        Record::put(0, offset, b"k", &Op::IncrBy(1).encode()).with_kind(Kind::Op(Op::IncrBy(1)))
    }

    fn repair(offset: i64, restates: i64, stated: Option<KeyState>) -> Record {
        let version = stated.as_ref().map(|s| s.version);
        let record = match &stated {
            Some(s) => Record::put(0, offset, b"k", &s.value),
            None => Record::tombstone(0, offset, b"k"),
        };
        record.with_kind(Kind::Repair { restates, version })
    }

    /// Applies `records` in order from `state`, as the view would.
    fn run(
        hazards: &mut Hazards,
        mut state: Option<KeyState>,
        records: &[Record],
    ) -> Option<KeyState> {
        for record in records {
            state = hazards.resolve(record, state, false).after;
        }
        state
    }

    #[test]
    fn an_exact_instance_keeps_its_state_and_settles_on_a_true_repair() {
        let mut hazards = Hazards::new(1);
        let state = run(&mut hazards, state("5", 0), &[incr(1), incr(2)]);
        assert_eq!(state, self::state("7", 2));
        assert!(hazards.is_unsettled(b"k"));
        // A repair of offset 1 leaves an operation after it: still unsettled.
        let state = run(&mut hazards, state, &[repair(3, 1, self::state("6", 1))]);
        assert_eq!(state, self::state("7", 2));
        assert!(hazards.is_unsettled(b"k"));
        let state = run(&mut hazards, state, &[repair(4, 3, self::state("7", 2))]);
        assert_eq!(state, self::state("7", 2));
        assert!(!hazards.is_unsettled(b"k"));
        assert_eq!(hazards.unsettled().count(), 0);
    }

    #[test]
    fn an_inexact_instance_is_corrected_by_a_repair_and_reapplies_what_followed() {
        let mut hazards = Hazards::new(1);
        hazards.mark_inexact(0);
        // The base (5 at offset 0) was compacted away: the increments count from nothing.
        let state = run(&mut hazards, None, &[incr(1), incr(2)]);
        assert_eq!(state, self::state("2", 2));
        let state = run(&mut hazards, state, &[repair(3, 1, self::state("6", 1))]);
        assert_eq!(
            state,
            self::state("7", 2),
            "offset 2 re-applied on the repair"
        );
        assert!(hazards.is_unsettled(b"k"));
    }

    #[test]
    fn a_stale_repair_never_undoes_a_newer_put_or_delete() {
        for inexact in [false, true] {
            let mut hazards = Hazards::new(1);
            if inexact {
                hazards.mark_inexact(0);
            }
            let state = run(&mut hazards, state("5", 0), &[incr(1)]);
            let deleted = run(&mut hazards, state, &[Record::tombstone(0, 2, b"k")]);
            let state = run(&mut hazards, deleted, &[repair(3, 1, self::state("6", 1))]);
            assert_eq!(state, None, "inexact: {inexact}");
            assert!(
                hazards.is_unsettled(b"k"),
                "a stale repair needs one after it"
            );
            let state = run(&mut hazards, state, &[repair(4, 3, None)]);
            assert_eq!(state, None);
            assert!(!hazards.is_unsettled(b"k"));
        }
    }

    // The model's counterexample (docs/rmw.md): a failed condition, a put, a
    // delete, then a lagging repair of the first offset stating "absent" —
    // which matches the state, yet must not count as self-contained: a view
    // that read the put before a compaction gap would ignore it as stale and
    // keep the put's value.
    #[test]
    fn a_stale_repair_stays_unsettled_even_when_it_matches() {
        for inexact in [false, true] {
            let mut hazards = Hazards::new(1);
            if inexact {
                hazards.mark_inexact(0);
            }
            let nx = Op::Set {
                value: Bytes::from_static(b"v"),
                when: crate::op::Condition::Present,
            };
            let failed = Record::put(0, 0, b"k", &nx.encode()).with_kind(Kind::Op(nx));
            let state = run(&mut hazards, None, &[failed]);
            let state = run(&mut hazards, state, &[Record::put(0, 1, b"k", b"1")]);
            let state = run(&mut hazards, state, &[Record::tombstone(0, 2, b"k")]);
            let state = run(&mut hazards, state, &[repair(3, 0, None)]);
            assert_eq!(state, None);
            assert!(hazards.is_unsettled(b"k"), "inexact: {inexact}");
            let state = run(&mut hazards, state, &[repair(4, 3, None)]);
            assert_eq!(state, None);
            assert!(!hazards.is_unsettled(b"k"), "inexact: {inexact}");
        }
    }

    #[test]
    fn markers_are_swept_after_the_window_but_unsettled_keys_never() {
        let mut hazards = Hazards::new(1);
        let at = |record: Record, ms| record.with_timestamp(Some(ms));
        run(&mut hazards, state("1", 0), &[at(incr(1), 1_000)]);
        run(
            &mut hazards,
            None,
            &[at(Record::tombstone(0, 2, b"k"), 2_000)],
        );
        run(
            &mut hazards,
            None,
            &[at(
                Record::put(0, 3, b"u", &Op::IncrBy(1).encode()).with_kind(Kind::Op(Op::IncrBy(1))),
                3_000,
            )],
        );
        assert_eq!(hazards.entries.len(), 2, "k's marker and u's hazard");
        let late = 2_000 + MARKER_WINDOW_MS;
        run(
            &mut hazards,
            None,
            &[at(Record::put(0, 4, b"other", b"x"), late)],
        );
        assert!(!hazards.entries.contains_key(&b"k"[..]), "k's marker swept");
        assert!(
            hazards.is_unsettled(b"u"),
            "an unsettled key is never swept"
        );
    }

    #[test]
    fn a_repair_restating_an_offset_before_a_pending_batch_does_not_settle_its_key() {
        use crate::op::Condition;
        let mut hazards = Hazards::new(1);
        // A batch at 1, recorded under another key, failed its conditions and
        // left k at 5v0; a repair restating offset 0 states exactly that.
        let steps = Pending::Steps {
            held: false,
            ops: vec![Op::Set {
                value: Bytes::from_static(b"6"),
                when: Condition::Always,
            }],
        };
        let five = state("5", 0);
        hazards.record_hazard(
            b"k",
            0,
            At { offset: 1, time: 0 },
            five.as_ref(),
            steps,
            false,
            true,
        );
        let after = run(&mut hazards, five.clone(), &[repair(2, 0, five.clone())]);
        assert_eq!(after, five);
        assert!(
            hazards.is_unsettled(b"k"),
            "the batch after offset 0 is still pending"
        );
        // A repair restating the batch's offset settles it.
        run(&mut hazards, after, &[repair(3, 1, five)]);
        assert!(!hazards.is_unsettled(b"k"));
    }

    #[test]
    fn a_key_written_by_another_keys_batch_waits_for_that_key_until_restated() {
        let mut hazards = Hazards::new(1);
        let steps = Pending::Steps {
            held: true,
            ops: Vec::new(),
        };
        hazards.record_hazard(b"k", 0, At { offset: 1, time: 0 }, None, steps, false, true);
        // An operation on k itself after the batch does not release it.
        run(&mut hazards, None, &[incr(2)]);
        let elsewhere =
            |hazards: &Hazards| hazards.unsettled().map(|u| u.elsewhere).collect::<Vec<_>>();
        assert_eq!(elsewhere(&hazards), [true]);
        // A put restates k whole: released (and settled).
        hazards.resolve(&Record::put(0, 3, b"k", b"v"), None, false);
        run(&mut hazards, state("v", 3), &[incr(4)]);
        assert_eq!(elsewhere(&hazards), [false]);
    }

    /// Regression: a key a RENAME copied a list into was pending as a plain
    /// string SET of the list's bytes, so a repair restating an offset
    /// before the RENAME (a view catching up after a gap) turned the list
    /// into a string, and this view's own repair then wrote it so.
    #[test]
    fn a_renamed_collection_is_re_applied_with_its_type() {
        use crate::collection::Type;
        let mut hazards = Hazards::new(1);
        let list = KeyState {
            ty: Type::List,
            ..KeyState::new(Bytes::from_static(b"encoded"), 1)
        };
        let copied = Pending::Copied {
            held: true,
            after: Some(list.clone()),
        };
        hazards.record_hazard(
            b"k",
            0,
            At { offset: 1, time: 0 },
            None,
            copied,
            false,
            false,
        );
        // A repair of k restating offset 0 (absent then): the RENAME at 1 is
        // re-applied on top.
        let after = run(&mut hazards, Some(list.clone()), &[repair(2, 0, None)]);
        assert_eq!(after, Some(list));
    }
}
