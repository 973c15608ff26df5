//! One kafkv instance's knowledge of the partition and how it applies a
//! record (docs/rmw.md, "What each instance keeps per key" and "Applying a
//! record at offset `o`"), with switches ([`Rules`]) that break single
//! rules so the tests can show each one matters.
//!
//! Invariant the model checks (property (a)): while an instance is ready,
//! every key's `state` equals the reference evaluation of the full log below
//! its position. [`Instance::apply`] is handed the full log but reads only
//! the record it applies (one of the current, compacted log) and the OP
//! records it applied before (their offsets are in `pending`; a real
//! instance keeps those operations itself).
//!
//! A batch is applied as `state/mod.rs` (`resolve_batch`) and
//! `state/hazards.rs` (`Pending::Steps`) do: evaluated once on the
//! instance's states of all its keys; every key it writes, and its record
//! key, get it as a pending, hazardous newest record; what is kept to
//! re-apply on top of a later repair of one of those keys is whether its
//! conditions held *here* (they may be on other keys, whose past states a
//! repair of this key cannot bring back) and this key's writes — or, for a
//! key it copied into, the state it left that key in. An instance that had
//! lost the base of a key the conditions read keeps a wrong verdict, so a
//! repair restating an offset before the batch does not settle a key
//! ([`Rules::repair_covers_batches`]); one restating an offset after it
//! drops the batch.

use std::hash::{Hash, Hasher};

use crate::log::{Body, Record};
use crate::spec::{
    Batch, Entry, Key, MAX_KEYS, Offset, OpKind, Reply, Time, Val, Write, eval_at, eval_batch,
    sweep,
};

/// What a batch left a key it copied into: value and expiry, or absent.
pub type Copied = Option<(Val, Option<Time>)>;

/// The protocol's own rules. [`Rules::PROTOCOL`] is docs/rmw.md (including
/// the rules the model added to it: `stale_is_hazard`,
/// `reply_only_when_ready`, and for batches `anchor_repair_first` and
/// `repair_covers_batches`); every other value drops one rule to show that
/// the model notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rules {
    /// On a repair, re-apply the pending operations after `r`.
    pub reapply_pending: bool,
    /// Ignore a repair whose `r` is older than the key's `base`.
    pub ignore_stale_repairs: bool,
    /// A stale repair leaves the key's newest record *not* self-contained
    /// (so it is repaired again, and compaction lag keeps it until then).
    /// Off: judged by the state alone, as for a current repair; then a
    /// stale repair that happens to match can stand in for a PUT or DEL it
    /// never saw, and an instance that read the PUT before a gap keeps it.
    pub stale_is_hazard: bool,
    /// Every ready instance repairs any key whose newest record is not
    /// self-contained. Off: only an operation's writer repairs, once, after
    /// applying its record (so a writer that crashes first leaves the
    /// hazard alone).
    pub backstop: bool,
    /// A writer answers its client only if it is ready when it applies its
    /// own record (its state there is then exact). Off: it answers whatever
    /// its state gives, even while catching up after a gap.
    pub reply_only_when_ready: bool,
    /// A repair counts as self-contained when the state after applying it
    /// equals what it restates. Off: repairs never settle a key, so
    /// instances repair forever (a repair rule that never stops).
    pub repairs_settle: bool,
    /// A batch is hazardous (pending, newest record not self-contained,
    /// repaired) for every key it writes as well as its record key. Off:
    /// only for its record key, as for a single-key operation; the other
    /// keys it writes just take their new state. The lag then waits for
    /// repairs of the record key only (what the protocol repairs is what
    /// the lag covers).
    pub repair_every_written_key: bool,
    /// Anchor first: which repairs of a key wait for the instance's repair
    /// of another key — the record key (anchor) of a batch that wrote it —
    /// so that the anchor's repair lands first (`store/repairer.rs` writes
    /// it before the other keys', pulling it forward if it is not due yet).
    /// Then, when compaction removes a repair tombstone of the other key,
    /// the batch below it goes too.
    pub anchor_repair_first: AnchorFirst,
    /// A repair settles its key only if no batch touching the key lies
    /// between the offset it restates and the repair: re-applied on top of a
    /// repair, a batch keeps the verdict its conditions got where this
    /// instance first evaluated it, and an instance that had lost the base
    /// of a key those conditions read got it wrong (a lagging instance's
    /// repair restating an offset before the batch then carries the wrong
    /// verdict into a reader's state). Such a repair is hazardous: it is
    /// repaired again, as of an offset after the batch, which drops the
    /// batch from every reader's pending operations. Off: judged by the
    /// state alone, as for a single-key operation.
    pub repair_covers_batches: bool,
    /// Expiry (docs/expiry.md): every decision is taken at the record's
    /// timestamp. Off: an instance decides whether a key is expired by its
    /// own clock when it applies the record (the model's `State::now`).
    pub decide_at_record_time: bool,
    /// A relative TTL is resolved against the record's timestamp. Off:
    /// against the applying instance's clock.
    pub ttl_from_record_time: bool,
    /// A sweeper writes a SWEEP, which deletes only a key expired at its
    /// own timestamp. Off: a plain DEL (docs/expiry.md, option 1).
    pub conditional_sweep: bool,
    /// A SWEEP that leaves its key present is hazardous (pending,
    /// repaired, held by the lag). Off: every SWEEP counts as
    /// self-contained.
    pub failed_sweep_is_hazard: bool,
    /// A sweeper sweeps only keys whose newest record it applied is
    /// self-contained (settled); unsettled ones are the repairer's.
    pub sweep_settled_only: bool,
    /// A SWEEP that finds its key absent settles it (base := its offset,
    /// as a DEL) only where the instance is ready, its state exact.
    /// Elsewhere it stays pending like an OP. Off: it settles wherever it
    /// finds the key absent, and an instance behind a gap that still holds
    /// an older, expired entry takes a SWEEP that lost to a rewrite it
    /// never saw for a win, then ignores the repair restating the rewrite
    /// as stale (the model's answer to docs/expiry.md's inexact-partition
    /// question).
    pub sweep_settles_only_when_ready: bool,
    /// A SWEEP names the sweeper's view — `r`, the newest offset it had
    /// applied, and `e`, the key's expiry there — and only ready instances
    /// sweep. An instance whose state of the key is absent or no newer
    /// than `r` applies it as "absent if `e` has passed at the record's
    /// time" whatever it holds, as it would a DEL; a newer state is
    /// evaluated as before. The SWEEP settles the key (at a ready
    /// instance) only when no record touched the key between `r` and it.
    /// Off: a SWEEP is evaluated on the applying instance's state alone
    /// and settles wherever it leaves the key absent, and a reader behind
    /// a gap that holds a wrong, unexpired state (a stale repair's, or an
    /// INCR it evaluated without its base) keeps the key a winning SWEEP
    /// deleted, once compaction has removed the record that would have
    /// corrected it.
    pub sweep_names_its_view: bool,
}

impl Rules {
    /// The protocol as docs/rmw.md states it.
    pub const PROTOCOL: Rules = Rules {
        reapply_pending: true,
        ignore_stale_repairs: true,
        stale_is_hazard: true,
        backstop: true,
        reply_only_when_ready: true,
        repairs_settle: true,
        repair_every_written_key: true,
        anchor_repair_first: AnchorFirst::SinceSettled,
        repair_covers_batches: true,
        decide_at_record_time: true,
        ttl_from_record_time: true,
        conditional_sweep: true,
        failed_sweep_is_hazard: true,
        sweep_settled_only: true,
        sweep_settles_only_when_ready: true,
        sweep_names_its_view: true,
    };
}

/// Which repairs wait for an anchor's repair ([`Rules::anchor_repair_first`]).
/// A key is *held* when the instance's record of it says a batch recorded
/// under another key touched it ([`KeyView::elsewhere`]); a held key is not
/// repaired while the instance wants to repair another key that is not held
/// (with two keys both held — batches anchored on each other — neither
/// waits, as the repairer's sort does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnchorFirst {
    /// Repairs in any order.
    Off,
    /// Held while the key's *newest* hazardous record is such a batch: an
    /// operation of the key itself after the batch releases it. This is
    /// `hazards.rs` as written (`record_hazard` overwrites
    /// `Entry::elsewhere`); a failed CAS of the other key after the batch
    /// then lets its repair tombstone land before the anchor's
    /// (`tests/protocol.rs` replays the counterexample).
    NewestHazard,
    /// Held from such a batch until the key is settled or stated whole (a
    /// PUT or DEL), whatever operations of the key follow the batch.
    SinceSettled,
}

/// Ghost events, recorded in the state so `sometimes` properties can show
/// that the interesting situations are reached.
pub mod event {
    /// A repair re-applied at least one pending operation.
    pub const REAPPLIED: u16 = 1 << 0;
    /// A stale repair was ignored.
    pub const STALE_IGNORED: u16 = 1 << 1;
    /// A writer found a gap (compaction overtook it).
    pub const WRITER_GAP: u16 = 1 << 2;
    /// Compaction removed a record of a key older than a surviving OP of the
    /// same key: the state that OP was evaluated on is gone from the log.
    pub const BASE_REMOVED: u16 = 1 << 3;
    /// Compaction removed a tombstone under retention.
    pub const TOMBSTONE_REMOVED: u16 = 1 << 4;
    /// A writer applied its own operation while not ready and withheld the
    /// reply.
    pub const REPLY_WITHHELD: u16 = 1 << 5;
    /// The fresh instance became ready after finding a gap.
    pub const FRESH_READY_AFTER_GAP: u16 = 1 << 6;
    /// A repair of a key re-applied a batch recorded under another key.
    pub const BATCH_REAPPLIED: u16 = 1 << 7;
    /// Compaction removed a batch record that wrote a key other than its
    /// record key (that key's state now rests on its own records).
    pub const BATCH_SUPERSEDED: u16 = 1 << 8;
    /// A SWEEP was appended that deletes its key (by the log).
    pub const SWEEP_DELETED: u16 = 1 << 9;
    /// A SWEEP was appended that finds its key live and changes nothing
    /// (before its expiry, or after a rewrite).
    pub const SWEEP_LOST: u16 = 1 << 10;
    /// A repair re-applied a pending (losing) SWEEP.
    pub const SWEEP_REPAIRED: u16 = 1 << 11;
    /// A SET NX PX took a key whose previous entry had expired but was not
    /// swept (the lock taken over).
    pub const LOCK_TAKEN_EXPIRED: u16 = 1 << 12;
    /// The fresh instance applied a SWEEP after finding a gap.
    pub const FRESH_SWEEP_AFTER_GAP: u16 = 1 << 13;
    /// An EXPIRE's condition failed on a live key.
    pub const EXPIRE_REFUSED: u16 = 1 << 14;
}

/// An instance's knowledge of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyView {
    /// Value and version, or absent.
    pub state: Option<Entry>,
    /// The offset as of which `state` was last stated whole (a PUT's or
    /// DEL's offset, or an applied repair's `r`); `None` if never stated.
    pub base: Option<Offset>,
    /// Bit `o` set: the OP at offset `o` (a batch too) is after `base`
    /// (re-applied on top of a repair). The operation itself is read from
    /// that record.
    pub pending: u64,
    /// Whether the newest record of the key this instance applied is
    /// self-contained (true before any record).
    pub newest_sc: bool,
    /// The offset of the newest record touching the key this instance
    /// applied (a SWEEP settles only if none lies after its `r`).
    pub newest: Option<Offset>,
    /// Offset of this instance's newest repair of the key.
    pub last_repair: Option<Offset>,
    /// Only without the backstop: this instance wrote an operation on the
    /// key and has not repaired it yet.
    pub owes_repair: bool,
    /// A batch recorded under another key touched the key (`hazards.rs`,
    /// `Entry::elsewhere`), and the key is held behind that key's repair:
    /// set by such a batch; cleared by a PUT or DEL and by a repair that
    /// settles the key; under [`AnchorFirst::NewestHazard`] also by any
    /// other hazardous record of the key.
    pub elsewhere: bool,
}

impl Default for KeyView {
    fn default() -> Self {
        KeyView {
            state: None,
            base: None,
            pending: 0,
            newest_sc: true,
            newest: None,
            last_repair: None,
            owes_repair: false,
            elsewhere: false,
        }
    }
}

/// Writers run from the start; the fresh instance bootstraps later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Writer,
    Fresh,
}

/// One instance.
///
/// `Hash` (the model checker's state identity) leaves out what can no
/// longer influence anything: the ghost `crossed_gap`, everything of a
/// crashed instance, a target already reached, a `last_repair` the
/// instance has read past, and what it keeps of batches no key has pending
/// any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub role: Role,
    /// False once crashed: it never acts again.
    pub alive: bool,
    /// Writers are started from the beginning; the fresh one when it
    /// bootstraps.
    pub started: bool,
    /// The next offset to read.
    pub pos: Offset,
    /// Ready once `pos >= target` (the ready rule).
    pub target: Offset,
    /// Ghost: it found a gap at least once.
    pub crossed_gap: bool,
    pub keys: [KeyView; MAX_KEYS],
    /// Bit `o` set: the batch at offset `o`'s conditions held when this
    /// instance evaluated it (`Pending::Steps::held`, the same for all its
    /// keys).
    pub held: u64,
    /// For a key a batch copied into: (the batch's offset, the key, the
    /// value the batch left it with, or `None` for absent), as this
    /// instance computed it. Empty unless the menu has a copying batch.
    pub copied: Vec<(Offset, Key, Copied)>,
}

impl Hash for Instance {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.role.hash(h);
        self.alive.hash(h);
        if !self.alive {
            return;
        }
        self.started.hash(h);
        self.pos.hash(h);
        // Once reached, the target no longer matters (positions only grow).
        (self.pos < self.target).then_some(self.target).hash(h);
        let mut pending = 0;
        for kv in &self.keys {
            kv.state.hash(h);
            kv.base.hash(h);
            kv.pending.hash(h);
            kv.newest_sc.hash(h);
            kv.newest.hash(h);
            kv.last_repair.filter(|&o| o >= self.pos).hash(h);
            kv.owes_repair.hash(h);
            kv.elsewhere.hash(h);
            pending |= kv.pending;
        }
        (self.held & pending).hash(h);
        for &(o, k, v) in &self.copied {
            if self.keys[usize::from(k)].pending & (1 << o) != 0 {
                (o, k, v).hash(h);
            }
        }
    }
}

impl Instance {
    /// A writer, exact from offset 0.
    pub fn writer() -> Self {
        Instance {
            role: Role::Writer,
            alive: true,
            started: true,
            pos: 0,
            target: 0,
            crossed_gap: false,
            keys: Default::default(),
            held: 0,
            copied: Vec::new(),
        }
    }

    /// The fresh instance before it starts.
    pub fn fresh() -> Self {
        Instance {
            started: false,
            role: Role::Fresh,
            ..Instance::writer()
        }
    }

    /// Serves reads and may write (and repair).
    pub fn ready(&self) -> bool {
        self.started && self.pos >= self.target
    }

    /// Whether the protocol has this instance write a repair of `key` now,
    /// budget aside: it is ready, the newest record of the key it applied is
    /// not self-contained, and its own previous repair of the key (if any)
    /// is behind it — "coalesced per key" read as: an instance does not
    /// repeat a repair before it has read the previous one back (repeating
    /// earlier would restate the same offset again).
    pub fn wants_repair(&self, key: usize, rules: &Rules) -> bool {
        let kv = &self.keys[key];
        self.alive
            && self.ready()
            && !kv.newest_sc
            && kv.last_repair.is_none_or(|o| o < self.pos)
            && (rules.backstop || kv.owes_repair)
    }

    /// Whether the instance writes a repair of `key` now: it wants to, and
    /// anchor first ([`Rules::anchor_repair_first`]) does not hold it back
    /// behind a repair of another key it wants to write first.
    pub fn may_repair(&self, key: usize, rules: &Rules) -> bool {
        self.wants_repair(key, rules)
            && !(rules.anchor_repair_first != AnchorFirst::Off
                && self.keys[key].elsewhere
                && (0..MAX_KEYS).any(|other| {
                    other != key && !self.keys[other].elsewhere && self.wants_repair(other, rules)
                }))
    }

    /// Applies the record at offset `at` of `log` (a record of the current
    /// log). `ready_here`: whether the instance is ready at the moment it
    /// applies it (its position, `at`, reached its target). `now`: the
    /// instance's clock (only the broken rules read it). Returns the reply
    /// for the instance's own client operation if it answers it.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        me: u8,
        log: &[Record],
        at: Offset,
        ready_here: bool,
        now: Time,
        rules: &Rules,
        events: &mut u16,
    ) -> Option<(u8, Reply)> {
        let reply = self.apply_body(me, log, at, ready_here, now, rules, events);
        let touched = log[usize::from(at)].touched();
        for (k, kv) in self.keys.iter_mut().enumerate() {
            if touched & (1 << k) != 0 {
                kv.newest = Some(at);
            }
        }
        reply
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_body(
        &mut self,
        me: u8,
        log: &[Record],
        at: Offset,
        ready_here: bool,
        now: Time,
        rules: &Rules,
        events: &mut u16,
    ) -> Option<(u8, Reply)> {
        let rec = log[usize::from(at)];
        // The time each record is decided at, and the time its TTL is
        // resolved against.
        let decide = |r: &Record| {
            if rules.decide_at_record_time {
                r.ts
            } else {
                now
            }
        };
        let base = |r: &Record| {
            if rules.ttl_from_record_time {
                r.ts
            } else {
                now
            }
        };
        if rec.batch().is_some() {
            return self.apply_batch(me, &rec, at, ready_here, decide(&rec), rules, events);
        }
        let kv = &mut self.keys[usize::from(rec.key)];
        match rec.body {
            Body::Put(..) | Body::Del => {
                kv.state = match rec.body {
                    Body::Put(val, ttl) => Some(Entry {
                        val,
                        ver: at,
                        exp: ttl.map(|d| base(&rec).saturating_add(d)),
                    }),
                    _ => None,
                };
                kv.base = Some(at);
                kv.pending = 0;
                kv.newest_sc = true;
                kv.owes_repair = false;
                kv.elsewhere = false;
                None
            }
            Body::Sweep { r, e } => {
                let alone = !rules.sweep_names_its_view || kv.newest.is_none_or(|n| n <= r);
                kv.state = apply_sweep(kv.state, r, e, decide(&rec), rules);
                let exact = ready_here || !rules.sweep_settles_only_when_ready;
                if (kv.state.is_none() && exact && alone) || !rules.failed_sweep_is_hazard {
                    // Absent after it: a DEL for the protocol.
                    kv.base = Some(at);
                    kv.pending = 0;
                    kv.newest_sc = true;
                    kv.owes_repair = false;
                    kv.elsewhere = false;
                } else {
                    // Lost: pending like an OP, repaired.
                    kv.pending |= 1 << at;
                    kv.newest_sc = false;
                    if rules.anchor_repair_first == AnchorFirst::NewestHazard {
                        kv.elsewhere = false;
                    }
                    if rec.by == me && !rules.backstop {
                        kv.owes_repair = true;
                    }
                }
                None
            }
            Body::Op(kind) => {
                let (next, reply) = eval_at(kind, kv.state, at, decide(&rec), base(&rec));
                kv.state = next;
                kv.pending |= 1 << at;
                kv.newest_sc = false;
                if rules.anchor_repair_first == AnchorFirst::NewestHazard {
                    kv.elsewhere = false;
                }
                if rec.by != me {
                    return None;
                }
                let id = rec.op.expect("a client record carries its op id");
                if !rules.backstop {
                    kv.owes_repair = true;
                }
                if ready_here || !rules.reply_only_when_ready {
                    Some((id, reply))
                } else {
                    *events |= event::REPLY_WITHHELD;
                    None
                }
            }
            Body::Repair { r, s } => {
                let pending_before = kv.pending;
                let current = kv.base.is_none_or(|b| b <= r);
                let applied = current || !rules.ignore_stale_repairs;
                if applied {
                    kv.state = s;
                    kv.base = Some(r);
                    // Operations at or below r are inside s; the rest, all
                    // below `at`, happened after it.
                    let after_r = kv.pending & u64::MAX.checked_shl(u32::from(r) + 1).unwrap_or(0);
                    kv.pending = after_r;
                    if rules.reapply_pending && after_r != 0 {
                        *events |= event::REAPPLIED;
                        for o in 0..at {
                            if after_r & (1 << o) == 0 {
                                continue;
                            }
                            let pending = log[usize::from(o)];
                            kv.state = match pending.body {
                                Body::Op(OpKind::Batch(batch)) => {
                                    if pending.key != rec.key {
                                        *events |= event::BATCH_REAPPLIED;
                                    }
                                    let held = self.held & (1 << o) != 0;
                                    let copied = &self.copied;
                                    reapply_steps(&batch, held, copied, rec.key, kv.state, o)
                                }
                                Body::Op(kind) => {
                                    eval_at(kind, kv.state, o, decide(&pending), base(&pending)).0
                                }
                                Body::Sweep { r, e } => {
                                    *events |= event::SWEEP_REPAIRED;
                                    apply_sweep(kv.state, r, e, decide(&pending), rules)
                                }
                                _ => unreachable!("pending bits mark OP and SWEEP records only"),
                            };
                        }
                    }
                } else {
                    *events |= event::STALE_IGNORED;
                }
                let batch_after_r = (0..at).any(|o| {
                    pending_before & (1 << o) != 0 && o > r && log[usize::from(o)].batch().is_some()
                });
                kv.newest_sc = rules.repairs_settle
                    && kv.state == s
                    && (current || !rules.stale_is_hazard)
                    && !(rules.repair_covers_batches && batch_after_r);
                if kv.newest_sc {
                    kv.owes_repair = false;
                    kv.elsewhere = false;
                }
                None
            }
        }
    }

    /// Applies the batch `rec` at `at` (see the module docs): evaluated on
    /// this instance's states of all keys; each key of
    /// [`Record::hazard_keys`] gets it as a pending, hazardous newest
    /// record. Replies whether the conditions held, to the writer.
    #[allow(clippy::too_many_arguments)]
    fn apply_batch(
        &mut self,
        me: u8,
        rec: &Record,
        at: Offset,
        ready_here: bool,
        decide: Time,
        rules: &Rules,
        events: &mut u16,
    ) -> Option<(u8, Reply)> {
        let batch = rec.batch().expect("a batch record");
        let mut states = self.keys.map(|kv| kv.state);
        let held = eval_batch(batch, &mut states, at, decide);
        if held {
            self.held |= 1 << at;
        }
        let own = rec.by == me;
        let hazards = rec.hazard_keys(rules.repair_every_written_key);
        for (k, kv) in self.keys.iter_mut().enumerate() {
            kv.state = states[k];
            if hazards & (1 << k) == 0 {
                continue;
            }
            kv.pending |= 1 << at;
            kv.newest_sc = false;
            if k != usize::from(rec.key) {
                kv.elsewhere = true;
            } else if rules.anchor_repair_first == AnchorFirst::NewestHazard {
                kv.elsewhere = false;
            }
            if own && !rules.backstop {
                kv.owes_repair = true;
            }
            if batch.copies_into(k as Key) {
                self.copied
                    .push((at, k as Key, states[k].map(|e| (e.val, e.exp))));
            }
        }
        if !own {
            return None;
        }
        let id = rec.op.expect("a client record carries its op id");
        let reply = Reply::Bool(held);
        if ready_here || !rules.reply_only_when_ready {
            Some((id, reply))
        } else {
            *events |= event::REPLY_WITHHELD;
            None
        }
    }
}

/// Re-applies the batch at offset `at` to `key`'s `state` on top of a
/// repair, as `Pending::Steps::reapply` does: nothing if its conditions did
/// not hold where this instance evaluated it; else `key`'s writes in order,
/// or, for a key the batch copied into, the state this instance computed
/// for it then (`state/mod.rs` keeps a `Set` of that value, or a `Delete`,
/// instead of the copy: the source's state at `at` is not at hand later).
/// A SWEEP `{r, e}` applied at time `t` on `state` (docs/expiry.md).
/// With [`Rules::sweep_names_its_view`], a state absent or no newer than
/// the sweeper's view `r` takes it as "absent if `e` has passed at `t`",
/// whatever it holds (it may be a reader's wrong state behind a gap; the
/// sweeper's was right); a newer state is evaluated: absent if its own
/// expiry has passed. Exact instances get the same either way.
fn apply_sweep(state: Option<Entry>, r: Offset, e: Time, t: Time, rules: &Rules) -> Option<Entry> {
    match state {
        Some(x) if rules.sweep_names_its_view && x.ver <= r => (e > t).then_some(x),
        _ => sweep(state, t),
    }
}

fn reapply_steps(
    batch: &Batch,
    held: bool,
    copied: &[(Offset, Key, Copied)],
    key: Key,
    mut state: Option<Entry>,
    at: Offset,
) -> Option<Entry> {
    if !held {
        return state;
    }
    if batch.copies_into(key) {
        let &(_, _, val) = copied
            .iter()
            .find(|&&(o, k, _)| o == at && k == key)
            .expect("a copy's result is kept when the batch is applied");
        return val.map(|(val, exp)| Entry { val, ver: at, exp });
    }
    for &(k, write) in batch.steps.iter().flatten() {
        if k != key {
            continue;
        }
        state = match write {
            Write::Set(val) => Some(Entry {
                val,
                ver: at,
                exp: None,
            }),
            Write::Del => None,
            Write::Copy(_) => unreachable!("handled above"),
        };
    }
    state
}
