//! The `stateright::Model` of one partition: configuration, state, the
//! nondeterministic steps (read, client operation — on one key, or a
//! multi-key batch —, repair, fresh start, crash, compaction), the
//! properties (a)–(c) with `sometimes` witnesses, and a readable rendering
//! of paths.
//!
//! Time is not modelled. Every step may happen at any moment; the timing
//! assumptions of docs/rmw.md appear only as limits on what compaction may
//! remove ([`Assumptions`]): the compaction lag bounds the cleanable point
//! (see [`Lag`]), tombstone retention bounds which tombstones may go. The
//! ready rule is an instance rule, switchable here too because the docs list
//! it among the assumptions the protocol needs.
//!
//! # Bounds
//!
//! Client operations, repairs and crashes are bounded to keep the state
//! space finite; compaction is not (it only removes records, so it runs out
//! by itself). Property (c) does not lean on the repair bound: it is checked
//! in every state after the last client operation by running the protocol
//! on to the end (every live instance reads everything, then repairs what it
//! finds hazardous, in rounds) with an allowance of repairs far above what
//! the protocol needs.
//!
//! Two reductions keep the bounds useful without hiding behaviour: the two
//! writers are interchangeable, so a state and its mirror image are explored
//! once ([`RmwModel::canonical`]), and a state's identity ignores what can no
//! longer influence anything (see the `Hash` impls).

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use stateright::{Model, Path, Property};

use crate::instance::{Instance, Role, Rules, event};
use crate::log::{
    Body, Lag, MAX_RECORDS, Record, compact, every_key_self_contained, lag_limit, newest_of,
    reference_before, reference_reply, self_contained, sweeps_change_nothing,
};
use crate::spec::{
    Batch, ClientOp, Cond, Entry, ExpireWhen, Key, KvSpec, MAX_KEYS, Offset, OpKind, Reply, SpecOp,
    Time, Write, live,
};

/// Tombstone retention (docs/rmw.md, assumption 2), as a condition on the
/// state when compaction removes a tombstone at offset `t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retention {
    /// Any tombstone that is the newest of its key below the cleanable point
    /// may go.
    Off,
    /// Only once every live instance's position is past `t`: no repair
    /// restating an offset before `t` can still be written. Not enough: one
    /// already written may be the key's newest record.
    ReadPast,
    /// `ReadPast`, and the key's newest record (full log; a batch writing the
    /// key counts, see [`newest_of`]) is self-contained: a repair restating
    /// an offset before `t` has been repaired in turn.
    ReadPastAndSettled,
}

/// The timing assumptions of docs/rmw.md, each switchable, and the one
/// batches need beyond them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Assumptions {
    /// Compaction lag: how far the cleanable point may go.
    pub lag: Lag,
    /// Which tombstones compaction may remove.
    pub tombstone_retention: Retention,
    /// Only with batches: the cleanable point never falls inside an *anchor
    /// window* — after a plain write (PUT or DEL) of a key a batch wrote
    /// other than its record key, appended between the batch and the next
    /// record of the batch's record key (the anchor's repair), and at or
    /// before that anchor record (or anywhere after the write while there
    /// is none yet). Kafka removes a DEL of `k1` by `k1`'s records alone,
    /// while a batch keyed by `k0` goes only once a newer `k0` record is
    /// below the cleanable point: with the cleanable point inside the
    /// window, the DEL can go (past `delete.retention.ms`) while the batch
    /// stays, and a reader applies the batch's write to `k1` again with
    /// nothing of `k1` after it. Anchor first keeps the protocol's own
    /// repairs of `k1` out of the window; a client's write there is the
    /// case left, and the window is as long as the anchor's repair takes
    /// (about 10 ms when the batch's writer repairs it; the backstop's 2 to
    /// 4 s if it died). Not among docs/rmw.md's assumptions (see its
    /// "Limits"); the tests show the counterexample without it.
    pub cleanable_point_outside_anchor_windows: bool,
    /// On a gap, an instance's target becomes the current end and it is not
    /// ready until it reaches it. Off: a gap changes nothing (a fresh
    /// instance still bootstraps to the end offset it saw at start).
    pub ready_rule: bool,
}

impl Assumptions {
    /// All three, as docs/rmw.md states them, with the lag in the weaker
    /// form single-key operations need ([`Lag::Covering`]).
    pub const ALL: Assumptions = Assumptions {
        lag: Lag::Covering,
        tombstone_retention: Retention::ReadPastAndSettled,
        cleanable_point_outside_anchor_windows: false,
        ready_rule: true,
    };

    /// What batches need: [`Assumptions::ALL`] with the lag read as the
    /// margin above the repair deadline it is ([`Lag::Margin`], docs/rmw.md's
    /// wording), and the cleanable point outside anchor windows (a limit
    /// docs/rmw.md names). Each is necessary (the tests drop them one at a
    /// time).
    pub const BATCHES: Assumptions = Assumptions {
        lag: Lag::Margin,
        cleanable_point_outside_anchor_windows: true,
        ..Assumptions::ALL
    };
}

/// What one model run explores.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// 1 or 2 keys.
    pub keys: u8,
    /// Instances running from offset 0 that serve client operations (≥ 2).
    pub writers: u8,
    /// Whether a fresh instance may bootstrap at some point.
    pub fresh: bool,
    /// Total client operations.
    pub ops: u8,
    /// What a client may ask, on any key.
    pub menu: Vec<OpKind>,
    /// Multi-key batches a client may ask, on the keys they name (only
    /// with 2 keys).
    pub batches: Vec<Batch>,
    /// Repairs appended in a run (at any time, by any ready instance whose
    /// newest record of the key is not self-contained).
    pub repairs: u8,
    /// Writer crashes (at least one writer always stays alive).
    pub crashes: u8,
    /// Whether the fresh instance may start before compaction removed
    /// anything.
    pub fresh_early: bool,
    /// Clock ticks in a run: the broker clock (`State::now`) starts at 0
    /// and may advance this many times, at any moment. 0: no time.
    pub ticks: u8,
    /// SWEEPs appended in a run (by any started instance whose view holds
    /// the key present with an expiry, at any time — before the expiry
    /// too).
    pub sweeps: u8,
    /// Explore a state and its mirror image (writers swapped) once. Off
    /// only to test the reduction.
    pub symmetry: bool,
    pub assumptions: Assumptions,
    pub rules: Rules,
}

impl Config {
    /// Every kind of operation with values that make each condition both
    /// succeed and fail: PUT 1, DEL, INCR, SETNX 1, CAS 1→2.
    pub fn full_menu() -> Vec<OpKind> {
        vec![
            OpKind::Put(1),
            OpKind::Del,
            OpKind::Incr,
            OpKind::SetNx(1),
            OpKind::Cas { expect: 1, new: 2 },
        ]
    }

    /// The protocol of docs/rmw.md with all assumptions: 2 writers and a
    /// fresh instance, `keys` keys and `ops` client operations from the full
    /// menu, 2 repairs, 1 crash, compaction whenever it changes the log.
    /// The fresh instance starts only once compaction has removed something
    /// (before that, bootstrapping is reading an exact log, which the
    /// writers already do; `fresh_early` lifts this).
    pub fn protocol(keys: u8, ops: u8) -> Self {
        Config {
            keys,
            writers: 2,
            fresh: true,
            ops,
            menu: Self::full_menu(),
            batches: Vec::new(),
            repairs: 2,
            crashes: 1,
            fresh_early: false,
            ticks: 0,
            sweeps: 0,
            symmetry: true,
            assumptions: Assumptions::ALL,
            rules: Rules::PROTOCOL,
        }
    }

    /// One of each kind of batch, each both holding and failing on some
    /// states: MSETNX k0 k1 (recorded under k0, writes both), the cross-key
    /// compare-and-set "k1 := 2 if k0 is 1" (recorded under k1, decided by
    /// k0) and RENAME k0 k1 (recorded under k1, copies k0 into it and
    /// deletes k0).
    pub fn batch_menu() -> Vec<Batch> {
        vec![Batch::msetnx(1), Batch::cross_cas(1, 2), Batch::rename()]
    }

    /// [`Config::protocol`] on 2 keys with batches from `batches` besides
    /// the single-key `menu`, under [`Assumptions::BATCHES`].
    pub fn with_batches(ops: u8, menu: Vec<OpKind>, batches: Vec<Batch>) -> Self {
        Config {
            menu,
            batches,
            assumptions: Assumptions::BATCHES,
            ..Self::protocol(2, ops)
        }
    }

    /// Expiry (docs/expiry.md, "The model"): [`Config::protocol`] on
    /// `keys` keys with `ops` client operations from `menu`, `ticks` clock
    /// ticks and one SWEEP, one repair and one crash.
    pub fn expiry(keys: u8, ops: u8, menu: Vec<OpKind>, ticks: u8) -> Self {
        Config {
            menu,
            ticks,
            sweeps: 1,
            repairs: 1,
            ..Self::protocol(keys, ops)
        }
    }

    /// The expiry menu: a put with a TTL of 1, a plain put, the lock (SET
    /// NX PX 1), EXPIRE XX 2, PERSIST and INCR.
    pub fn expiry_menu() -> Vec<OpKind> {
        vec![
            OpKind::PutEx(1, 1),
            OpKind::Put(2),
            OpKind::SetNxPx(3, 1),
            OpKind::Expire {
                ttl: 2,
                when: ExpireWhen::Xx,
            },
            OpKind::Persist,
            OpKind::Incr,
        ]
    }

    /// The longest TTL the menu can set.
    pub fn max_ttl(&self) -> Time {
        self.menu
            .iter()
            .map(|k| match *k {
                OpKind::PutEx(_, t) | OpKind::SetNxPx(_, t) | OpKind::Expire { ttl: t, .. } => t,
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    fn instances(&self) -> usize {
        usize::from(self.writers) + usize::from(self.fresh)
    }

    /// How many repairs property (c) lets the protocol write after the last
    /// client operation before it calls them endless. When every instance
    /// reads everything before repairing, one round of repairs restates the
    /// final state and the next round finds nothing to do; a round is at
    /// most one repair per instance and key, so two rounds suffice. Twice
    /// that leaves a wide margin.
    /// Sweeps (after the clock passed every expiry) add a round at most.
    pub fn drain_bound(&self) -> usize {
        6 * self.instances() * usize::from(self.keys)
    }
}

/// A client operation's ghost record: who wrote it, where, and the reply
/// its client got (if any yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpRecord {
    pub writer: u8,
    pub at: Offset,
    pub op: ClientOp,
    pub reply: Option<Reply>,
}

/// The state: the full log with the presence mask, the instances, the
/// client operations with the linearizability tester, and counters.
///
/// `Hash` (the checker's state identity) leaves out the ghost `events`:
/// they only feed `sometimes` properties and influence no step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Every record ever appended; offset = index.
    /// Shared between states until one appends (most steps do not).
    pub log: Arc<Vec<Record>>,
    /// Bit `o`: the record at `o` is still in the current log.
    pub present: u64,
    /// Writers first, then the fresh instance.
    pub insts: Vec<Instance>,
    /// Client operations in issue order; index = op id = tester thread id.
    pub ops: Vec<OpRecord>,
    pub repairs: u8,
    pub crashes: u8,
    pub sweeps: u8,
    /// The broker clock: the timestamp of the next record appended.
    pub now: Time,
    /// Ghost events ([`event`]) of the step that led here (reset at every
    /// step, so a `sometimes` witness is recorded once, not in every
    /// descendant state).
    pub events: u16,
    /// Shared between states until an invocation or return.
    pub tester: Arc<LinearizabilityTester<u8, KvSpec>>,
    /// `tester.is_consistent()`, recomputed whenever the tester records an
    /// invocation or a return (a function of `tester`, so not hashed).
    pub linearizable: bool,
    /// Ghost: the name each writer slot had at the start (see
    /// [`RmwModel::canonical`]); only for printing paths.
    pub names: Vec<u8>,
}

impl Hash for State {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.log.hash(h);
        self.present.hash(h);
        self.insts.hash(h);
        self.ops.hash(h);
        self.repairs.hash(h);
        self.crashes.hash(h);
        self.sweeps.hash(h);
        self.now.hash(h);
        self.tester.hash(h);
    }
}

impl State {
    fn is_present(&self, o: usize) -> bool {
        self.present & (1 << o) != 0
    }

    /// The first record of the current log at or after `from`.
    fn next_present(&self, from: usize) -> Option<usize> {
        (from..self.log.len()).find(|&x| self.is_present(x))
    }
}

/// One primitive step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Instance reads its next record (or finds the rest of the log gone).
    Read(u8),
    /// A ready writer appends a client operation.
    Issue { by: u8, op: ClientOp },
    /// A ready instance appends `REPAIR(key, pos - 1, its state)`.
    Repair { by: u8, key: Key },
    /// The fresh instance bootstraps from the start of the current log.
    Start,
    /// A writer crashes for good.
    Crash(u8),
    /// Compaction with cleanable point `upto`, with or without removing
    /// the tombstones whose retention allows it.
    Compact { upto: u8, tombstones: bool },
    /// The broker clock advances by one.
    Tick,
    /// A started instance appends `SWEEP(key)` (a plain DEL without
    /// `Rules::conditional_sweep`).
    Sweep { by: u8, key: Key },
}

/// A small, fixed hasher for the symmetry reduction's summaries (the
/// standard one costs more than the rest of a step).
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

/// The model: a configuration.
#[derive(Clone, Debug)]
pub struct RmwModel {
    pub cfg: Config,
}

/// Property names; tests look discoveries up by these.
pub mod names {
    pub const STATE: &str = "(a) a ready instance holds the log's value and version";
    pub const LINEARIZABLE: &str = "(b) replies are linearizable";
    pub const REPLIES: &str = "(b) each reply is the log's evaluation at its offset";
    pub const SETTLE: &str = "(c) after the last operation repairs stop, every key self-contained";
    pub const FRESH_AFTER_GAP: &str = "fresh instance ready after a gap";
    pub const WRITER_GAP: &str = "a writer is overtaken by compaction";
    pub const REAPPLIED: &str = "a repair re-applies pending operations";
    pub const STALE_IGNORED: &str = "a stale repair is ignored";
    pub const BASE_REMOVED: &str = "compaction removes a hazardous op's base";
    pub const TOMBSTONE_REMOVED: &str = "compaction removes a tombstone";
    pub const REPLY_WITHHELD: &str = "a writer behind a gap withholds its reply";
    pub const SETTLED_AFTER_CRASH: &str = "all settled after a writer crashed";
    pub const BATCH_REAPPLIED: &str = "a repair of a key re-applies a batch recorded under another";
    pub const BATCH_SUPERSEDED: &str = "compaction removes a batch record that wrote another key";
    pub const SWEEPS: &str = "(d) a sweep never changes a decision";
    pub const SWEEP_DELETED: &str = "a sweep deletes an expired key";
    pub const SWEEP_LOST: &str = "a sweep finds its key live and changes nothing";
    pub const SWEEP_REPAIRED: &str = "a repair re-applies a losing sweep";
    pub const LOCK_TAKEN_EXPIRED: &str = "SET NX PX takes an expired, unswept lock";
    pub const FRESH_SWEEP_AFTER_GAP: &str = "the fresh instance applies a sweep after a gap";
    pub const EXPIRE_REFUSED: &str = "an EXPIRE's condition fails on a live key";
}

impl RmwModel {
    pub fn new(cfg: Config) -> Self {
        assert!((1..=MAX_KEYS as u8).contains(&cfg.keys));
        assert!(cfg.writers >= 2, "at least two writers");
        assert!(!cfg.menu.is_empty());
        for batch in &cfg.batches {
            let keys = batch.writes() | (1 << batch.anchor());
            let conditioned = (0..MAX_KEYS).filter(|&k| batch.when[k] != Cond::Always);
            let keys = conditioned.fold(keys, |m, k| m | 1 << k);
            assert!(
                keys < 1 << cfg.keys,
                "a batch names a key beyond the configuration"
            );
        }
        let most = usize::from(cfg.ops)
            + usize::from(cfg.repairs)
            + usize::from(cfg.sweeps)
            + cfg.drain_bound()
            + 1;
        assert!(most <= MAX_RECORDS, "log would outgrow the offset masks");
        RmwModel { cfg }
    }

    fn is_writer(&self, i: usize) -> bool {
        i < usize::from(self.cfg.writers)
    }

    fn fresh_index(&self) -> Option<usize> {
        self.cfg.fresh.then_some(usize::from(self.cfg.writers))
    }

    /// Whether tombstone retention lets the tombstone at `t` go; `kept`:
    /// the records this cleaning leaves besides tombstones.
    fn tombstone_expired(&self, s: &State, sc: u64, t: Offset) -> bool {
        let key = s.log[usize::from(t)].key;
        let retention = self.cfg.assumptions.tombstone_retention;
        if retention == Retention::Off {
            return true;
        }
        let past = s
            .insts
            .iter()
            .filter(|i| i.alive && i.started)
            .all(|i| i.pos > t);
        let settled = retention == Retention::ReadPast
            || newest_of(&s.log, key).is_some_and(|o| sc & (1 << o) != 0);
        past && settled
    }

    /// The anchor windows (see
    /// [`Assumptions::cleanable_point_outside_anchor_windows`]) of the full
    /// log, as `(x, y)`: the cleanable point may not be in `x + 1..=y`.
    /// Empty unless that assumption is made.
    fn anchor_windows(&self, s: &State) -> Vec<(usize, usize)> {
        if !self.cfg.assumptions.cleanable_point_outside_anchor_windows {
            return Vec::new();
        }
        let mut windows = Vec::new();
        for (b, rec) in s.log.iter().enumerate() {
            let Some(batch) = rec.batch() else { continue };
            let anchor = (b + 1..s.log.len())
                .find(|&y| s.log[y].key == rec.key)
                .unwrap_or(usize::MAX);
            let others = batch.writes() & !(1 << rec.key);
            let write = (b + 1..anchor.min(s.log.len())).find(|&x| {
                others & (1 << s.log[x].key) != 0
                    && matches!(
                        s.log[x].body,
                        Body::Put(..) | Body::Del | Body::Sweep { .. }
                    )
            });
            if let Some(x) = write {
                windows.push((x, anchor));
            }
        }
        windows
    }

    /// The presence mask after compacting with cleanable point `upto`;
    /// `sc` is `self_contained(&s.log, &self.cfg.rules)`.
    fn compacted(&self, s: &State, sc: u64, upto: usize, tombstones: bool) -> u64 {
        compact(&s.log, s.present, upto, |t, _| {
            tombstones && self.tombstone_expired(s, sc, t)
        })
    }

    /// Instance `i` reads its next record: the first record of the current
    /// log at or after its position. `track`: report a reply to the tester.
    fn read(&self, s: &mut State, i: usize, track: bool) {
        let end = s.log.len();
        let pos = usize::from(s.insts[i].pos);
        let next = s.next_present(pos);
        if next.unwrap_or(end) > pos {
            // A gap: compaction removed what this instance had not read.
            let inst = &mut s.insts[i];
            inst.crossed_gap = true;
            if self.cfg.assumptions.ready_rule {
                inst.target = end as Offset;
            }
            if self.is_writer(i) {
                s.events |= event::WRITER_GAP;
            }
        }
        let Some(x) = next else {
            // The rest of the log is gone; the consumer's position moves to
            // the end offset.
            s.insts[i].pos = end as Offset;
            return;
        };
        let at = x as Offset;
        let inst = &mut s.insts[i];
        let ready_here = at >= inst.target;
        if inst.role == Role::Fresh
            && inst.crossed_gap
            && matches!(s.log[x].body, Body::Sweep { .. })
        {
            s.events |= event::FRESH_SWEEP_AFTER_GAP;
        }
        let reply = inst.apply(
            i as u8,
            &s.log,
            at,
            ready_here,
            s.now,
            &self.cfg.rules,
            &mut s.events,
        );
        inst.pos = at + 1;
        if inst.role == Role::Fresh && inst.crossed_gap && !ready_here && inst.ready() {
            s.events |= event::FRESH_READY_AFTER_GAP;
        }
        if let Some((id, reply)) = reply
            && track
        {
            s.ops[usize::from(id)].reply = Some(reply);
            Arc::make_mut(&mut s.tester)
                .on_return(id, reply)
                .expect("one return per invocation");
            s.linearizable = s.tester.is_consistent();
        }
    }

    /// Instance `i` appends a repair of `key`: its position minus one and
    /// its state there.
    fn repair(&self, s: &mut State, i: usize, key: Key) {
        let end = s.log.len();
        let inst = &mut s.insts[i];
        let kv = &mut inst.keys[usize::from(key)];
        Arc::make_mut(&mut s.log).push(Record {
            key,
            body: Body::Repair {
                r: inst.pos - 1,
                s: kv.state,
            },
            by: i as u8,
            op: None,
            ts: s.now,
        });
        s.present |= 1 << end;
        kv.last_repair = Some(end as Offset);
        kv.owes_repair = false;
    }

    /// Whether instance `i` may sweep `key` (budget and clock aside): it is
    /// live and started (ready, with `sweep_names_its_view`: the view it
    /// names must be right), its view holds the key present with an
    /// expiry, and (with `sweep_settled_only`) the key is settled there.
    fn may_sweep(&self, s: &State, i: usize, key: usize) -> bool {
        let inst = &s.insts[i];
        let kv = &inst.keys[key];
        inst.alive
            && inst.started
            && (inst.ready() || !self.cfg.rules.sweep_names_its_view)
            && kv.state.is_some_and(|e| e.exp.is_some())
            && (kv.newest_sc || !self.cfg.rules.sweep_settled_only)
    }

    /// Instance `i` appends a SWEEP of `key` at the current time.
    fn sweep(&self, s: &mut State, i: usize, key: Key) {
        let end = s.log.len();
        let before = reference_before(&s.log, end)[usize::from(key)];
        let inst = &s.insts[i];
        let seen = inst.keys[usize::from(key)].state;
        let body = if self.cfg.rules.conditional_sweep {
            Body::Sweep {
                r: inst.pos - 1,
                e: seen
                    .and_then(|x| x.exp)
                    .expect("a sweeper sweeps a key with an expiry"),
            }
        } else {
            Body::Del
        };
        Arc::make_mut(&mut s.log).push(Record {
            key,
            body,
            by: i as u8,
            op: None,
            ts: s.now,
        });
        s.present |= 1 << end;
        let after = reference_before(&s.log, end + 1)[usize::from(key)];
        if after.is_some() {
            s.events |= event::SWEEP_LOST;
        } else if before.is_some() {
            s.events |= event::SWEEP_DELETED;
        }
    }

    fn apply_step(&self, s: &mut State, step: Step) {
        let end = s.log.len();
        match step {
            Step::Read(i) => self.read(s, usize::from(i), true),
            Step::Issue { by, op } => {
                let id = s.ops.len() as u8;
                let body = match op.kind {
                    OpKind::Put(v) => Body::Put(v, None),
                    OpKind::PutEx(v, ttl) => Body::Put(v, Some(ttl)),
                    OpKind::Del => Body::Del,
                    kind => Body::Op(kind),
                };
                Arc::make_mut(&mut s.log).push(Record {
                    key: op.key,
                    body,
                    by,
                    op: Some(id),
                    ts: s.now,
                });
                s.present |= 1 << end;
                if matches!(op.kind, OpKind::SetNxPx(..) | OpKind::Expire { .. }) {
                    let before = reference_before(&s.log, end)[usize::from(op.key)];
                    let reply = reference_reply(&s.log, end as Offset);
                    let won = reply == Some(Reply::Bool(true));
                    if matches!(op.kind, OpKind::SetNxPx(..)) && won && before.is_some() {
                        s.events |= event::LOCK_TAKEN_EXPIRED;
                    }
                    let lv = live(before, s.now).is_some();
                    if matches!(op.kind, OpKind::Expire { .. }) && !won && lv {
                        s.events |= event::EXPIRE_REFUSED;
                    }
                }
                let tester = Arc::make_mut(&mut s.tester);
                tester
                    .on_invoke(id, SpecOp { op, ts: s.now })
                    .expect("fresh thread id");
                // PUT and DEL are answered on the produce acknowledgement;
                // operations when the writer applies them.
                let reply = op.kind.is_self_contained().then_some(Reply::Ok);
                if let Some(reply) = reply {
                    tester.on_return(id, reply).expect("in flight");
                }
                s.linearizable = s.tester.is_consistent();
                s.ops.push(OpRecord {
                    writer: by,
                    at: end as Offset,
                    op,
                    reply,
                });
            }
            Step::Repair { by, key } => {
                s.repairs += 1;
                self.repair(s, usize::from(by), key);
            }
            Step::Start => {
                let f = self.fresh_index().expect("a fresh instance");
                let inst = &mut s.insts[f];
                inst.started = true;
                inst.pos = 0;
                // Bootstrap: not ready before the end offset seen at start.
                inst.target = end as Offset;
            }
            Step::Crash(w) => {
                s.crashes += 1;
                s.insts[usize::from(w)].alive = false;
            }
            Step::Tick => s.now += 1,
            Step::Sweep { by, key } => {
                s.sweeps += 1;
                self.sweep(s, usize::from(by), key);
            }
            Step::Compact { upto, tombstones } => {
                let upto = usize::from(upto);
                let sc = self_contained(&s.log, &self.cfg.rules);
                let without = self.compacted(s, sc, upto, false);
                let after = self.compacted(s, sc, upto, tombstones);
                if after != without {
                    s.events |= event::TOMBSTONE_REMOVED;
                }
                for x in 0..end {
                    let removed = s.is_present(x) && after & (1 << x) == 0;
                    let key = s.log[x].key;
                    let op_survives = (x + 1..end).any(|y| {
                        after & (1 << y) != 0
                            && s.log[y].key == key
                            && matches!(s.log[y].body, Body::Op(_))
                    });
                    if removed && op_survives {
                        s.events |= event::BASE_REMOVED;
                    }
                    if removed && s.log[x].touched() != 1 << key {
                        s.events |= event::BATCH_SUPERSEDED;
                    }
                }
                s.present = after;
            }
        }
    }

    /// The primitive steps enabled in `s`.
    fn steps(&self, s: &State) -> Vec<Step> {
        let mut steps = Vec::new();
        let end = s.log.len();
        for (i, inst) in s.insts.iter().enumerate() {
            let can_read = inst.alive && inst.started && usize::from(inst.pos) < end;
            if can_read {
                steps.push(Step::Read(i as u8));
            }
        }
        if s.ops.len() < usize::from(self.cfg.ops) {
            for (w, inst) in s.insts.iter().enumerate() {
                if !(self.is_writer(w) && inst.alive && inst.ready()) {
                    continue;
                }
                for key in 0..self.cfg.keys {
                    for &kind in &self.cfg.menu {
                        steps.push(Step::Issue {
                            by: w as u8,
                            op: ClientOp { key, kind },
                        });
                    }
                }
                for &batch in &self.cfg.batches {
                    steps.push(Step::Issue {
                        by: w as u8,
                        op: ClientOp {
                            key: batch.anchor(),
                            kind: OpKind::Batch(batch),
                        },
                    });
                }
            }
        }
        if s.repairs < self.cfg.repairs && end < MAX_RECORDS {
            for (i, inst) in s.insts.iter().enumerate() {
                for key in 0..self.cfg.keys {
                    if inst.may_repair(usize::from(key), &self.cfg.rules) {
                        steps.push(Step::Repair { by: i as u8, key });
                    }
                }
            }
        }
        if s.sweeps < self.cfg.sweeps && end < MAX_RECORDS {
            for i in 0..s.insts.len() {
                for key in 0..self.cfg.keys {
                    if self.may_sweep(s, i, usize::from(key)) {
                        steps.push(Step::Sweep { by: i as u8, key });
                    }
                }
            }
        }
        if s.now < self.cfg.ticks {
            steps.push(Step::Tick);
        }
        if let Some(f) = self.fresh_index() {
            let compacted = s.present != (1u64 << s.log.len()) - 1;
            if !s.insts[f].started && (self.cfg.fresh_early || compacted) {
                steps.push(Step::Start);
            }
        }
        if s.crashes < self.cfg.crashes {
            let alive_writers = (0..usize::from(self.cfg.writers))
                .filter(|&w| s.insts[w].alive)
                .count();
            if alive_writers >= 2 {
                for w in 0..self.cfg.writers {
                    if s.insts[usize::from(w)].alive {
                        steps.push(Step::Crash(w));
                    }
                }
            }
        }
        // Compaction: each distinct outcome once.
        let limit = lag_limit(&s.log, self.cfg.assumptions.lag, &self.cfg.rules);
        let sc = self_contained(&s.log, &self.cfg.rules);
        let windows = self.anchor_windows(s);
        let mut outcomes = Vec::new();
        for upto in 1..=limit {
            if windows.iter().any(|&(x, y)| x < upto && upto <= y) {
                continue;
            }
            for tombstones in [false, true] {
                let after = self.compacted(s, sc, upto, tombstones);
                if after != s.present && !outcomes.contains(&after) {
                    outcomes.push(after);
                    steps.push(Step::Compact {
                        upto: upto as u8,
                        tombstones,
                    });
                }
            }
        }
        steps
    }

    /// No live instance has anything to read or a repair to write, and
    /// every one is ready: nothing more would happen without new writes.
    fn quiescent(&self, s: &State) -> bool {
        let end = s.log.len();
        s.insts.iter().filter(|i| i.alive && i.started).all(|i| {
            usize::from(i.pos) == end
                && i.ready()
                && (0..usize::from(self.cfg.keys)).all(|k| !i.wants_repair(k, &self.cfg.rules))
        })
    }

    /// Symmetry reduction: the writers are interchangeable (same rules,
    /// same menu, same crash budget; client operations are told apart by
    /// their op id, not by writer), so of a state and the state with the two
    /// writers' roles swapped only one needs exploring. Swaps them when the
    /// second writer's summary (its knowledge, the records and operations it
    /// wrote) orders before the first's; `names` keeps track of who is who
    /// for printing. Ties stay as they are, which only explores a few
    /// symmetric states twice.
    pub fn canonical(&self, mut s: State) -> State {
        if !self.cfg.symmetry || self.cfg.writers != 2 {
            return s;
        }
        let summary = |w: u8| {
            let mut h = Fx(0);
            s.insts[usize::from(w)].hash(&mut h);
            let wrote = s
                .log
                .iter()
                .enumerate()
                .filter(|(_, r)| r.by == w)
                .fold(0u64, |m, (o, _)| m | (1 << o));
            (h.0, wrote)
        };
        if summary(1) < summary(0) {
            s.insts.swap(0, 1);
            s.names.swap(0, 1);
            for rec in Arc::make_mut(&mut s.log).iter_mut() {
                if rec.by < 2 {
                    rec.by = 1 - rec.by;
                }
            }
            for op in &mut s.ops {
                op.writer = 1 - op.writer;
            }
        }
        s
    }

    /// Property (a).
    fn ready_instances_exact(&self, s: &State) -> bool {
        s.insts.iter().filter(|i| i.alive && i.ready()).all(|i| {
            let truth = reference_before(&s.log, usize::from(i.pos));
            (0..usize::from(self.cfg.keys)).all(|k| i.keys[k].state == truth[k])
        })
    }

    /// Property (b), second half.
    fn replies_match_log(&self, s: &State) -> bool {
        s.ops
            .iter()
            .all(|o| o.reply.is_none() || o.reply == reference_reply(&s.log, o.at))
    }

    /// Property (c) in a state after the last client operation: run the
    /// protocol on with every live instance reading everything and then
    /// writing the repairs it wants (rounds, no budget), and require that
    /// the repairs stop within [`Config::drain_bound`] and leave every
    /// key's newest record self-contained. Returns the drained state on
    /// failure, for the counterexample.
    pub fn drain(&self, s: &State) -> Result<(), Box<State>> {
        let truth = reference_before(&s.log, s.log.len());
        let volatile = truth.iter().flatten().any(|e| e.exp.is_some())
            || s.insts.iter().any(|i| {
                i.alive
                    && i.started
                    && i.keys
                        .iter()
                        .any(|kv| kv.state.is_some_and(|e| e.exp.is_some()))
            });
        if !volatile && self.quiescent(s) {
            return if every_key_self_contained(&s.log, self.cfg.keys, &self.cfg.rules) {
                Ok(())
            } else {
                Err(Box::new(s.clone()))
            };
        }
        // The client-side ghost state plays no part here.
        let mut t = State {
            log: s.log.clone(),
            present: s.present,
            insts: s.insts.clone(),
            ops: Vec::new(),
            repairs: s.repairs,
            crashes: s.crashes,
            sweeps: s.sweeps,
            // The clock runs past every expiry the log can hold.
            now: s.now.saturating_add(self.cfg.max_ttl()),
            events: 0,
            tester: Arc::new(LinearizabilityTester::new(KvSpec::default())),
            linearizable: true,
            names: s.names.clone(),
        };
        let mut written = 0;
        let done = |t: &State| {
            let truth = reference_before(&t.log, t.log.len());
            every_key_self_contained(&t.log, self.cfg.keys, &self.cfg.rules)
                && truth.iter().all(|e| live(*e, t.now) == *e)
        };
        loop {
            for i in 0..t.insts.len() {
                while t.insts[i].alive
                    && t.insts[i].started
                    && usize::from(t.insts[i].pos) < t.log.len()
                {
                    self.read(&mut t, i, false);
                }
            }
            let mut wrote = false;
            for i in 0..t.insts.len() {
                for key in 0..self.cfg.keys {
                    let due = t.insts[i].keys[usize::from(key)]
                        .state
                        .is_some_and(|e| !e.live_at(t.now));
                    if due && t.insts[i].ready() && self.may_sweep(&t, i, usize::from(key)) {
                        if written == self.cfg.drain_bound() {
                            return Err(Box::new(t));
                        }
                        self.sweep(&mut t, i, key);
                        written += 1;
                        wrote = true;
                    }
                    if t.insts[i].may_repair(usize::from(key), &self.cfg.rules) {
                        if written == self.cfg.drain_bound() {
                            return Err(Box::new(t));
                        }
                        self.repair(&mut t, i, key);
                        written += 1;
                        wrote = true;
                    }
                }
            }
            if !wrote {
                return if done(&t) { Ok(()) } else { Err(Box::new(t)) };
            }
        }
    }

    /// Property (c).
    fn settles(&self, s: &State) -> bool {
        s.ops.len() < usize::from(self.cfg.ops) || self.drain(s).is_ok()
    }

    /// A readable account of a path: each step, then the final log and
    /// instances (and, for a violation of (c), where draining ends).
    /// Tests print it for every counterexample.
    pub fn explain(&self, path: &Path<State, Step>) -> String {
        let mut out = String::new();
        let steps = path.clone().into_vec();
        for (n, (state, action)) in steps.iter().enumerate() {
            if let Some(a) = action {
                let _ = writeln!(out, "{:>3}. {}", n + 1, self.describe_step(state, *a));
            }
        }
        let last = path.last_state();
        out.push_str(&self.describe_state(last));
        if last.ops.len() == usize::from(self.cfg.ops)
            && let Err(drained) = self.drain(last)
        {
            out.push_str("   letting every instance read everything and repair gives:\n");
            out.push_str(&self.describe_state(&drained));
        }
        out
    }

    /// An instance's name as the path started it: writers are renumbered
    /// by the symmetry reduction, `State::names` undoes that.
    fn name(&self, s: &State, i: usize) -> String {
        if self.is_writer(i) {
            format!("w{}", s.names[i])
        } else {
            "fresh".to_string()
        }
    }

    fn describe_step(&self, s: &State, step: Step) -> String {
        let end = s.log.len();
        match step {
            Step::Read(i) => {
                let i = usize::from(i);
                let pos = usize::from(s.insts[i].pos);
                match s.next_present(pos) {
                    Some(x) if x > pos => format!(
                        "{} at {pos} finds a gap, reads @{x} {}",
                        self.name(s, i),
                        describe_record(&s.log[x])
                    ),
                    Some(x) => format!(
                        "{} reads @{x} {}",
                        self.name(s, i),
                        describe_record(&s.log[x])
                    ),
                    None => format!(
                        "{} at {pos} finds the rest gone, moves to {end}",
                        self.name(s, i)
                    ),
                }
            }
            Step::Issue { by, op } => {
                let kind = match op.kind {
                    OpKind::Put(v) => format!("PUT(k{}, {v})", op.key),
                    OpKind::PutEx(v, ttl) => format!("PUT(k{}, {v}, ttl {ttl})", op.key),
                    OpKind::Del => format!("DEL(k{})", op.key),
                    OpKind::Batch(b) => format!("OP(k{}, {})", op.key, describe_batch(&b)),
                    kind => format!("OP(k{}, {kind:?})", op.key),
                };
                format!(
                    "{} appends @{end} {kind} at t={} for client op #{}",
                    self.name(s, usize::from(by)),
                    s.now,
                    s.ops.len()
                )
            }
            Step::Repair { by, key } => {
                let inst = &s.insts[usize::from(by)];
                format!(
                    "{} appends @{end} REPAIR(k{key}, r={}, {})",
                    self.name(s, usize::from(by)),
                    inst.pos - 1,
                    describe_entry(inst.keys[usize::from(key)].state)
                )
            }
            Step::Start => format!("fresh starts (target {end})"),
            Step::Tick => format!("the clock ticks to {}", s.now + 1),
            Step::Sweep { by, key } => format!(
                "{} appends @{end} {}(k{key}) at t={}",
                self.name(s, usize::from(by)),
                if self.cfg.rules.conditional_sweep {
                    "SWEEP"
                } else {
                    "sweeper's DEL"
                },
                s.now
            ),
            Step::Crash(i) => format!("{} crashes", self.name(s, usize::from(i))),
            Step::Compact { upto, tombstones } => {
                let after = self.compacted(
                    s,
                    self_contained(&s.log, &self.cfg.rules),
                    usize::from(upto),
                    tombstones,
                );
                let gone: Vec<usize> = (0..end)
                    .filter(|&x| s.is_present(x) && after & (1 << x) == 0)
                    .collect();
                format!(
                    "compaction below {upto}{} removes {gone:?}",
                    if tombstones { " (tombstones too)" } else { "" }
                )
            }
        }
    }

    /// The log (`x` marks removed records, `!` records that are not
    /// self-contained), the instances and the replies.
    pub fn describe_state(&self, s: &State) -> String {
        let mut out = format!("     log (clock at {}):\n", s.now);
        let sc = self_contained(&s.log, &self.cfg.rules);
        for (o, rec) in s.log.iter().enumerate() {
            let _ = writeln!(
                out,
                "       {}{} @{o} {}",
                if s.is_present(o) { ' ' } else { 'x' },
                if sc & (1 << o) != 0 { ' ' } else { '!' },
                describe_record(rec)
            );
        }
        // Writers by their original names, then the fresh instance.
        let mut order: Vec<usize> = (0..s.insts.len()).collect();
        order.sort_by_key(|&i| s.names.get(i).copied().unwrap_or(u8::MAX));
        for i in order {
            let inst = &s.insts[i];
            if !inst.started {
                continue;
            }
            let truth = reference_before(&s.log, usize::from(inst.pos));
            let keys: Vec<String> = (0..usize::from(self.cfg.keys))
                .map(|k| {
                    format!(
                        "k{k}={} (log says {})",
                        describe_entry(inst.keys[k].state),
                        describe_entry(truth[k])
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "     {}: {}pos {} target {} {}, {}",
                self.name(s, i),
                if inst.alive { "" } else { "crashed, " },
                inst.pos,
                inst.target,
                if inst.ready() { "ready" } else { "not ready" },
                keys.join(", ")
            );
        }
        for (id, o) in s.ops.iter().enumerate() {
            let kind = match o.op.kind {
                OpKind::Batch(b) => describe_batch(&b),
                kind => format!("{kind:?}"),
            };
            let _ = writeln!(
                out,
                "     op #{id} by {} {kind} on k{} @{}: reply {:?}, log says {:?}",
                self.name(s, usize::from(o.writer)),
                o.op.key,
                o.at,
                o.reply,
                reference_reply(&s.log, o.at)
            );
        }
        out
    }
}

fn describe_entry(e: Option<Entry>) -> String {
    match e {
        Some(Entry {
            val,
            ver,
            exp: Some(x),
        }) => format!("{val}v{ver} expiring at {x}"),
        Some(e) => format!("{}v{}", e.val, e.ver),
        None => "absent".to_string(),
    }
}

/// A batch as `BATCH[if k0 absent, k1 absent: k0 := 1, k1 := 1]`.
fn describe_batch(b: &Batch) -> String {
    let conds: Vec<String> = (0..MAX_KEYS)
        .filter_map(|k| match b.when[k] {
            Cond::Always => None,
            Cond::Absent => Some(format!("k{k} absent")),
            Cond::Present => Some(format!("k{k} present")),
            Cond::Is(v) => Some(format!("k{k} = {v}")),
        })
        .collect();
    let steps: Vec<String> = b
        .steps
        .iter()
        .flatten()
        .map(|(k, w)| match w {
            Write::Set(v) => format!("k{k} := {v}"),
            Write::Del => format!("del k{k}"),
            Write::Copy(src) => format!("k{k} := k{src}"),
        })
        .collect();
    format!("BATCH[if {}: {}]", conds.join(", "), steps.join(", "))
}

fn describe_record(r: &Record) -> String {
    let k = r.key;
    let body = match r.body {
        Body::Put(v, None) => format!("PUT(k{k}, {v})"),
        Body::Put(v, Some(ttl)) => format!("PUT(k{k}, {v}, ttl {ttl})"),
        Body::Del if r.is_sweep() => format!("DEL(k{k}) by a sweeper"),
        Body::Del => format!("DEL(k{k})"),
        Body::Sweep { r, e } => format!("SWEEP(k{k}, r={r}, expiry {e})"),
        Body::Op(OpKind::Batch(b)) => format!("OP(k{k}, {})", describe_batch(&b)),
        Body::Op(kind) => format!("OP(k{k}, {kind:?})"),
        Body::Repair { r: at, s } => format!("REPAIR(k{k}, r={at}, {})", describe_entry(s)),
    };
    format!("{body} t={}", r.ts)
}

impl Model for RmwModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        let mut insts: Vec<Instance> = (0..self.cfg.writers).map(|_| Instance::writer()).collect();
        if self.cfg.fresh {
            insts.push(Instance::fresh());
        }
        vec![State {
            log: Arc::new(Vec::new()),
            present: 0,
            insts,
            ops: Vec::new(),
            repairs: 0,
            crashes: 0,
            sweeps: 0,
            now: 0,
            events: 0,
            tester: Arc::new(LinearizabilityTester::new(KvSpec::default())),
            linearizable: true,
            names: (0..self.cfg.writers).collect(),
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Step>) {
        actions.extend(self.steps(s));
    }

    fn next_state(&self, last: &State, step: Step) -> Option<State> {
        let mut s = last.clone();
        s.events = 0;
        self.apply_step(&mut s, step);
        Some(self.canonical(s))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(names::STATE, |m: &Self, s: &State| {
                m.ready_instances_exact(s)
            }),
            Property::always(names::LINEARIZABLE, |_, s: &State| s.linearizable),
            Property::always(names::REPLIES, |m: &Self, s: &State| m.replies_match_log(s)),
            Property::always(names::SETTLE, |m: &Self, s: &State| m.settles(s)),
            Property::always(names::SWEEPS, |_, s: &State| sweeps_change_nothing(&s.log)),
            Property::sometimes(names::FRESH_AFTER_GAP, |_, s: &State| {
                s.events & event::FRESH_READY_AFTER_GAP != 0
            }),
            Property::sometimes(names::WRITER_GAP, |_, s: &State| {
                s.events & event::WRITER_GAP != 0
            }),
            Property::sometimes(names::REAPPLIED, |_, s: &State| {
                s.events & event::REAPPLIED != 0
            }),
            Property::sometimes(names::STALE_IGNORED, |_, s: &State| {
                s.events & event::STALE_IGNORED != 0
            }),
            Property::sometimes(names::BASE_REMOVED, |_, s: &State| {
                s.events & event::BASE_REMOVED != 0
            }),
            Property::sometimes(names::TOMBSTONE_REMOVED, |_, s: &State| {
                s.events & event::TOMBSTONE_REMOVED != 0
            }),
            Property::sometimes(names::REPLY_WITHHELD, |_, s: &State| {
                s.events & event::REPLY_WITHHELD != 0
            }),
            Property::sometimes(names::BATCH_REAPPLIED, |_, s: &State| {
                s.events & event::BATCH_REAPPLIED != 0
            }),
            Property::sometimes(names::BATCH_SUPERSEDED, |_, s: &State| {
                s.events & event::BATCH_SUPERSEDED != 0
            }),
            Property::sometimes(names::SWEEP_DELETED, |_, s: &State| {
                s.events & event::SWEEP_DELETED != 0
            }),
            Property::sometimes(names::SWEEP_LOST, |_, s: &State| {
                s.events & event::SWEEP_LOST != 0
            }),
            Property::sometimes(names::SWEEP_REPAIRED, |_, s: &State| {
                s.events & event::SWEEP_REPAIRED != 0
            }),
            Property::sometimes(names::LOCK_TAKEN_EXPIRED, |_, s: &State| {
                s.events & event::LOCK_TAKEN_EXPIRED != 0
            }),
            Property::sometimes(names::FRESH_SWEEP_AFTER_GAP, |_, s: &State| {
                s.events & event::FRESH_SWEEP_AFTER_GAP != 0
            }),
            Property::sometimes(names::EXPIRE_REFUSED, |_, s: &State| {
                s.events & event::EXPIRE_REFUSED != 0
            }),
            Property::sometimes(names::SETTLED_AFTER_CRASH, |m: &Self, s: &State| {
                s.crashes > 0
                    && s.ops.len() == usize::from(m.cfg.ops)
                    && m.quiescent(s)
                    && every_key_self_contained(&s.log, m.cfg.keys, &m.cfg.rules)
            }),
        ]
    }
}
