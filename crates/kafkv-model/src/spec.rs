//! The client's view: the operations a client may ask for (single-key ones
//! and multi-key [`Batch`]es), what each one does to the keys, and the
//! sequential specification ([`KvSpec`]) that stateright's
//! `LinearizabilityTester` checks replies against.
//!
//! Two definitions of an operation's meaning live here on purpose:
//! [`eval`] and [`eval_batch`] are what the log does at an offset (they also
//! set versions), and [`KvSpec`] is the plain map a client believes it
//! talks to. They are
//! written separately so that a mistake in one is not copied into the other;
//! the unit tests below hold them to the same answers.

use stateright::semantics::SequentialSpec;

/// A key: `0..keys` of the configuration (at most [`MAX_KEYS`]).
pub type Key = u8;
/// A value: a small integer.
pub type Val = u8;
/// An offset in the partition. The model keeps every log below 64 records,
/// so offsets also index bit masks.
pub type Offset = u8;
/// A time: the broker clock's reading (`State::now`), a record's timestamp,
/// an absolute expiry or a relative TTL, in ticks (docs/expiry.md, "Time").
pub type Time = u8;

/// How many keys the model supports; fixed-size arrays of this length hold
/// per-key data without allocating.
pub const MAX_KEYS: usize = 2;

/// The most writes a [`Batch`] holds (enough for MSETNX on two keys and for
/// RENAME's copy and delete).
pub const MAX_STEPS: usize = 2;

/// A present key: its value, its version (the offset of the record that
/// last changed it, docs/rmw.md, "version") and its expiry, an absolute
/// time (docs/expiry.md). The entry is the *material* state: an expired
/// entry stays until a record (a SWEEP, a DEL, a rewrite) removes it, and
/// counts as absent in every decision ([`live`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub val: Val,
    pub ver: Offset,
    pub exp: Option<Time>,
}

impl Entry {
    /// Not expired at `t`: no expiry, or an expiry after `t` (I2).
    pub fn live_at(self, t: Time) -> bool {
        self.exp.is_none_or(|e| e > t)
    }
}

/// The logical state at time `t`: the entry unless it expired (I2).
pub fn live(cur: Option<Entry>, t: Time) -> Option<Entry> {
    cur.filter(|e| e.live_at(t))
}

/// A SWEEP evaluated at its timestamp `t` (docs/expiry.md, "Records"):
/// absent if the key is present with an expiry `<= t`, else unchanged.
pub fn sweep(cur: Option<Entry>, t: Time) -> Option<Entry> {
    live(cur, t)
}

/// EXPIRE's condition (Redis 7's NX/XX/GT/LT; the model has three).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpireWhen {
    Always,
    /// Only if the key has an expiry.
    Xx,
    /// Only if the new expiry is later than the current one (no expiry
    /// counts as infinite, so never).
    Gt,
}

/// What a client asks for on one key.
///
/// `Cas` compares the *value* (not the version): the sequential spec is a
/// plain map from keys to values, which knows nothing of offsets, so a
/// version-conditioned write could not be checked against it. Versions are
/// still checked, by property (a), which compares value *and* version of
/// every ready instance with the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `k := v`, written as a self-contained `PUT` record; clears an
    /// expiry.
    Put(Val),
    /// `k := v` expiring `ttl` after the record's timestamp (SET EX/PX), a
    /// self-contained `PUT` with a relative TTL header.
    PutEx(Val, Time),
    /// `k` absent, written as a self-contained `DEL` record (a tombstone).
    Del,
    /// `k := k + 1` (absent counts as 0); replies the new value.
    Incr,
    /// `k := v` only if `k` is absent; replies whether it wrote.
    SetNx(Val),
    /// `k := new` only if `k` is present with value `expect`; replies
    /// whether it wrote. Clears an expiry (a conditional SET).
    Cas { expect: Val, new: Val },
    /// The lock: `SET k v NX PX ttl`; replies whether it wrote.
    SetNxPx(Val, Time),
    /// EXPIRE k ttl with a condition: a live key gets expiry `ts + ttl`
    /// (deleted if that is not after `ts`); replies whether it did.
    Expire { ttl: Time, when: ExpireWhen },
    /// PERSIST: removes a live key's expiry; replies whether it did.
    Persist,
    /// SET k v KEEPTTL: keeps the live key's expiry.
    SetKeepTtl(Val),
    /// A multi-key batch: one `OP` record keyed by its anchor
    /// ([`Batch::anchor`]); the client op's key is that anchor.
    Batch(Batch),
}

impl OpKind {
    /// PUT and DEL state the key whole; everything else depends on the state
    /// before it and is written as an `OP` record (hazardous).
    pub fn is_self_contained(self) -> bool {
        matches!(self, OpKind::Put(_) | OpKind::PutEx(..) | OpKind::Del)
    }
}

/// A batch's condition on one key, tested on the key's state just before
/// the record (the implementation's `op::Condition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    /// No condition on this key.
    Always,
    /// The key has no value (MSETNX, `exists: false`, WATCH of an absent key).
    Absent,
    /// The key has a value (RENAME's and COPY's source, `exists: true`).
    Present,
    /// The key is present with this value. It stands in for the
    /// implementation's version condition (WATCH, a transaction's
    /// `compare.version`) for the reason [`OpKind::Cas`] compares values:
    /// the sequential spec knows no offsets. What a version test would add
    /// (telling apart two states with the same value) is not checked through
    /// replies; property (a) still compares every ready instance's versions
    /// with the log's.
    Is(Val),
}

impl Cond {
    pub fn holds(self, cur: Option<Val>) -> bool {
        match self {
            Cond::Always => true,
            Cond::Absent => cur.is_none(),
            Cond::Present => cur.is_some(),
            Cond::Is(v) => cur == Some(v),
        }
    }
}

/// One write of a batch (the implementation's `Op::Set` and `Op::Delete`
/// with `Condition::Always`, and `Op::CopyFrom`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Write {
    Set(Val),
    Del,
    /// The key takes the value the other key has at this step (COPY,
    /// RENAME); nothing when that key is absent.
    Copy(Key),
}

/// An atomic multi-key operation (`op::Batch`: MSETNX, EXEC after WATCH, an
/// HTTP transaction, COPY, RENAME): conditions on any keys, tested on the
/// state just before its offset, then its writes in order, all at the
/// batch's offset — only if every condition holds. Its reply is whether the
/// conditions held.
///
/// Its keys are fixed (a menu of batches is not instantiated per key as the
/// single-key menu is): with single-key operations on every key, the keys
/// are interchangeable, so one orientation of each batch loses nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    /// The condition on each key (index = key).
    pub when: [Cond; MAX_KEYS],
    /// The writes, in order.
    pub steps: [Option<(Key, Write)>; MAX_STEPS],
}

impl Batch {
    /// MSETNX k0 v k1 v: both keys set only if both are absent; recorded
    /// under k0.
    pub const fn msetnx(v: Val) -> Self {
        Batch {
            when: [Cond::Absent, Cond::Absent],
            steps: [Some((0, Write::Set(v))), Some((1, Write::Set(v)))],
        }
    }

    /// A cross-key compare-and-set: `k1 := new` only if `k0` holds
    /// `expect` (a transaction comparing k0 and putting k1). Recorded
    /// under k1, the key it writes, but decided by k0.
    pub const fn cross_cas(expect: Val, new: Val) -> Self {
        Batch {
            when: [Cond::Is(expect), Cond::Always],
            steps: [Some((1, Write::Set(new))), None],
        }
    }

    /// RENAME k0 k1: if k0 is present, k1 takes its value and k0 is
    /// deleted; recorded under k1, the first key it writes.
    pub const fn rename() -> Self {
        Batch {
            when: [Cond::Present, Cond::Always],
            steps: [Some((1, Write::Copy(0))), Some((0, Write::Del))],
        }
    }

    /// The key the record is keyed by (`Store::apply_batch`): the first key
    /// a step writes, else the first key with a condition.
    pub fn anchor(&self) -> Key {
        if let Some((k, _)) = self.steps.iter().flatten().next() {
            return *k;
        }
        (0..MAX_KEYS as Key)
            .find(|&k| self.when[usize::from(k)] != Cond::Always)
            .expect("a batch names at least one key")
    }

    /// Bit `k` set: a step writes key `k` (whether or not the conditions
    /// hold where it lands — the set is fixed by the record).
    pub fn writes(&self) -> u8 {
        self.steps.iter().flatten().fold(0, |m, (k, _)| m | 1 << k)
    }

    /// Whether a step copies another key's value into `key`: then the
    /// implementation keeps, to re-apply on top of a repair of `key`, the
    /// state the batch left `key` in rather than the copy.
    pub fn copies_into(&self, key: Key) -> bool {
        self.steps
            .iter()
            .flatten()
            .any(|&(k, w)| k == key && matches!(w, Write::Copy(_)))
    }
}

/// Evaluates `batch` at offset `at` and time `t` on `states`, every key's
/// state just before `at`, which it leaves as the batch leaves them
/// (`Batch::evaluate`): returns whether the conditions held. A written key
/// gets version `at`. Expired keys count as absent; a copy carries the
/// source's expiry.
pub fn eval_batch(
    batch: &Batch,
    states: &mut [Option<Entry>; MAX_KEYS],
    at: Offset,
    t: Time,
) -> bool {
    let held = (0..MAX_KEYS).all(|k| batch.when[k].holds(live(states[k], t).map(|e| e.val)));
    if held {
        for &(k, write) in batch.steps.iter().flatten() {
            let k = usize::from(k);
            states[k] = match write {
                Write::Set(val) => Some(Entry {
                    val,
                    ver: at,
                    exp: None,
                }),
                Write::Del => None,
                Write::Copy(src) => match live(states[usize::from(src)], t) {
                    Some(e) => Some(Entry {
                        val: e.val,
                        ver: at,
                        exp: e.exp,
                    }),
                    None => states[k],
                },
            };
        }
    }
    held
}

/// What a client gets back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// PUT and DEL.
    Ok,
    /// INCR's new value.
    Int(Val),
    /// Whether SETNX or CAS wrote.
    Bool(bool),
}

/// One client operation: a key and what to do to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientOp {
    pub key: Key,
    pub kind: OpKind,
}

/// Evaluates the single-key `kind` at offset `at` and time `t` (the
/// record's timestamp) on the key's state just before `at`: the key's new
/// state and the reply. A write sets version `at`; a failed condition
/// changes nothing (docs/rmw.md, the `OP` row). A batch is evaluated on all
/// its keys by [`eval_batch`] instead.
pub fn eval(kind: OpKind, cur: Option<Entry>, at: Offset, t: Time) -> (Option<Entry>, Reply) {
    eval_at(kind, cur, at, t, t)
}

/// [`eval`] with the time that decides expiry (`decide`) and the time a
/// relative TTL is resolved against (`base`) apart: the protocol has both
/// at the record's timestamp; the broken variants
/// ([`crate::Rules::decide_at_record_time`],
/// [`crate::Rules::ttl_from_record_time`]) take the applying instance's
/// clock for one of them.
pub fn eval_at(
    kind: OpKind,
    cur: Option<Entry>,
    at: Offset,
    decide: Time,
    base: Time,
) -> (Option<Entry>, Reply) {
    let lv = live(cur, decide);
    // A write whose expiry is not after the decision time deletes.
    let write = |val, exp: Option<Time>| {
        if exp.is_some_and(|e| e <= decide) {
            None
        } else {
            Some(Entry { val, ver: at, exp })
        }
    };
    let kept = lv.and_then(|e| e.exp);
    match kind {
        OpKind::Put(v) => (write(v, None), Reply::Ok),
        OpKind::PutEx(v, ttl) => (write(v, Some(base.saturating_add(ttl))), Reply::Ok),
        OpKind::Del => (None, Reply::Ok),
        OpKind::Incr => {
            let n = lv.map_or(0, |e| e.val) + 1;
            (write(n, kept), Reply::Int(n))
        }
        OpKind::SetNx(v) => match lv {
            None => (write(v, None), Reply::Bool(true)),
            Some(_) => (cur, Reply::Bool(false)),
        },
        OpKind::SetNxPx(v, ttl) => match lv {
            None => (write(v, Some(base.saturating_add(ttl))), Reply::Bool(true)),
            Some(_) => (cur, Reply::Bool(false)),
        },
        OpKind::Cas { expect, new } => match lv {
            Some(e) if e.val == expect => (write(new, None), Reply::Bool(true)),
            _ => (cur, Reply::Bool(false)),
        },
        OpKind::Expire { ttl, when } => {
            let new = base.saturating_add(ttl);
            match lv {
                Some(e)
                    if match when {
                        ExpireWhen::Always => true,
                        ExpireWhen::Xx => e.exp.is_some(),
                        ExpireWhen::Gt => e.exp.is_some_and(|x| new > x),
                    } =>
                {
                    (write(e.val, Some(new)), Reply::Bool(true))
                }
                _ => (cur, Reply::Bool(false)),
            }
        }
        OpKind::Persist => match lv {
            Some(e) if e.exp.is_some() => (write(e.val, None), Reply::Bool(true)),
            _ => (cur, Reply::Bool(false)),
        },
        OpKind::SetKeepTtl(v) => (write(v, kept), Reply::Ok),
        OpKind::Batch(_) => unreachable!("a batch is evaluated by eval_batch"),
    }
}

/// A client operation as the sequential specification sees it: the
/// operation and its record's timestamp, the time it is decided at
/// (docs/expiry.md, "The spec").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpecOp {
    pub op: ClientOp,
    pub ts: Time,
}

/// The sequential specification: a map from keys to values with their
/// expiries, nothing else. Before each operation it drops the entries
/// expired at the operation's time. Linearizability of the replies is
/// judged against this.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvSpec {
    vals: [Option<(Val, Option<Time>)>; MAX_KEYS],
}

impl SequentialSpec for KvSpec {
    type Op = SpecOp;
    type Ret = Reply;

    fn invoke(&mut self, op: &SpecOp) -> Reply {
        let t = op.ts;
        for v in &mut self.vals {
            if v.is_some_and(|(_, e)| e.is_some_and(|e| e <= t)) {
                *v = None;
            }
        }
        let op = op.op;
        let at = |ttl: Time| Some(t.saturating_add(ttl));
        let slot = &mut self.vals[usize::from(op.key)];
        match op.kind {
            OpKind::Put(v) => {
                *slot = Some((v, None));
                Reply::Ok
            }
            OpKind::PutEx(v, ttl) => {
                *slot = Some((v, at(ttl)));
                Reply::Ok
            }
            OpKind::Del => {
                *slot = None;
                Reply::Ok
            }
            OpKind::Incr => {
                let n = slot.map_or(0, |(v, _)| v) + 1;
                *slot = Some((n, slot.and_then(|(_, e)| e)));
                Reply::Int(n)
            }
            OpKind::SetNx(v) | OpKind::SetNxPx(v, _) => {
                let wrote = slot.is_none();
                if wrote {
                    let exp = match op.kind {
                        OpKind::SetNxPx(_, ttl) => at(ttl),
                        _ => None,
                    };
                    *slot = Some((v, exp));
                }
                Reply::Bool(wrote)
            }
            OpKind::Cas { expect, new } => {
                let wrote = slot.is_some_and(|(v, _)| v == expect);
                if wrote {
                    *slot = Some((new, None));
                }
                Reply::Bool(wrote)
            }
            OpKind::Expire { ttl, when } => {
                let new = t.saturating_add(ttl);
                let Some((v, cur)) = *slot else {
                    return Reply::Bool(false);
                };
                let ok = match when {
                    ExpireWhen::Always => true,
                    ExpireWhen::Xx => cur.is_some(),
                    ExpireWhen::Gt => cur.is_some_and(|c| c < new),
                };
                if ok {
                    *slot = (new > t).then_some((v, Some(new)));
                }
                Reply::Bool(ok)
            }
            OpKind::Persist => match *slot {
                Some((v, Some(_))) => {
                    *slot = Some((v, None));
                    Reply::Bool(true)
                }
                _ => Reply::Bool(false),
            },
            OpKind::SetKeepTtl(v) => {
                *slot = Some((v, slot.and_then(|(_, e)| e)));
                Reply::Ok
            }
            OpKind::Batch(batch) => {
                let vals = &mut self.vals;
                let val = |k: usize| vals[k].map(|(v, _)| v);
                let held = (0..MAX_KEYS).all(|k| match batch.when[k] {
                    Cond::Always => true,
                    Cond::Absent => val(k).is_none(),
                    Cond::Present => val(k).is_some(),
                    Cond::Is(v) => val(k) == Some(v),
                });
                if held {
                    for (k, write) in batch.steps.into_iter().flatten() {
                        let new = match write {
                            Write::Set(v) => Some((v, None)),
                            Write::Del => None,
                            Write::Copy(src) => vals[usize::from(src)].or(vals[usize::from(k)]),
                        };
                        vals[usize::from(k)] = new;
                    }
                }
                Reply::Bool(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [OpKind; 14] = [
        OpKind::Put(1),
        OpKind::Del,
        OpKind::Incr,
        OpKind::SetNx(1),
        OpKind::SetNx(2),
        OpKind::Cas { expect: 1, new: 2 },
        OpKind::Cas { expect: 2, new: 3 },
        OpKind::PutEx(1, 1),
        OpKind::PutEx(2, 2),
        OpKind::SetNxPx(3, 1),
        OpKind::Expire {
            ttl: 2,
            when: ExpireWhen::Xx,
        },
        OpKind::Expire {
            ttl: 1,
            when: ExpireWhen::Gt,
        },
        OpKind::Persist,
        OpKind::SetKeepTtl(2),
    ];

    /// The times of three operations: all at once, and spread so that
    /// TTLs of 1 and 2 run out in between.
    const TIMES: [[Time; 3]; 3] = [[0, 0, 0], [0, 1, 2], [0, 2, 3]];

    /// `eval` and `KvSpec` agree on every value, expiry and reply for every
    /// short sequence of operations at several times, and `eval` sets the
    /// version exactly when the value or expiry is (re)written and leaves
    /// the material state alone when a condition fails.
    #[test]
    fn eval_agrees_with_the_spec() {
        for times in TIMES {
            for a in KINDS {
                for b in KINDS {
                    for c in KINDS {
                        let mut spec = KvSpec::default();
                        let mut cur = None;
                        for (at, kind) in [a, b, c].into_iter().enumerate() {
                            let ts = times[at];
                            let at = at as Offset;
                            let op = SpecOp {
                                op: ClientOp { key: 0, kind },
                                ts,
                            };
                            let want = spec.invoke(&op);
                            let (next, got) = eval(kind, cur, at, ts);
                            assert_eq!(got, want, "{a:?} {b:?} {c:?} at {times:?}");
                            assert_eq!(
                                live(next, ts).map(|e| (e.val, e.exp)),
                                spec.vals[0],
                                "{a:?} {b:?} {c:?} at {times:?}"
                            );
                            let wrote = matches!(got, Reply::Bool(true) | Reply::Int(_))
                                || matches!(
                                    kind,
                                    OpKind::Put(_) | OpKind::PutEx(..) | OpKind::SetKeepTtl(_)
                                );
                            if wrote {
                                assert!(next.is_none_or(|e| e.ver == at));
                            } else if !matches!(kind, OpKind::Del) {
                                assert_eq!(next, cur);
                            }
                            cur = next;
                        }
                    }
                }
            }
        }
    }

    /// `eval_batch` and `KvSpec` agree on the batches of the model's menu
    /// from every pair of key states, and a batch writes (at its own
    /// offset) exactly the keys its steps name, and only when it held.
    #[test]
    fn eval_batch_agrees_with_the_spec() {
        let states = [None, Some(1), Some(2)];
        for batch in [Batch::msetnx(1), Batch::cross_cas(1, 2), Batch::rename()] {
            for a in states {
                for b in states {
                    let mut spec = KvSpec {
                        vals: [a.map(|v| (v, None)), b.map(|v| (v, None))],
                    };
                    let want = spec.invoke(&SpecOp {
                        op: ClientOp {
                            key: batch.anchor(),
                            kind: OpKind::Batch(batch),
                        },
                        ts: 0,
                    });
                    let entry = |v: Option<Val>| {
                        v.map(|val| Entry {
                            val,
                            ver: 0,
                            exp: None,
                        })
                    };
                    let before = [entry(a), entry(b)];
                    let mut after = before;
                    let held = eval_batch(&batch, &mut after, 5, 0);
                    assert_eq!(Reply::Bool(held), want, "{batch:?} on {a:?} {b:?}");
                    for k in 0..MAX_KEYS {
                        assert_eq!(after[k].map(|e| (e.val, e.exp)), spec.vals[k]);
                        let written = held && batch.writes() & (1 << k) != 0;
                        if !written {
                            assert_eq!(after[k], before[k]);
                        } else if after[k].is_some() && after[k] != before[k] {
                            assert_eq!(after[k].map(|e| e.ver), Some(5));
                        }
                    }
                }
            }
        }
        assert_eq!(Batch::msetnx(1).anchor(), 0);
        assert_eq!(Batch::cross_cas(1, 2).anchor(), 1);
        assert_eq!(Batch::rename().anchor(), 1);
        assert_eq!(Batch::rename().writes(), 0b11);
        assert_eq!(Batch::cross_cas(1, 2).writes(), 0b10);
    }
}
