//! The partition: its records, the *reference* evaluation of the full,
//! never-compacted log (the ground truth every property compares with), and
//! Kafka's compaction.
//!
//! The model keeps every record ever appended ([`Record`]s in offset order,
//! offset = index) plus a bit mask of the ones compaction has not removed.
//! Instances read only records in the mask; properties read everything.
//!
//! The reference evaluation applies the client records (PUT, DEL, OP) in
//! order and ignores repairs entirely: a repair must never change what the
//! log means, only restate it. Judging every instance against this, rather
//! than against what an exact instance computes, also catches a protocol
//! whose repairs would corrupt instances that saw the whole log.
//!
//! Two notions of "a key's records" live here, and batches are where they
//! part: compaction keeps the newest record per *record key* (Kafka knows
//! nothing else), while the protocol's "newest record of a key" is the
//! newest record that *touches* it ([`Record::touches`]), which includes a
//! batch keyed by another key that writes it.

use crate::instance::Rules;
use crate::spec::{
    Batch, Entry, Key, MAX_KEYS, Offset, OpKind, Reply, Time, Val, eval, eval_batch, live, sweep,
};

/// The most records a log may hold: offsets index `u64` masks.
pub const MAX_RECORDS: usize = 64;

/// What a record says about its key (docs/rmw.md, "Records").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// `k := v`, version = own offset, with a relative TTL (resolved
    /// against the record's timestamp) or no expiry. Self-contained.
    Put(Val, Option<Time>),
    /// `k` absent. Self-contained; a tombstone (null value). A sweeper
    /// writes one (no client op id) when `Rules::conditional_sweep` is off.
    Del,
    /// SWEEP: a conditional tombstone, "delete `k` if it is expired at this
    /// record's timestamp" (docs/expiry.md). It names the sweeper's view:
    /// `r`, the newest offset the sweeper had applied, and `e`, the expiry
    /// it saw there. Self-contained iff `k` is absent after it and no
    /// record touched `k` between `r` and it (with
    /// `Rules::sweep_names_its_view`; without it, iff `k` is absent after
    /// it).
    Sweep { r: Offset, e: Time },
    /// An operation evaluated at its offset on the state before it. Never
    /// self-contained. Never `OpKind::Put` or `OpKind::Del`. A batch is one
    /// such record, keyed by its anchor, evaluated on all its keys.
    Op(OpKind),
    /// Restates `s`, the key's state after every record up to offset `r`.
    /// A tombstone when `s` is absent.
    Repair { r: Offset, s: Option<Entry> },
}

/// One record. `by` and `op` are ghost data (no instance acts on them except
/// the writer recognising its own operation, which a real writer does by its
/// produce acknowledgement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    pub key: Key,
    pub body: Body,
    /// The instance that appended it.
    pub by: u8,
    /// For a client record, the client operation's id (its index in
    /// `State::ops` and its thread id in the linearizability tester).
    pub op: Option<u8>,
    /// The timestamp: the broker clock when it was appended (compaction
    /// keeps it).
    pub ts: Time,
}

impl Record {
    /// A null-valued record: compaction may remove it even when it is the
    /// newest of its key, once tombstone retention allows.
    pub fn is_tombstone(&self) -> bool {
        matches!(
            self.body,
            Body::Del | Body::Sweep { .. } | Body::Repair { s: None, .. }
        )
    }

    /// Written by a sweeper: a SWEEP, or the plain DEL a sweeper writes
    /// without `Rules::conditional_sweep` (client DELs carry an op id).
    pub fn is_sweep(&self) -> bool {
        match self.body {
            Body::Sweep { .. } => true,
            Body::Del => self.op.is_none(),
            _ => false,
        }
    }

    /// The batch this record carries, if any.
    pub fn batch(&self) -> Option<&Batch> {
        match &self.body {
            Body::Op(OpKind::Batch(b)) => Some(b),
            _ => None,
        }
    }

    /// Bit `k` set: the record is part of key `k`'s history for the
    /// protocol — its own key, and every key a batch writes.
    pub fn touched(&self) -> u8 {
        let own = 1 << self.key;
        self.batch().map_or(own, |b| own | b.writes())
    }

    pub fn touches(&self, key: Key) -> bool {
        self.touched() & (1 << key) != 0
    }

    /// Bit `k` set: if the record is hazardous, it is so for key `k` — the
    /// keys the protocol repairs after it (docs/rmw.md, "Multi-key
    /// batches": every key a batch writes and the key it is recorded
    /// under). `every_written: false` is the broken variant
    /// ([`crate::Rules::repair_every_written_key`]) that treats a batch as
    /// hazardous for its record key only.
    pub fn hazard_keys(&self, every_written: bool) -> u8 {
        if every_written {
            self.touched()
        } else {
            1 << self.key
        }
    }
}

/// Per-key states of the reference evaluation.
pub type KeyStates = [Option<Entry>; MAX_KEYS];

/// The reference step: the key states after `rec` at offset `at`, and the
/// reply a client record's operation gets there. Repairs change nothing.
pub fn reference_step(states: &mut KeyStates, rec: &Record, at: Offset) -> Option<Reply> {
    if let Some(batch) = rec.batch() {
        return Some(Reply::Bool(eval_batch(batch, states, at, rec.ts)));
    }
    let slot = &mut states[usize::from(rec.key)];
    let kind = match rec.body {
        Body::Put(v, None) => OpKind::Put(v),
        Body::Put(v, Some(ttl)) => OpKind::PutEx(v, ttl),
        Body::Del => OpKind::Del,
        Body::Op(kind) => kind,
        Body::Sweep { .. } => {
            *slot = sweep(*slot, rec.ts);
            return None;
        }
        Body::Repair { .. } => return None,
    };
    let (next, reply) = eval(kind, *slot, at, rec.ts);
    *slot = next;
    Some(reply)
}

/// The reference state of every key after the records below `upto`.
pub fn reference_before(log: &[Record], upto: usize) -> KeyStates {
    let mut states = KeyStates::default();
    for (at, rec) in log.iter().enumerate().take(upto) {
        reference_step(&mut states, rec, at as Offset);
    }
    states
}

/// The reply sequential evaluation of the full log gives the client record
/// at offset `at`.
pub fn reference_reply(log: &[Record], at: Offset) -> Option<Reply> {
    let mut states = reference_before(log, usize::from(at));
    reference_step(&mut states, &log[usize::from(at)], at)
}

/// Property (d): removing every sweeper's record from the log changes
/// neither a reply nor the logical state (expired entries dropped at each
/// record's timestamp) after any record — a SWEEP never changes a decision
/// (I4), so a key rewritten or given a new expiry before it lands is never
/// deleted. Holds when timestamps grow with offsets.
pub fn sweeps_change_nothing(log: &[Record]) -> bool {
    let mut with = KeyStates::default();
    let mut without = KeyStates::default();
    for (at, rec) in log.iter().enumerate() {
        let at = at as Offset;
        let reply = reference_step(&mut with, rec, at);
        if !rec.is_sweep() && reference_step(&mut without, rec, at) != reply {
            return false;
        }
        if with.map(|e| live(e, rec.ts)) != without.map(|e| live(e, rec.ts)) {
            return false;
        }
    }
    true
}

/// Which records are self-contained, judged on the full log as exact
/// instances see it: PUT and DEL always, OP never (a batch for none of the
/// keys it touches), a repair when it is applied (not stale: no
/// self-contained statement of its key newer than its `r` precedes it), no
/// batch touching its key lies between its `r` and itself, and the key's
/// state right after it equals what it restates — then a reader that sees
/// only this record of the key, or applies it on top of older knowledge,
/// ends up where exact instances are.
///
/// A SWEEP is self-contained iff its key is absent after it and no record
/// touched the key between the sweeper's view `r` and the SWEEP (I5), or
/// iff absent after it without `rules.sweep_names_its_view`, or always
/// with `rules.failed_sweep_is_hazard: false`. A reader behind a gap may
/// hold a wrong state before a SWEEP; it takes the SWEEP as a plain delete
/// when its state is no newer than `r`, and that is right exactly when no
/// record between `r` and the SWEEP changed the key.
///
/// `rules.stale_is_hazard: false` judges a stale repair by its state alone
/// (the rule docs/rmw.md first had; the model shows why it is wrong), and
/// `rules.repair_covers_batches: false` ignores the batches after `r` (a
/// reader re-applies them with the verdict it got, which may be wrong).
/// Bit `o` of the result is set when the record at `o` is self-contained.
pub fn self_contained(log: &[Record], rules: &Rules) -> u64 {
    let mut states = KeyStates::default();
    let mut bases: [Option<Offset>; MAX_KEYS] = [None; MAX_KEYS];
    let mut mask = 0u64;
    for (at, rec) in log.iter().enumerate() {
        let touched_after =
            |r: Offset, k: Key| log[usize::from(r) + 1..at].iter().any(|x| x.touches(k));
        let batch_after = |r: Offset, k: Key| {
            log[usize::from(r) + 1..at]
                .iter()
                .any(|x| x.batch().is_some() && x.touches(k))
        };
        reference_step(&mut states, rec, at as Offset);
        let k = usize::from(rec.key);
        let sc = match rec.body {
            Body::Put(..) | Body::Del => {
                bases[k] = Some(at as Offset);
                true
            }
            Body::Sweep { r, .. } => {
                let alone = !rules.sweep_names_its_view || !touched_after(r, rec.key);
                let sc = (states[k].is_none() && alone) || !rules.failed_sweep_is_hazard;
                if sc {
                    bases[k] = Some(at as Offset);
                }
                sc
            }
            Body::Op(_) => false,
            Body::Repair { r, s } => {
                let stale = bases[k].is_some_and(|b| b > r);
                if !stale {
                    bases[k] = Some(r);
                }
                !(stale && rules.stale_is_hazard)
                    && states[k] == s
                    && !(rules.repair_covers_batches && batch_after(r, rec.key))
            }
        };
        if sc {
            mask |= 1 << at;
        }
    }
    mask
}

/// The offset of the newest record of the full log that touches `key` (a
/// record keyed by it, or a batch writing it): what instances call the
/// key's newest record.
pub fn newest_of(log: &[Record], key: Key) -> Option<Offset> {
    log.iter()
        .rposition(|r| r.touches(key))
        .map(|o| o as Offset)
}

/// Whether the newest record touching every key (full log) is
/// self-contained: a reader that finds only each key's newest record then
/// holds the truth. A batch is never self-contained, so a key a batch keyed
/// by another key wrote is settled only by a later record of its own.
pub fn every_key_self_contained(log: &[Record], keys: u8, rules: &Rules) -> bool {
    let sc = self_contained(log, rules);
    (0..keys).all(|k| newest_of(log, k).is_none_or(|o| sc & (1 << o) != 0))
}

/// How the compaction-lag assumption is stated (docs/rmw.md, assumption 1).
///
/// A hazardous record `h` of key `k` is *covered* once the log holds, after
/// it, a record keyed by `k` that is either a repair restating an offset at
/// or after `h` (the writer's and the backstop's repairs: written after
/// applying `h`, repeated while the key is unsettled) or self-contained (a
/// PUT, a DEL, or a repair that settles the key, whatever offset it
/// restates). A self-contained record counts because the protocol stops
/// repairing a key whose newest record is self-contained, so no later
/// repair need ever come, and Kafka's lag, which is time alone, passes `h`
/// all the same. Within the repair deadline of `h`, one of the two is in
/// the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lag {
    /// No lag: any cleanable point.
    Off,
    /// The cleanable point may not pass a hazardous record unless *some*
    /// repair (or self-contained record) of its key was appended after it,
    /// whatever offset that repair restates. Too weak: a lagging instance's
    /// repair can restate an offset before the hazard (the model finds the
    /// loss).
    AnyLaterRepair,
    /// The cleanable point may not pass a hazardous record that is not
    /// covered (for a batch: for every key it is hazardous for). This is
    /// docs/rmw.md's first wording of assumption 1 ("every hazardous record
    /// up to the one that superseded it already has its repair"), and too
    /// weak for batches: see [`Lag::Margin`].
    Covering,
    /// `Covering`, plus what the lag being *a wide margin* above the repair
    /// deadline gives beyond the cleanable point. The lag is time-based:
    /// when the cleanable point passes a hazard `h`, `h` is older than the
    /// lag; `h`'s first covering record came within the deadline of `h`, so
    /// every record appended before it is younger than `h` by less than the
    /// deadline, hence older than lag − deadline (more than the deadline
    /// when the lag exceeds twice it), hence covered too. So: no hazard
    /// appended before the first covering record of a hazard below the
    /// cleanable point may be uncovered. Single-key operations do not need
    /// this; a batch evaluated on another key's wrong state does (its own
    /// key's repair cannot bring the other key's state back).
    Margin,
}

/// The highest cleanable point the lag allows: compaction may touch records
/// below the returned offset only. Hazards are judged on the full log; a
/// hazardous record is one per key of [`Record::hazard_keys`]
/// (`rules.repair_every_written_key`).
pub fn lag_limit(log: &[Record], lag: Lag, rules: &Rules) -> usize {
    if lag == Lag::Off {
        return log.len();
    }
    let sc = self_contained(log, rules);
    // Each hazard (offset, key) with the offset of its first covering record
    // (`None`: not covered yet), in offset order.
    let hazards = log.iter().enumerate().flat_map(|(h, rec)| {
        let keys = if sc & (1 << h) != 0 {
            0
        } else {
            rec.hazard_keys(rules.repair_every_written_key)
        };
        (0..MAX_KEYS as Key)
            .filter(move |k| keys & (1 << k) != 0)
            .map(move |k| {
                let cover = (h + 1..log.len()).find(|&y| {
                    log[y].key == k
                        && (sc & (1 << y) != 0
                            || match log[y].body {
                                Body::Repair { r, .. } => {
                                    lag == Lag::AnyLaterRepair || usize::from(r) >= h
                                }
                                _ => false,
                            })
                });
                (h, cover)
            })
    });
    let hazards: Vec<(usize, Option<usize>)> = hazards.collect();
    // Covering: not past the first hazard without its covering record.
    let open = hazards
        .iter()
        .find(|(_, cover)| cover.is_none())
        .map_or(log.len(), |&(h, _)| h);
    if lag != Lag::Margin {
        return open;
    }
    // Margin: passing hazard `h` also requires every hazard before `h`'s
    // first covering record to be covered, i.e. that record to be at or
    // below `open`; the first hazard whose cover lies beyond stops it.
    hazards
        .iter()
        .take_while(|&&(h, _)| h < open)
        .find(|(_, cover)| cover.is_some_and(|c| c > open))
        .map_or(open, |&(h, _)| h)
}

/// Kafka's cleaner with cleanable point `c`: among present records below
/// `c`, remove every one that has a newer present record of its key also
/// below `c`; then remove the surviving tombstones below `c` for which
/// `may_drop_tombstone(offset, kept)` says retention has passed (`kept`:
/// the presence mask after the first half). Returns the new presence mask.
pub fn compact(
    log: &[Record],
    present: u64,
    c: usize,
    may_drop_tombstone: impl Fn(Offset, u64) -> bool,
) -> u64 {
    let mut out = present;
    for x in 0..c {
        if present & (1 << x) == 0 {
            continue;
        }
        let superseded = (x + 1..c).any(|y| present & (1 << y) != 0 && log[y].key == log[x].key);
        if superseded {
            out &= !(1 << x);
        }
    }
    let kept = out;
    for (x, rec) in log.iter().enumerate().take(c) {
        if out & (1 << x) != 0 && rec.is_tombstone() && may_drop_tombstone(x as Offset, kept) {
            out &= !(1 << x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: Key, body: Body) -> Record {
        Record {
            key,
            body,
            by: 0,
            op: None,
            ts: 0,
        }
    }

    #[test]
    fn compaction_keeps_the_newest_below_the_cleanable_point() {
        let log = [
            rec(0, Body::Put(1, None)),
            rec(1, Body::Put(1, None)),
            rec(0, Body::Del),
            rec(0, Body::Put(2, None)),
        ];
        let all = 0b1111;
        // Below 3: key 0 at 0 is superseded by 2; key 1 stays.
        assert_eq!(compact(&log, all, 3, |_, _| false), 0b1110);
        // The surviving tombstone at 2 goes when retention allows.
        assert_eq!(compact(&log, all, 3, |_, _| true), 0b1010);
        // Below 4 the put at 3 supersedes 2 as well.
        assert_eq!(compact(&log, all, 4, |_, _| false), 0b1010);
    }

    #[test]
    fn repairs_are_judged_and_bound_the_lag() {
        let log = [
            rec(0, Body::Put(1, None)),
            rec(0, Body::Op(OpKind::Incr)),
            // A lagging repair restating offset 0 lands after the INCR.
            rec(
                0,
                Body::Repair {
                    r: 0,
                    s: Some(Entry {
                        val: 1,
                        ver: 0,
                        exp: None,
                    }),
                },
            ),
            rec(
                0,
                Body::Repair {
                    r: 2,
                    s: Some(Entry {
                        val: 2,
                        ver: 1,
                        exp: None,
                    }),
                },
            ),
        ];
        assert_eq!(self_contained(&log, &Rules::PROTOCOL), 0b1001);
        assert_eq!(lag_limit(&log[..3], Lag::Covering, &Rules::PROTOCOL), 1);
        assert_eq!(
            lag_limit(&log[..3], Lag::AnyLaterRepair, &Rules::PROTOCOL),
            2
        );
        assert_eq!(lag_limit(&log, Lag::Covering, &Rules::PROTOCOL), 4);
        assert!(every_key_self_contained(&log, 1, &Rules::PROTOCOL));
        assert!(!every_key_self_contained(&log[..3], 1, &Rules::PROTOCOL));
        assert_eq!(reference_reply(&log, 1), Some(Reply::Int(2)));
    }

    /// A stale repair whose state happens to match (a lagging instance
    /// restating offset 0 after a PUT and a DEL) is not self-contained:
    /// compaction must not let it stand in for the DEL.
    #[test]
    fn a_stale_repair_is_hazardous() {
        let log = [
            rec(0, Body::Op(OpKind::Cas { expect: 1, new: 2 })),
            rec(0, Body::Put(1, None)),
            rec(0, Body::Del),
            rec(0, Body::Repair { r: 0, s: None }),
        ];
        assert_eq!(self_contained(&log, &Rules::PROTOCOL), 0b0110);
        let judged_by_state = Rules {
            stale_is_hazard: false,
            ..Rules::PROTOCOL
        };
        assert_eq!(self_contained(&log, &judged_by_state), 0b1110);
        assert_eq!(lag_limit(&log, Lag::Covering, &Rules::PROTOCOL), 3);
    }

    /// A batch keyed by k1 and decided by k0 is hazardous for k1 only (it
    /// writes nothing else), and touches k1 only; `Lag::Margin` keeps the
    /// cleanable point before the hazard of k0 whose first repair lands
    /// after the unrepaired batch, where `Lag::Covering` lets it pass.
    #[test]
    fn a_batch_is_a_hazard_of_every_key_it_writes() {
        let batch = rec(1, Body::Op(OpKind::Batch(Batch::cross_cas(2, 1))));
        assert_eq!(batch.touched(), 0b10);
        assert_eq!(batch.hazard_keys(true), 0b10);
        let log = [
            rec(0, Body::Put(1, None)),
            rec(0, Body::Op(OpKind::Cas { expect: 1, new: 2 })),
            batch,
            rec(
                0,
                Body::Repair {
                    r: 1,
                    s: Some(Entry {
                        val: 2,
                        ver: 1,
                        exp: None,
                    }),
                },
            ),
        ];
        assert_eq!(reference_reply(&log, 2), Some(Reply::Bool(true)));
        assert_eq!(newest_of(&log, 1), Some(2));
        assert!(!every_key_self_contained(&log, 2, &Rules::PROTOCOL));
        assert_eq!(lag_limit(&log, Lag::Covering, &Rules::PROTOCOL), 2);
        assert_eq!(lag_limit(&log, Lag::Margin, &Rules::PROTOCOL), 1);
        let msetnx = rec(0, Body::Op(OpKind::Batch(Batch::msetnx(1))));
        assert_eq!(msetnx.hazard_keys(true), 0b11);
        assert_eq!(msetnx.hazard_keys(false), 0b01);
        assert_eq!(newest_of(&[msetnx], 1), Some(0));
    }

    /// A later PUT or DEL of the key covers a hazard (nobody repairs a key
    /// whose newest record is self-contained), and so does a repair that
    /// settles it whatever it restates.
    #[test]
    fn a_self_contained_record_covers_a_hazard() {
        let log = [
            rec(0, Body::Put(1, None)),
            rec(0, Body::Op(OpKind::SetNx(2))),
            rec(0, Body::Del),
        ];
        assert_eq!(lag_limit(&log[..2], Lag::Covering, &Rules::PROTOCOL), 1);
        assert_eq!(lag_limit(&log, Lag::Covering, &Rules::PROTOCOL), 3);
        // A lagging repair restating offset 0 after the failed SETNX
        // matches the state after it: it settles the key.
        let lagging = rec(
            0,
            Body::Repair {
                r: 0,
                s: Some(Entry {
                    val: 1,
                    ver: 0,
                    exp: None,
                }),
            },
        );
        let log = [log[0], log[1], lagging];
        assert_eq!(self_contained(&log, &Rules::PROTOCOL), 0b101);
        assert_eq!(lag_limit(&log, Lag::Covering, &Rules::PROTOCOL), 3);
    }

    /// The same lagging repair after a failed MSETNX does not settle: a
    /// batch lies between what it restates and itself.
    #[test]
    fn a_repair_before_a_batch_does_not_settle() {
        let lagging = rec(
            0,
            Body::Repair {
                r: 0,
                s: Some(Entry {
                    val: 1,
                    ver: 0,
                    exp: None,
                }),
            },
        );
        let log = [
            rec(0, Body::Put(1, None)),
            rec(0, Body::Op(OpKind::Batch(Batch::msetnx(1)))),
            lagging,
        ];
        assert_eq!(self_contained(&log, &Rules::PROTOCOL), 0b001);
        let by_state = Rules {
            repair_covers_batches: false,
            ..Rules::PROTOCOL
        };
        assert_eq!(self_contained(&log, &by_state), 0b101);
        assert_eq!(lag_limit(&log, Lag::Covering, &Rules::PROTOCOL), 1);
    }

    /// A SWEEP deletes only a key expired at its own timestamp, is
    /// self-contained exactly then, and changes no decision; a sweeper's
    /// plain DEL of a key rewritten before it does.
    #[test]
    fn a_sweep_is_a_conditional_tombstone() {
        let at = |key, body, ts| Record {
            ts,
            ..rec(key, body)
        };
        let put_ex = at(0, Body::Put(1, Some(1)), 0);
        let rewrite = at(0, Body::Put(2, None), 1);
        let late = at(0, Body::Sweep { r: 0, e: 1 }, 1);
        // Expired at 1: the sweep deletes and settles the key.
        let log = [put_ex, late];
        assert_eq!(reference_before(&log, 2), [None, None]);
        assert_eq!(self_contained(&log, &Rules::PROTOCOL), 0b11);
        assert!(sweeps_change_nothing(&log));
        // Rewritten first: the sweep loses, is hazardous, changes nothing.
        let log = [put_ex, rewrite, late];
        let two = Entry {
            val: 2,
            ver: 1,
            exp: None,
        };
        assert_eq!(reference_before(&log, 3)[0], Some(two));
        assert_eq!(self_contained(&log, &Rules::PROTOCOL), 0b011);
        assert_eq!(lag_limit(&log, Lag::Covering, &Rules::PROTOCOL), 2);
        assert!(sweeps_change_nothing(&log));
        // Winning, but a record of the key (here a matching repair) lies
        // between the sweeper's view and the SWEEP: hazardous, since a
        // reader may hold a state from that record that the SWEEP's
        // "delete what I saw" does not cover.
        let one = Entry {
            val: 1,
            ver: 0,
            exp: Some(1),
        };
        let repair = at(0, Body::Repair { r: 0, s: Some(one) }, 1);
        let log = [put_ex, repair, late];
        assert_eq!(reference_before(&log, 3)[0], None);
        assert_eq!(self_contained(&log, &Rules::PROTOCOL), 0b011);
        let mut rules = Rules::PROTOCOL;
        rules.sweep_names_its_view = false;
        assert_eq!(self_contained(&log, &rules), 0b111);
        // Before its expiry: nothing.
        let early = at(0, Body::Sweep { r: 0, e: 1 }, 0);
        assert_eq!(
            reference_before(&[put_ex, early], 2)[0].map(|e| e.val),
            Some(1)
        );
        // An unconditional sweep (a sweeper's DEL) deletes the rewrite.
        let del = at(0, Body::Del, 1);
        assert!(del.is_sweep());
        assert!(!sweeps_change_nothing(&[put_ex, rewrite, del]));
    }
}
