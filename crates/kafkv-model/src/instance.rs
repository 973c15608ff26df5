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

use std::hash::{Hash, Hasher};

use crate::log::{Body, Record};
use crate::spec::{Entry, MAX_KEYS, Offset, Reply, eval};

/// The protocol's own rules. [`Rules::PROTOCOL`] is docs/rmw.md (including
/// the two rules the model added to it: `stale_is_hazard` and
/// `reply_only_when_ready`); every other value drops one rule to show that
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
    };
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
}

/// An instance's knowledge of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyView {
    /// Value and version, or absent.
    pub state: Option<Entry>,
    /// The offset as of which `state` was last stated whole (a PUT's or
    /// DEL's offset, or an applied repair's `r`); `None` if never stated.
    pub base: Option<Offset>,
    /// Bit `o` set: the OP at offset `o` is after `base` (re-applied on top
    /// of a repair). The operation itself is read from that record.
    pub pending: u64,
    /// Whether the newest record of the key this instance applied is
    /// self-contained (true before any record).
    pub newest_sc: bool,
    /// Offset of this instance's newest repair of the key.
    pub last_repair: Option<Offset>,
    /// Only without the backstop: this instance wrote an operation on the
    /// key and has not repaired it yet.
    pub owes_repair: bool,
}

impl Default for KeyView {
    fn default() -> Self {
        KeyView {
            state: None,
            base: None,
            pending: 0,
            newest_sc: true,
            last_repair: None,
            owes_repair: false,
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
/// crashed instance, a target already reached, and a `last_repair` the
/// instance has read past.
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
        for kv in &self.keys {
            kv.state.hash(h);
            kv.base.hash(h);
            kv.pending.hash(h);
            kv.newest_sc.hash(h);
            kv.last_repair.filter(|&o| o >= self.pos).hash(h);
            kv.owes_repair.hash(h);
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

    /// Applies the record at offset `at` of `log` (a record of the current
    /// log). `ready_here`: whether the instance is ready at the moment it
    /// applies it (its position, `at`, reached its target). Returns the
    /// reply for the instance's own client operation if it answers it.
    pub fn apply(
        &mut self,
        me: u8,
        log: &[Record],
        at: Offset,
        ready_here: bool,
        rules: &Rules,
        events: &mut u16,
    ) -> Option<(u8, Reply)> {
        let rec = log[usize::from(at)];
        let kv = &mut self.keys[usize::from(rec.key)];
        match rec.body {
            Body::Put(_) | Body::Del => {
                kv.state = match rec.body {
                    Body::Put(val) => Some(Entry { val, ver: at }),
                    _ => None,
                };
                kv.base = Some(at);
                kv.pending = 0;
                kv.newest_sc = true;
                kv.owes_repair = false;
                None
            }
            Body::Op(kind) => {
                let (next, reply) = eval(kind, kv.state, at);
                kv.state = next;
                kv.pending |= 1 << at;
                kv.newest_sc = false;
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
                            let Body::Op(kind) = log[usize::from(o)].body else {
                                unreachable!("pending bits mark OP records only")
                            };
                            kv.state = eval(kind, kv.state, o).0;
                        }
                    }
                } else {
                    *events |= event::STALE_IGNORED;
                }
                kv.newest_sc =
                    rules.repairs_settle && kv.state == s && (current || !rules.stale_is_hazard);
                if kv.newest_sc {
                    kv.owes_repair = false;
                }
                None
            }
        }
    }
}
