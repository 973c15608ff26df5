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

use crate::spec::{Entry, Key, MAX_KEYS, Offset, OpKind, Reply, Val, eval};

/// The most records a log may hold: offsets index `u64` masks.
pub const MAX_RECORDS: usize = 64;

/// What a record says about its key (docs/rmw.md, "Records").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// `k := v`, version = own offset. Self-contained.
    Put(Val),
    /// `k` absent. Self-contained; a tombstone (null value).
    Del,
    /// An operation evaluated at its offset on the state before it. Never
    /// self-contained. Never `OpKind::Put` or `OpKind::Del`.
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
}

impl Record {
    /// A null-valued record: compaction may remove it even when it is the
    /// newest of its key, once tombstone retention allows.
    pub fn is_tombstone(&self) -> bool {
        matches!(self.body, Body::Del | Body::Repair { s: None, .. })
    }
}

/// Per-key states of the reference evaluation.
pub type KeyStates = [Option<Entry>; MAX_KEYS];

/// The reference step: the key states after `rec` at offset `at`, and the
/// reply a client record's operation gets there. Repairs change nothing.
pub fn reference_step(states: &mut KeyStates, rec: &Record, at: Offset) -> Option<Reply> {
    let slot = &mut states[usize::from(rec.key)];
    let kind = match rec.body {
        Body::Put(v) => OpKind::Put(v),
        Body::Del => OpKind::Del,
        Body::Op(kind) => kind,
        Body::Repair { .. } => return None,
    };
    let (next, reply) = eval(kind, *slot, at);
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

/// Which records are self-contained, judged on the full log as exact
/// instances see it: PUT and DEL always, OP never, a repair when it is
/// applied (not stale: no self-contained statement of its key newer than
/// its `r` precedes it) and the key's state right after it equals what it
/// restates — then a reader that sees only this record of the key, or
/// applies it on top of older knowledge, ends up where exact instances are.
///
/// `stale_is_hazard: false` judges a stale repair by its state alone (the
/// rule docs/rmw.md first had; the model shows why it is wrong).
/// Bit `o` of the result is set when the record at `o` is self-contained.
pub fn self_contained(log: &[Record], stale_is_hazard: bool) -> u64 {
    let mut states = KeyStates::default();
    let mut bases: [Option<Offset>; MAX_KEYS] = [None; MAX_KEYS];
    let mut mask = 0u64;
    for (at, rec) in log.iter().enumerate() {
        reference_step(&mut states, rec, at as Offset);
        let k = usize::from(rec.key);
        let sc = match rec.body {
            Body::Put(_) | Body::Del => {
                bases[k] = Some(at as Offset);
                true
            }
            Body::Op(_) => false,
            Body::Repair { r, s } => {
                let stale = bases[k].is_some_and(|b| b > r);
                if !stale {
                    bases[k] = Some(r);
                }
                !(stale && stale_is_hazard) && states[k] == s
            }
        };
        if sc {
            mask |= 1 << at;
        }
    }
    mask
}

/// The offset of the newest record of `key` in the full log.
pub fn newest_of(log: &[Record], key: Key) -> Option<Offset> {
    log.iter().rposition(|r| r.key == key).map(|o| o as Offset)
}

/// Whether the newest record of every key (full log) is self-contained: a
/// reader that finds only each key's newest record then holds the truth.
pub fn every_key_self_contained(log: &[Record], keys: u8, stale_is_hazard: bool) -> bool {
    let sc = self_contained(log, stale_is_hazard);
    (0..keys).all(|k| newest_of(log, k).is_none_or(|o| sc & (1 << o) != 0))
}

/// How the compaction-lag assumption is stated (docs/rmw.md, assumption 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lag {
    /// No lag: any cleanable point.
    Off,
    /// The cleanable point may not pass a hazardous record unless *some*
    /// repair of its key was appended after it, whatever offset that repair
    /// restates. Too weak: a lagging instance's repair can restate an offset
    /// before the hazard (the model finds the loss).
    AnyLaterRepair,
    /// The cleanable point may not pass a hazardous record unless a repair
    /// of its key restating an offset at or after it (`r >= h`) was appended.
    /// This is what "had time to be repaired" means: the writer, or any
    /// instance's backstop, repairs only after applying the hazard, so its
    /// `r` is at or after it; and it repeats while the newest is hazardous.
    Covering,
}

/// The highest cleanable point the lag allows: compaction may touch records
/// below the returned offset only. Hazards are judged on the full log.
pub fn lag_limit(log: &[Record], lag: Lag, stale_is_hazard: bool) -> usize {
    if lag == Lag::Off {
        return log.len();
    }
    let sc = self_contained(log, stale_is_hazard);
    for (h, rec) in log.iter().enumerate() {
        if sc & (1 << h) != 0 {
            continue;
        }
        let repaired = log[h + 1..].iter().any(|later| {
            later.key == rec.key
                && match later.body {
                    Body::Repair { r, .. } => lag == Lag::AnyLaterRepair || usize::from(r) >= h,
                    _ => false,
                }
        });
        if !repaired {
            return h;
        }
    }
    log.len()
}

/// Kafka's cleaner with cleanable point `c`: among present records below
/// `c`, remove every one that has a newer present record of its key also
/// below `c`; then remove the surviving tombstones below `c` for which
/// `may_drop_tombstone(offset)` says retention has passed. Returns the new
/// presence mask.
pub fn compact(
    log: &[Record],
    present: u64,
    c: usize,
    may_drop_tombstone: impl Fn(Offset) -> bool,
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
    for (x, rec) in log.iter().enumerate().take(c) {
        if out & (1 << x) != 0 && rec.is_tombstone() && may_drop_tombstone(x as Offset) {
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
        }
    }

    #[test]
    fn compaction_keeps_the_newest_below_the_cleanable_point() {
        let log = [
            rec(0, Body::Put(1)),
            rec(1, Body::Put(1)),
            rec(0, Body::Del),
            rec(0, Body::Put(2)),
        ];
        let all = 0b1111;
        // Below 3: key 0 at 0 is superseded by 2; key 1 stays.
        assert_eq!(compact(&log, all, 3, |_| false), 0b1110);
        // The surviving tombstone at 2 goes when retention allows.
        assert_eq!(compact(&log, all, 3, |_| true), 0b1010);
        // Below 4 the put at 3 supersedes 2 as well.
        assert_eq!(compact(&log, all, 4, |_| false), 0b1010);
    }

    #[test]
    fn repairs_are_judged_and_bound_the_lag() {
        let log = [
            rec(0, Body::Put(1)),
            rec(0, Body::Op(OpKind::Incr)),
            // A lagging repair restating offset 0 lands after the INCR.
            rec(
                0,
                Body::Repair {
                    r: 0,
                    s: Some(Entry { val: 1, ver: 0 }),
                },
            ),
            rec(
                0,
                Body::Repair {
                    r: 2,
                    s: Some(Entry { val: 2, ver: 1 }),
                },
            ),
        ];
        assert_eq!(self_contained(&log, true), 0b1001);
        assert_eq!(lag_limit(&log[..3], Lag::Covering, true), 1);
        assert_eq!(lag_limit(&log[..3], Lag::AnyLaterRepair, true), 2);
        assert_eq!(lag_limit(&log, Lag::Covering, true), 4);
        assert!(every_key_self_contained(&log, 1, true));
        assert!(!every_key_self_contained(&log[..3], 1, true));
        assert_eq!(reference_reply(&log, 1), Some(Reply::Int(2)));
    }

    /// A stale repair whose state happens to match (a lagging instance
    /// restating offset 0 after a PUT and a DEL) is not self-contained:
    /// compaction must not let it stand in for the DEL.
    #[test]
    fn a_stale_repair_is_hazardous() {
        let log = [
            rec(0, Body::Op(OpKind::Cas { expect: 1, new: 2 })),
            rec(0, Body::Put(1)),
            rec(0, Body::Del),
            rec(0, Body::Repair { r: 0, s: None }),
        ];
        assert_eq!(self_contained(&log, true), 0b0110);
        assert_eq!(self_contained(&log, false), 0b1110);
        assert_eq!(lag_limit(&log, Lag::Covering, true), 3);
    }
}
