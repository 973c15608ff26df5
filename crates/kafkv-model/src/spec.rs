//! The client's view: the operations a client may ask for, what each one
//! does to a key, and the sequential specification ([`KvSpec`]) that
//! stateright's `LinearizabilityTester` checks replies against.
//!
//! Two definitions of an operation's meaning live here on purpose:
//! [`eval`] is what the log does at an offset (it also sets versions), and
//! [`KvSpec`] is the plain map a client believes it talks to. They are
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

/// How many keys the model supports; fixed-size arrays of this length hold
/// per-key data without allocating.
pub const MAX_KEYS: usize = 2;

/// A present key: its value and its version, the offset of the record that
/// last changed it (docs/rmw.md, "version").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub val: Val,
    pub ver: Offset,
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
    /// `k := v`, written as a self-contained `PUT` record.
    Put(Val),
    /// `k` absent, written as a self-contained `DEL` record (a tombstone).
    Del,
    /// `k := k + 1` (absent counts as 0); replies the new value.
    Incr,
    /// `k := v` only if `k` is absent; replies whether it wrote.
    SetNx(Val),
    /// `k := new` only if `k` is present with value `expect`; replies
    /// whether it wrote.
    Cas { expect: Val, new: Val },
}

impl OpKind {
    /// PUT and DEL state the key whole; everything else depends on the state
    /// before it and is written as an `OP` record (hazardous).
    pub fn is_self_contained(self) -> bool {
        matches!(self, OpKind::Put(_) | OpKind::Del)
    }
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

/// Evaluates `kind` at offset `at` on the key's state just before `at`:
/// the key's new state and the reply. A write sets version `at`; a failed
/// condition changes nothing (docs/rmw.md, the `OP` row).
pub fn eval(kind: OpKind, cur: Option<Entry>, at: Offset) -> (Option<Entry>, Reply) {
    let write = |val| Some(Entry { val, ver: at });
    match kind {
        OpKind::Put(v) => (write(v), Reply::Ok),
        OpKind::Del => (None, Reply::Ok),
        OpKind::Incr => {
            let n = cur.map_or(0, |e| e.val) + 1;
            (write(n), Reply::Int(n))
        }
        OpKind::SetNx(v) => match cur {
            None => (write(v), Reply::Bool(true)),
            Some(_) => (cur, Reply::Bool(false)),
        },
        OpKind::Cas { expect, new } => match cur {
            Some(e) if e.val == expect => (write(new), Reply::Bool(true)),
            _ => (cur, Reply::Bool(false)),
        },
    }
}

/// The sequential specification: a map from keys to values, nothing else.
/// Linearizability of the replies is judged against this.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvSpec {
    vals: [Option<Val>; MAX_KEYS],
}

impl SequentialSpec for KvSpec {
    type Op = ClientOp;
    type Ret = Reply;

    fn invoke(&mut self, op: &ClientOp) -> Reply {
        let slot = &mut self.vals[usize::from(op.key)];
        match op.kind {
            OpKind::Put(v) => {
                *slot = Some(v);
                Reply::Ok
            }
            OpKind::Del => {
                *slot = None;
                Reply::Ok
            }
            OpKind::Incr => {
                let n = slot.unwrap_or(0) + 1;
                *slot = Some(n);
                Reply::Int(n)
            }
            OpKind::SetNx(v) => {
                let wrote = slot.is_none();
                if wrote {
                    *slot = Some(v);
                }
                Reply::Bool(wrote)
            }
            OpKind::Cas { expect, new } => {
                let wrote = *slot == Some(expect);
                if wrote {
                    *slot = Some(new);
                }
                Reply::Bool(wrote)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [OpKind; 7] = [
        OpKind::Put(1),
        OpKind::Del,
        OpKind::Incr,
        OpKind::SetNx(1),
        OpKind::SetNx(2),
        OpKind::Cas { expect: 1, new: 2 },
        OpKind::Cas { expect: 2, new: 3 },
    ];

    /// `eval` and `KvSpec` agree on every value and reply for every short
    /// sequence of operations, and `eval` sets the version exactly when the
    /// value is (re)written.
    #[test]
    fn eval_agrees_with_the_spec() {
        for a in KINDS {
            for b in KINDS {
                for c in KINDS {
                    let mut spec = KvSpec::default();
                    let mut cur = None;
                    for (at, kind) in [a, b, c].into_iter().enumerate() {
                        let at = at as Offset;
                        let op = ClientOp { key: 0, kind };
                        let want = spec.invoke(&op);
                        let (next, got) = eval(kind, cur, at);
                        assert_eq!(got, want, "{a:?} {b:?} {c:?}");
                        assert_eq!(next.map(|e| e.val), spec.vals[0]);
                        let wrote = matches!(got, Reply::Bool(true) | Reply::Int(_))
                            || matches!(kind, OpKind::Put(_));
                        if wrote {
                            assert_eq!(next.map(|e| e.ver), Some(at));
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
