//! Read-modify-write operations: what an operation record carries, how it is
//! encoded on the topic, and how it is evaluated against a key's state.
//!
//! An operation record carries the operation, not its result (see
//! docs/rmw.md): every instance evaluates it with [`Op::evaluate`] at the
//! record's offset and timestamp ([`At`]), on the key's state just before
//! it, and so computes the same new state and the same reply. Evaluation is
//! therefore a pure function of the operation, the state and the record's
//! place in the log, with every bound it checks carried inside the operation
//! (an instance's `--max-value-bytes` must not change the verdict on another
//! instance).
//!
//! Expiry (docs/expiry.md): a state whose expiry is at or before the
//! record's timestamp counts as absent in every condition and computation,
//! but a failed condition or an error leaves the *material* state as it was
//! (a SWEEP removes it). No instance's own clock enters evaluation.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::collection::{Change, CollectionError, CollectionOp, Type};

/// A key's state as evaluation sees it: the value, its version (the offset
/// of the record that last changed its value or expiry), its expiry and its
/// type (a collection's value is its encoding, see [`crate::collection`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub value: Bytes,
    pub version: i64,
    /// Milliseconds since the Unix epoch at which the key expires; `None`:
    /// never.
    pub expires_at: Option<i64>,
    pub ty: Type,
}

impl KeyState {
    /// A string without an expiry.
    pub fn new(value: Bytes, version: i64) -> Self {
        Self {
            value,
            version,
            expires_at: None,
            ty: Type::String,
        }
    }

    /// Whether the key holds a string (what every string command needs).
    pub fn is_string(&self) -> bool {
        self.ty == Type::String
    }

    /// Whether the key is expired at `time` (ms since the epoch).
    pub fn is_expired_at(&self, time: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= time)
    }
}

/// Where a record sits: its offset and its timestamp (ms since the epoch;
/// the broker's append time on kafkv's topic, 0 when the record has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub offset: i64,
    pub time: i64,
}

/// `state` as evaluation at `time` sees it: absent once expired.
pub fn live_at(state: Option<&KeyState>, time: i64) -> Option<&KeyState> {
    state.filter(|state| !state.is_expired_at(time))
}

/// The expiry a conditional set leaves (`SET … EX|PX|EXAT|PXAT|KEEPTTL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetExpiry {
    /// `KEEPTTL`: the live key's expiry, if any.
    Keep,
    /// `EX`, `PX`, `EXAT`, `PXAT`.
    Until(Deadline),
}

/// When to expire a key (`EXPIRE`'s argument, resolved by the front end to
/// relative or absolute milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// This many milliseconds after the record's timestamp (saturating).
    In(i64),
    /// At this time (ms since the epoch).
    At(i64),
}

impl Deadline {
    /// The absolute time this deadline means for a record at `time`.
    pub fn resolve(self, time: i64) -> i64 {
        match self {
            Deadline::In(ms) => time.saturating_add(ms),
            Deadline::At(at) => at,
        }
    }
}

/// `EXPIRE`'s condition, as Redis 7 has it (`NX`, `XX`, `GT`, `LT`, and
/// `XX` with `GT` or `LT`). For `GT`/`LT` a key without an expiry counts as
/// expiring never (infinitely late).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireWhen {
    Always,
    Nx,
    Xx,
    Gt,
    Lt,
    XxGt,
    XxLt,
}

impl ExpireWhen {
    fn holds(self, current: Option<i64>, new: i64) -> bool {
        let gt = || current.is_some_and(|at| new > at);
        let lt = || current.is_none_or(|at| new < at);
        match self {
            ExpireWhen::Always => true,
            ExpireWhen::Nx => current.is_none(),
            ExpireWhen::Xx => current.is_some(),
            ExpireWhen::Gt | ExpireWhen::XxGt => gt(),
            ExpireWhen::Lt => lt(),
            ExpireWhen::XxLt => current.is_some() && lt(),
        }
    }

    fn code(self) -> u8 {
        match self {
            ExpireWhen::Always => b'a',
            ExpireWhen::Nx => b'n',
            ExpireWhen::Xx => b'x',
            ExpireWhen::Gt => b'g',
            ExpireWhen::Lt => b'l',
            ExpireWhen::XxGt => b'G',
            ExpireWhen::XxLt => b'L',
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            b'a' => ExpireWhen::Always,
            b'n' => ExpireWhen::Nx,
            b'x' => ExpireWhen::Xx,
            b'g' => ExpireWhen::Gt,
            b'l' => ExpireWhen::Lt,
            b'G' => ExpireWhen::XxGt,
            b'L' => ExpireWhen::XxLt,
            _ => return None,
        })
    }
}

/// The condition of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// No condition: an unconditional put or delete inside a batch.
    Always,
    /// The key has no value (`SET NX`, `If-None-Match: *`).
    Absent,
    /// The key has a value (`SET XX`).
    Present,
    /// The key's version is exactly this (`If-Match`, compare-and-set).
    Version(i64),
    /// The key is absent or holds a string: what a string command that
    /// answers the old value needs before it overwrites (`GETSET`,
    /// `GETDEL`, `SET … GET`); on a collection it is Redis's WRONGTYPE.
    StringOrAbsent,
    /// The key holds a string (`SET … XX GET`).
    PresentString,
}

impl Condition {
    pub fn holds(self, state: Option<&KeyState>) -> bool {
        match (self, state) {
            (Condition::Always, _) => true,
            (Condition::Absent, state) => state.is_none(),
            (Condition::Present, state) => state.is_some(),
            (Condition::Version(version), Some(state)) => state.version == version,
            (Condition::Version(_), None) => false,
            (Condition::StringOrAbsent, state) => state.is_none_or(KeyState::is_string),
            (Condition::PresentString, state) => state.is_some_and(KeyState::is_string),
        }
    }
}

/// One read-modify-write operation on one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `INCRBY` (and `INCR`, `DECR`, `DECRBY`): the value as a signed 64-bit
    /// decimal, absent counting as 0.
    IncrBy(i64),
    /// `INCRBYFLOAT`: the value as a float, absent counting as 0.
    IncrByFloat(f64),
    /// `APPEND`: the value with `suffix` added, absent counting as empty.
    Append { suffix: Bytes, max_len: u64 },
    /// `SETRANGE`: `bytes` written at `offset`, zero-padded.
    SetRange {
        offset: u64,
        bytes: Bytes,
        max_len: u64,
    },
    /// `SETBIT`: bit `offset` (most significant bit of byte 0 first) set to `bit`.
    SetBit {
        offset: u64,
        bit: bool,
        max_len: u64,
    },
    /// A put that happens only when `when` holds; it clears any expiry.
    Set { value: Bytes, when: Condition },
    /// A put that happens only when `when` holds, with an expiry
    /// (`SET … NX|XX EX …`, `SET … KEEPTTL`).
    SetEx {
        value: Bytes,
        when: Condition,
        expiry: SetExpiry,
    },
    /// `EXPIRE` and friends (and `GETEX` with a time): the live key's
    /// expiry set to `deadline` when `when` holds; a deadline at or before
    /// the record's time deletes the key. Nothing for an absent key.
    Expire {
        deadline: Deadline,
        when: ExpireWhen,
    },
    /// `PERSIST` (and `GETEX PERSIST`): the live key's expiry removed.
    Persist,
    /// A delete that happens only when `when` holds.
    Delete { when: Condition },
    /// Only in a batch: the key takes `source`'s value, as it is at this
    /// step, when `when` holds (`RENAME`, `COPY`); nothing if `source` is
    /// absent.
    CopyFrom { source: Bytes, when: Condition },
    /// Several keys at once (`MULTI`/`EXEC` after `WATCH`, `MSETNX`): the
    /// steps run in order only if every condition holds; see [`Batch`].
    Batch(Batch),
    /// A write to a list, set, hash or sorted set (`LPUSH`, `SADD`, `HSET`,
    /// `ZADD`, …); it keeps the key's expiry, as Redis does.
    Collection(CollectionOp),
}

/// An atomic multi-key operation. All its keys are in the partition of the
/// record's own key (the first key it writes), so the log orders it against
/// every other write of each of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Each key's condition, tested on the state just before the record.
    pub conditions: Vec<(Bytes, Condition)>,
    /// In order; `None` reads the key (its outcome's `after` is the value).
    pub steps: Vec<(Bytes, Option<Op>)>,
}

impl Batch {
    /// Every key the batch reads or writes, first seen first.
    pub fn keys(&self) -> Vec<&Bytes> {
        let mut keys: Vec<&Bytes> = Vec::new();
        let sources = self.steps.iter().filter_map(|(_, op)| match op {
            Some(Op::CopyFrom { source, .. }) => Some(source),
            _ => None,
        });
        for key in self
            .conditions
            .iter()
            .map(|(key, _)| key)
            .chain(self.steps.iter().map(|(key, _)| key))
            .chain(sources)
        {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// Evaluates the batch at `offset` on `states` (every key of
    /// [`Batch::keys`], as it is just before the record), which it leaves as
    /// the batch leaves them: whether the conditions held, and each step's
    /// outcome — or, when they did not hold, each condition's (its key's
    /// state, and whether it held).
    pub fn evaluate(
        &self,
        states: &mut Vec<(Bytes, Option<KeyState>)>,
        at: At,
    ) -> (bool, Vec<Outcome>) {
        // Material states: what a step leaves unchanged stays as it was.
        let state_of = |states: &Vec<(Bytes, Option<KeyState>)>, key: &[u8]| {
            states
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, state)| state.clone())
        };
        let verdicts: Vec<Outcome> = self
            .conditions
            .iter()
            .map(|(key, when)| {
                let state = state_of(states, key);
                let live = live_at(state.as_ref(), at.time).cloned();
                Outcome {
                    applied: when.holds(live.as_ref()),
                    ..Outcome::replaced(live, state)
                }
            })
            .collect();
        if verdicts.iter().any(|verdict| !verdict.applied) {
            return (false, verdicts);
        }
        let mut outcomes = Vec::with_capacity(self.steps.len());
        for (key, op) in &self.steps {
            let before = state_of(states, key);
            let outcome = match op {
                None => Outcome::replaced(live_at(before.as_ref(), at.time).cloned(), before),
                Some(Op::CopyFrom { source, when }) => {
                    // The source's whole state, its expiry included (RENAME
                    // and COPY carry the TTL); an expired source is absent.
                    let copied = live_at(state_of(states, source).as_ref(), at.time).cloned();
                    let ty = copied.as_ref().map_or(Type::String, |copied| copied.ty);
                    let op = match copied {
                        Some(copied) => Op::with_expiry(copied.value, *when, copied.expires_at),
                        // Nothing to copy: a condition that never holds.
                        None => Op::Delete {
                            when: Condition::Version(i64::MIN),
                        },
                    };
                    let (effect, mut outcome) = op.evaluate(before.as_ref(), at);
                    // The copy is of the source's type, where the put above
                    // wrote it.
                    if let (Effect::Put(..), Some(after)) = (&effect, outcome.after.as_mut()) {
                        after.ty = ty;
                    }
                    if let Some((_, state)) = states.iter_mut().find(|(k, _)| k == key) {
                        *state = outcome.after.clone();
                    }
                    outcome
                }
                Some(op) => {
                    let (_, outcome) = op.evaluate(before.as_ref(), at);
                    if let Some((_, state)) = states.iter_mut().find(|(k, _)| k == key) {
                        *state = outcome.after.clone();
                    }
                    outcome
                }
            };
            outcomes.push(outcome);
        }
        (true, outcomes)
    }
}

// `IncrByFloat` holds a float, but never NaN (parsing refuses it), so
// equality is an equivalence.
impl Eq for Op {}

/// Why an operation changed nothing although its record is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    #[error("increment or decrement would overflow")]
    Overflow,
    #[error("value is not a valid float")]
    NotAFloat,
    #[error("increment would produce NaN or Infinity")]
    NotFinite,
    #[error("string exceeds maximum allowed size ({max} bytes)")]
    TooLarge { max: u64 },
    /// A string command on a collection, or a collection command on a key
    /// of another type.
    #[error("Operation against a key holding the wrong kind of value")]
    WrongType,
    /// A collection written whole would exceed the bound.
    #[error("the collection would exceed its maximum size ({max} bytes)")]
    CollectionTooLarge { max: u64 },
    #[error("hash value is not an integer")]
    HashNotAnInteger,
    #[error("resulting score is not a number (NaN)")]
    NotANumber,
    /// A collection's stored value does not decode (written by another
    /// program or a newer kafkv).
    #[error("the key's stored value is not a valid kafkv collection")]
    Corrupt,
}

impl From<CollectionError> for OpError {
    fn from(error: CollectionError) -> Self {
        match error {
            CollectionError::WrongType => OpError::WrongType,
            CollectionError::TooLarge { max } => OpError::CollectionTooLarge { max },
            CollectionError::NotAnInteger => OpError::HashNotAnInteger,
            CollectionError::Overflow => OpError::Overflow,
            CollectionError::NotANumber => OpError::NotANumber,
            CollectionError::Corrupt => OpError::Corrupt,
        }
    }
}

/// What evaluating an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The key keeps its state (a failed condition, an error, an empty `SETRANGE`).
    Unchanged,
    /// The key now holds this value of this type, expiring at this time (or
    /// never).
    Put(Bytes, Option<i64>, Type),
    /// The key is now absent.
    Delete,
}

/// An operation's result at its offset: the key before and after, whether
/// it wrote, and why not if it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The key as the operation saw it: absent if it had expired.
    pub before: Option<KeyState>,
    /// The key's material state after it (an expired key a failed
    /// condition left alone is still there, until its SWEEP).
    pub after: Option<KeyState>,
    /// `false`: the condition did not hold, or `error` says why not.
    pub applied: bool,
    pub error: Option<OpError>,
    /// A batch's steps, in order (empty for anything else, and for a batch
    /// whose conditions did not hold).
    pub steps: Vec<Outcome>,
}

impl Outcome {
    /// The outcome of a self-contained record (a plain put or delete) that
    /// replaced `before`.
    pub fn replaced(before: Option<KeyState>, after: Option<KeyState>) -> Self {
        Self {
            before,
            after,
            applied: true,
            error: None,
            steps: Vec::new(),
        }
    }
}

/// Redis's bound on a string value (`proto-max-bulk-len`).
pub const REDIS_MAX_STRING: u64 = 512 * 1024 * 1024;

impl Op {
    /// A conditional put leaving `expiry` (`None`: it clears any expiry).
    pub fn set(value: Bytes, when: Condition, expiry: Option<SetExpiry>) -> Op {
        match expiry {
            None => Op::Set { value, when },
            Some(expiry) => Op::SetEx {
                value,
                when,
                expiry,
            },
        }
    }

    /// A conditional put leaving `expires_at` (`None`: no expiry).
    pub fn with_expiry(value: Bytes, when: Condition, expires_at: Option<i64>) -> Op {
        let expiry = expires_at.map(|at| SetExpiry::Until(Deadline::At(at)));
        Op::set(value, when, expiry)
    }

    /// Whether the operation's outcome can depend on the record's time
    /// beyond its key's expiry: it sets a relative expiry or decides on a
    /// deadline. Such an operation is answered by the consumer, which knows
    /// the record's timestamp, never at acknowledgement.
    pub fn depends_on_time(&self) -> bool {
        match self {
            Op::SetEx { .. } | Op::Expire { .. } | Op::Persist => true,
            Op::Batch(batch) => batch.steps.iter().any(|(_, op)| {
                op.as_ref()
                    .is_some_and(|op| op.depends_on_time() || matches!(op, Op::CopyFrom { .. }))
            }),
            _ => false,
        }
    }

    /// Evaluates the operation on `state` (the key's material state just
    /// before the record at `at`): the effect on the key and the reply.
    pub fn evaluate(&self, state: Option<&KeyState>, at: At) -> (Effect, Outcome) {
        let live = live_at(state, at.time);
        let result = self.effect(live, at);
        let (effect, error) = match result {
            // A write whose expiry has already passed deletes (Redis does).
            Ok(Effect::Put(_, Some(expires_at), _)) if expires_at <= at.time => (
                if live.is_some() {
                    Effect::Delete
                } else {
                    Effect::Unchanged
                },
                None,
            ),
            Ok(effect) => (effect, None),
            Err(error) => (Effect::Unchanged, Some(error)),
        };
        let after = match &effect {
            Effect::Unchanged => state.cloned(),
            Effect::Put(value, expires_at, ty) => Some(KeyState {
                value: value.clone(),
                version: at.offset,
                expires_at: *expires_at,
                ty: *ty,
            }),
            Effect::Delete => None,
        };
        // An operation that succeeds without changing anything (an empty
        // `SETRANGE`) still counts as applied; only a failed condition or an
        // error does not.
        let outcome = Outcome {
            before: live.cloned(),
            after,
            applied: error.is_none() && self.condition_held(live, at.time),
            error,
            steps: Vec::new(),
        };
        (effect, outcome)
    }

    fn condition_held(&self, live: Option<&KeyState>, time: i64) -> bool {
        match self {
            Op::Set { when, .. } | Op::SetEx { when, .. } | Op::Delete { when } => when.holds(live),
            Op::Expire { deadline, when } => {
                live.is_some_and(|state| when.holds(state.expires_at, deadline.resolve(time)))
            }
            Op::Persist => live.is_some_and(|state| state.expires_at.is_some()),
            _ => true,
        }
    }

    /// The effect on the live state `state` at `at`.
    fn effect(&self, state: Option<&KeyState>, at: At) -> Result<Effect, OpError> {
        let time = at.time;
        // What INCR, APPEND and the like keep, as Redis does.
        let kept = state.and_then(|s| s.expires_at);
        if let Op::Collection(op) = self {
            let current = state.map(|s| (s.ty, &s.value));
            return Ok(match op.evaluate(current, at.offset)? {
                Change::Unchanged => Effect::Unchanged,
                Change::Put(value) => Effect::Put(value, kept, op.result_type()),
                Change::Delete => Effect::Delete,
            });
        }
        // Every other operation but a plain overwrite or a delete reads or
        // keeps the value as a string: on a collection it is Redis's
        // WRONGTYPE, and changes nothing.
        let overwrites = matches!(self, Op::Set { .. } | Op::SetEx { .. } | Op::Delete { .. });
        let keeps_type = matches!(self, Op::Expire { .. } | Op::Persist);
        if !overwrites && !keeps_type && state.is_some_and(|s| !s.is_string()) {
            return Err(OpError::WrongType);
        }
        let current = state.map(|s| &s.value[..]);
        let string =
            |value: Bytes, expires_at: Option<i64>| Effect::Put(value, expires_at, Type::String);
        match self {
            Op::IncrBy(by) => {
                let value = match current {
                    None => 0,
                    Some(bytes) => parse_i64(bytes).ok_or(OpError::NotAnInteger)?,
                };
                let sum = value.checked_add(*by).ok_or(OpError::Overflow)?;
                Ok(string(Bytes::from(sum.to_string()), kept))
            }
            Op::IncrByFloat(by) => {
                let value = match current {
                    None => 0.0,
                    Some(bytes) => parse_f64(bytes).ok_or(OpError::NotAFloat)?,
                };
                let sum = value + by;
                if !sum.is_finite() {
                    return Err(OpError::NotFinite);
                }
                Ok(string(Bytes::from(format_float(sum)), kept))
            }
            Op::Append { suffix, max_len } => {
                let current = current.unwrap_or_default();
                let len = (current.len() + suffix.len()) as u64;
                if len > *max_len {
                    return Err(OpError::TooLarge { max: *max_len });
                }
                let mut value = BytesMut::with_capacity(len as usize);
                value.put_slice(current);
                value.put_slice(suffix);
                Ok(string(value.freeze(), kept))
            }
            Op::SetRange {
                offset,
                bytes,
                max_len,
            } => {
                if bytes.is_empty() {
                    // Redis answers the length and writes nothing, even for
                    // an absent key.
                    return Ok(Effect::Unchanged);
                }
                let end = offset
                    .checked_add(bytes.len() as u64)
                    .filter(|end| end <= max_len)
                    .ok_or(OpError::TooLarge { max: *max_len })?;
                let current = current.unwrap_or_default();
                let mut value = current.to_vec();
                if (value.len() as u64) < end {
                    value.resize(end as usize, 0);
                }
                value[*offset as usize..end as usize].copy_from_slice(bytes);
                Ok(string(Bytes::from(value), kept))
            }
            Op::SetBit {
                offset,
                bit,
                max_len,
            } => {
                let byte = offset / 8;
                if byte >= *max_len {
                    return Err(OpError::TooLarge { max: *max_len });
                }
                let mut value = current.unwrap_or_default().to_vec();
                if value.len() as u64 <= byte {
                    value.resize(byte as usize + 1, 0);
                }
                let mask = 0x80u8 >> (offset % 8);
                if *bit {
                    value[byte as usize] |= mask;
                } else {
                    value[byte as usize] &= !mask;
                }
                Ok(string(Bytes::from(value), kept))
            }
            Op::Set { value, when } => Ok(if when.holds(state) {
                string(value.clone(), None)
            } else {
                Effect::Unchanged
            }),
            Op::SetEx {
                value,
                when,
                expiry,
            } => Ok(if when.holds(state) {
                let expires_at = match expiry {
                    SetExpiry::Keep => kept,
                    SetExpiry::Until(deadline) => Some(deadline.resolve(time)),
                };
                string(value.clone(), expires_at)
            } else {
                Effect::Unchanged
            }),
            Op::Expire { deadline, when } => Ok(match state {
                Some(state) if when.holds(state.expires_at, deadline.resolve(time)) => {
                    Effect::Put(state.value.clone(), Some(deadline.resolve(time)), state.ty)
                }
                _ => Effect::Unchanged,
            }),
            Op::Persist => Ok(match state {
                Some(state) if state.expires_at.is_some() => {
                    Effect::Put(state.value.clone(), None, state.ty)
                }
                _ => Effect::Unchanged,
            }),
            Op::Delete { when } => Ok(if when.holds(state) && state.is_some() {
                Effect::Delete
            } else {
                Effect::Unchanged
            }),
            // Evaluated on all its keys by `Batch::evaluate`, never here.
            Op::Batch(_) | Op::CopyFrom { .. } => Ok(Effect::Unchanged),
            Op::Collection(_) => unreachable!("evaluated above"),
        }
    }
}

/// Redis's `string2ll`: an optional `-`, then digits with no leading zero
/// (but `0` itself), no spaces, no `+`, within `i64`.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let valid = match digits {
        [] => false,
        [b'0'] => bytes.len() == 1,
        [first, rest @ ..] => (b'1'..=b'9').contains(first) && rest.iter().all(u8::is_ascii_digit),
    };
    if !valid {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Redis's `string2ld` as far as a 64-bit float goes: the whole string is a
/// number (no surrounding spaces), and not NaN.
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty()
        || text.starts_with(|c: char| c.is_ascii_whitespace())
        || text.ends_with(|c: char| c.is_ascii_whitespace())
    {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// `INCRBYFLOAT`'s reply and stored value: the shortest decimal that reads
/// back as the same float, never in exponent form (as Redis's `%.17Lf` with
/// trailing zeros removed, without the noise digits a 64-bit float would
/// print at 17 places: 1.5 + 0.1 is `1.6`).
pub fn format_float(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    value.to_string()
}

/// The record value's format version, the first byte of every encoded operation.
const FORMAT: u8 = 1;

/// The operation record's payload could not be read (written by another
/// program, or a newer kafkv).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed kafkv operation record: {0}")]
pub struct DecodeError(&'static str);

impl Op {
    /// The record value that carries this operation.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(FORMAT);
        match self {
            Op::IncrBy(by) => {
                out.put_u8(b'i');
                out.put_i64(*by);
            }
            Op::IncrByFloat(by) => {
                out.put_u8(b'f');
                out.put_f64(*by);
            }
            Op::Append { suffix, max_len } => {
                out.put_u8(b'a');
                out.put_u64(*max_len);
                out.put_slice(suffix);
            }
            Op::SetRange {
                offset,
                bytes,
                max_len,
            } => {
                out.put_u8(b'r');
                out.put_u64(*max_len);
                out.put_u64(*offset);
                out.put_slice(bytes);
            }
            Op::SetBit {
                offset,
                bit,
                max_len,
            } => {
                out.put_u8(b'b');
                out.put_u64(*max_len);
                out.put_u64(*offset);
                out.put_u8(*bit as u8);
            }
            Op::Set { value, when } => {
                out.put_u8(b's');
                put_condition(&mut out, *when);
                out.put_slice(value);
            }
            Op::SetEx {
                value,
                when,
                expiry,
            } => {
                out.put_u8(b'S');
                match expiry {
                    SetExpiry::Keep => out.put_u8(b'k'),
                    SetExpiry::Until(deadline) => put_deadline(&mut out, *deadline),
                }
                put_condition(&mut out, *when);
                out.put_slice(value);
            }
            Op::Expire { deadline, when } => {
                out.put_u8(b'e');
                out.put_u8(when.code());
                put_deadline(&mut out, *deadline);
            }
            Op::Persist => out.put_u8(b'p'),
            Op::Delete { when } => {
                out.put_u8(b'd');
                put_condition(&mut out, *when);
            }
            Op::CopyFrom { source, when } => {
                out.put_u8(b'c');
                put_condition(&mut out, *when);
                out.put_slice(source);
            }
            Op::Collection(op) => {
                out.put_u8(b'C');
                op.encode(&mut out);
            }
            Op::Batch(batch) => {
                out.put_u8(b'B');
                out.put_u32(batch.conditions.len() as u32);
                for (key, when) in &batch.conditions {
                    put_bytes(&mut out, key);
                    put_condition(&mut out, *when);
                }
                out.put_u32(batch.steps.len() as u32);
                for (key, op) in &batch.steps {
                    put_bytes(&mut out, key);
                    match op {
                        None => out.put_u8(0),
                        Some(op) => {
                            out.put_u8(1);
                            put_bytes(&mut out, &op.encode());
                        }
                    }
                }
            }
        }
        out.freeze()
    }

    /// Reads an operation back from its record value.
    pub fn decode(value: &[u8]) -> Result<Op, DecodeError> {
        let mut buf = value;
        let need = |buf: &[u8], n: usize| {
            if buf.len() < n {
                Err(DecodeError("truncated"))
            } else {
                Ok(())
            }
        };
        need(buf, 2)?;
        if buf.get_u8() != FORMAT {
            return Err(DecodeError("unknown format version"));
        }
        let op = match buf.get_u8() {
            b'i' => {
                need(buf, 8)?;
                Op::IncrBy(buf.get_i64())
            }
            b'f' => {
                need(buf, 8)?;
                Op::IncrByFloat(buf.get_f64())
            }
            b'a' => {
                need(buf, 8)?;
                let max_len = buf.get_u64();
                Op::Append {
                    suffix: Bytes::copy_from_slice(buf),
                    max_len,
                }
            }
            b'r' => {
                need(buf, 16)?;
                let max_len = buf.get_u64();
                let offset = buf.get_u64();
                Op::SetRange {
                    offset,
                    bytes: Bytes::copy_from_slice(buf),
                    max_len,
                }
            }
            b'b' => {
                need(buf, 17)?;
                let max_len = buf.get_u64();
                let offset = buf.get_u64();
                Op::SetBit {
                    offset,
                    bit: buf.get_u8() != 0,
                    max_len,
                }
            }
            b's' => {
                let when = get_condition(&mut buf)?;
                Op::Set {
                    value: Bytes::copy_from_slice(buf),
                    when,
                }
            }
            b'S' => {
                let expiry = match buf.first() {
                    Some(b'k') => {
                        buf.advance(1);
                        SetExpiry::Keep
                    }
                    _ => SetExpiry::Until(get_deadline(&mut buf)?),
                };
                let when = get_condition(&mut buf)?;
                Op::SetEx {
                    value: Bytes::copy_from_slice(buf),
                    when,
                    expiry,
                }
            }
            b'e' => {
                need(buf, 10)?;
                let when =
                    ExpireWhen::from_code(buf.get_u8()).ok_or(DecodeError("unknown condition"))?;
                let deadline = get_deadline(&mut buf)?;
                if !buf.is_empty() {
                    return Err(DecodeError("trailing bytes"));
                }
                Op::Expire { deadline, when }
            }
            b'p' if buf.is_empty() => Op::Persist,
            b'd' => Op::Delete {
                when: get_condition(&mut buf)?,
            },
            b'c' => {
                let when = get_condition(&mut buf)?;
                Op::CopyFrom {
                    source: Bytes::copy_from_slice(buf),
                    when,
                }
            }
            b'C' => Op::Collection(
                CollectionOp::decode(buf)
                    .map_err(|_| DecodeError("malformed collection operation"))?,
            ),
            b'B' => {
                let mut conditions = Vec::new();
                for _ in 0..get_u32(&mut buf)? {
                    let key = get_bytes(&mut buf)?;
                    conditions.push((key, get_condition(&mut buf)?));
                }
                let mut steps = Vec::new();
                for _ in 0..get_u32(&mut buf)? {
                    let key = get_bytes(&mut buf)?;
                    need(buf, 1)?;
                    let op = match buf.get_u8() {
                        0 => None,
                        _ => match Op::decode(&get_bytes(&mut buf)?)? {
                            Op::Batch(_) => return Err(DecodeError("a batch inside a batch")),
                            op => Some(op),
                        },
                    };
                    steps.push((key, op));
                }
                Op::Batch(Batch { conditions, steps })
            }
            _ => return Err(DecodeError("unknown operation")),
        };
        Ok(op)
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn get_u32(buf: &mut &[u8]) -> Result<u32, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError("truncated"));
    }
    Ok(buf.get_u32())
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, DecodeError> {
    let len = get_u32(buf)? as usize;
    if buf.len() < len {
        return Err(DecodeError("truncated"));
    }
    let bytes = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(bytes)
}

fn put_deadline(out: &mut BytesMut, deadline: Deadline) {
    let (tag, ms) = match deadline {
        Deadline::In(ms) => (b'i', ms),
        Deadline::At(at) => (b't', at),
    };
    out.put_u8(tag);
    out.put_i64(ms);
}

fn get_deadline(buf: &mut &[u8]) -> Result<Deadline, DecodeError> {
    if buf.len() < 9 {
        return Err(DecodeError("truncated"));
    }
    Ok(match buf.get_u8() {
        b'i' => Deadline::In(buf.get_i64()),
        b't' => Deadline::At(buf.get_i64()),
        _ => return Err(DecodeError("unknown deadline")),
    })
}

fn put_condition(out: &mut BytesMut, when: Condition) {
    match when {
        Condition::Always => out.put_u8(b'a'),
        Condition::Absent => out.put_u8(b'n'),
        Condition::Present => out.put_u8(b'x'),
        Condition::StringOrAbsent => out.put_u8(b's'),
        Condition::PresentString => out.put_u8(b'S'),
        Condition::Version(version) => {
            out.put_u8(b'v');
            out.put_i64(version);
        }
    }
}

fn get_condition(buf: &mut &[u8]) -> Result<Condition, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError("truncated"));
    }
    Ok(match buf.get_u8() {
        b'a' => Condition::Always,
        b'n' => Condition::Absent,
        b'x' => Condition::Present,
        b's' => Condition::StringOrAbsent,
        b'S' => Condition::PresentString,
        b'v' if buf.len() >= 8 => Condition::Version(buf.get_i64()),
        _ => return Err(DecodeError("unknown condition")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(value: &str, version: i64) -> KeyState {
        KeyState::new(Bytes::copy_from_slice(value.as_bytes()), version)
    }

    /// At offset 9, time 0.
    fn after(op: Op, before: Option<KeyState>) -> Outcome {
        op.evaluate(before.as_ref(), At { offset: 9, time: 0 }).1
    }

    fn expiring(value: &str, version: i64, expires_at: i64) -> KeyState {
        KeyState {
            expires_at: Some(expires_at),
            ..state(value, version)
        }
    }

    fn at(offset: i64, time: i64) -> At {
        At { offset, time }
    }

    #[test]
    fn an_expired_key_is_absent_to_every_decision_but_stays_until_swept() {
        let old = Some(expiring("5", 1, 100));
        // INCR counts from 0 and clears nothing it did not see.
        let (_, outcome) = Op::IncrBy(1).evaluate(old.as_ref(), at(9, 100));
        assert_eq!(outcome.before, None);
        assert_eq!(outcome.after, Some(state("1", 9)));
        // Before the expiry INCR keeps the TTL, as Redis does.
        let (_, outcome) = Op::IncrBy(1).evaluate(old.as_ref(), at(9, 99));
        assert_eq!(outcome.after, Some(expiring("6", 9, 100)));
        // SET NX takes an expired key; SET XX refuses it and leaves the
        // material state for its SWEEP.
        let nx = Op::SetEx {
            value: Bytes::from_static(b"me"),
            when: Condition::Absent,
            expiry: SetExpiry::Until(Deadline::In(500)),
        };
        let (_, outcome) = nx.evaluate(old.as_ref(), at(9, 100));
        assert!(outcome.applied);
        assert_eq!(outcome.after, Some(expiring("me", 9, 600)));
        let (_, outcome) = nx.evaluate(old.as_ref(), at(9, 99));
        assert!(!outcome.applied);
        let xx = Op::Set {
            value: Bytes::from_static(b"x"),
            when: Condition::Present,
        };
        let (_, outcome) = xx.evaluate(old.as_ref(), at(9, 100));
        assert!(!outcome.applied);
        assert_eq!(outcome.after, old, "the material state is left alone");
        // A version condition on an expired key fails.
        let cas = Op::Set {
            value: Bytes::from_static(b"x"),
            when: Condition::Version(1),
        };
        assert!(!cas.evaluate(old.as_ref(), at(9, 100)).1.applied);
        assert!(cas.evaluate(old.as_ref(), at(9, 99)).1.applied);
    }

    #[test]
    fn expire_follows_redis_conditions_and_a_past_deadline_deletes() {
        let plain = Some(state("v", 1));
        let volatile = Some(expiring("v", 1, 1000));
        let expire = |deadline, when| Op::Expire { deadline, when };
        let run = |op: Op, s: &Option<KeyState>| op.evaluate(s.as_ref(), at(9, 100)).1;
        // (when, on a key without expiry, on one expiring at 1000, new = 2000)
        let table = [
            (ExpireWhen::Always, true, true),
            (ExpireWhen::Nx, true, false),
            (ExpireWhen::Xx, false, true),
            (ExpireWhen::Gt, false, true),
            (ExpireWhen::Lt, true, false),
            (ExpireWhen::XxGt, false, true),
            (ExpireWhen::XxLt, false, false),
        ];
        for (when, on_plain, on_volatile) in table {
            let op = expire(Deadline::At(2000), when);
            assert_eq!(
                run(op.clone(), &plain).applied,
                on_plain,
                "{when:?} on plain"
            );
            assert_eq!(
                run(op, &volatile).applied,
                on_volatile,
                "{when:?} on volatile"
            );
        }
        let outcome = run(expire(Deadline::In(50), ExpireWhen::Always), &plain);
        assert_eq!(outcome.after, Some(expiring("v", 9, 150)), "new version");
        // A deadline at or before the record's time deletes, replying 1.
        let outcome = run(expire(Deadline::At(100), ExpireWhen::Always), &plain);
        assert!(outcome.applied);
        assert_eq!(outcome.after, None);
        // Nothing on an absent or expired key.
        let outcome = run(expire(Deadline::In(50), ExpireWhen::Always), &None);
        assert!(!outcome.applied);
        let expired = Some(expiring("v", 1, 100));
        assert!(!run(expire(Deadline::In(50), ExpireWhen::Always), &expired).applied);
        // PERSIST removes a live expiry only.
        let outcome = run(Op::Persist, &volatile);
        assert!(outcome.applied);
        assert_eq!(outcome.after, Some(state("v", 9)));
        assert!(!run(Op::Persist, &plain).applied);
        assert!(!run(Op::Persist, &expired).applied);
        // KEEPTTL keeps the live expiry, and none of an expired key's.
        let keep = Op::SetEx {
            value: Bytes::from_static(b"w"),
            when: Condition::Always,
            expiry: SetExpiry::Keep,
        };
        assert_eq!(
            run(keep.clone(), &volatile).after,
            Some(expiring("w", 9, 1000))
        );
        assert_eq!(run(keep, &expired).after, Some(state("w", 9)));
    }

    #[test]
    fn a_copy_carries_the_expiry_and_an_expired_source_is_absent() {
        let batch = Batch {
            conditions: Vec::new(),
            steps: vec![(
                Bytes::from_static(b"to"),
                Some(Op::CopyFrom {
                    source: Bytes::from_static(b"from"),
                    when: Condition::Always,
                }),
            )],
        };
        let mut states = vec![
            (Bytes::from_static(b"from"), Some(expiring("v", 1, 1000))),
            (Bytes::from_static(b"to"), None),
        ];
        batch.evaluate(&mut states, at(9, 100));
        assert_eq!(states[1].1, Some(expiring("v", 9, 1000)));
        let mut states = vec![
            (Bytes::from_static(b"from"), Some(expiring("v", 1, 100))),
            (Bytes::from_static(b"to"), None),
        ];
        batch.evaluate(&mut states, at(9, 100));
        assert_eq!(states[1].1, None);
    }

    #[test]
    fn integers_parse_as_redis_string2ll() {
        for good in [
            "0",
            "-1",
            "42",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(parse_i64(good.as_bytes()).is_some(), "{good}");
        }
        for bad in [
            "",
            "-",
            "+1",
            " 1",
            "1 ",
            "01",
            "-0",
            "1.0",
            "9223372036854775808",
            "abc",
        ] {
            assert_eq!(parse_i64(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn increments_count_from_zero_and_refuse_non_integers_and_overflow() {
        let outcome = after(Op::IncrBy(5), None);
        assert_eq!(outcome.after, Some(state("5", 9)));
        assert!(outcome.applied);
        let outcome = after(Op::IncrBy(-1), Some(state("10", 3)));
        assert_eq!(outcome.after, Some(state("9", 9)));
        let outcome = after(Op::IncrBy(1), Some(state("x", 3)));
        assert_eq!(outcome.error, Some(OpError::NotAnInteger));
        assert_eq!(
            outcome.after,
            Some(state("x", 3)),
            "unchanged, same version"
        );
        assert!(!outcome.applied);
        let outcome = after(Op::IncrBy(1), Some(state(&i64::MAX.to_string(), 3)));
        assert_eq!(outcome.error, Some(OpError::Overflow));
    }

    #[test]
    fn float_increments_print_as_redis() {
        assert_eq!(format_float(10.5), "10.5");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(17179869185.5), "17179869185.5");
        assert_eq!(format_float(1.5 + 0.1), "1.6");
        assert_eq!(format_float(-0.0), "0");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        let outcome = after(Op::IncrByFloat(0.25), Some(state("1", 1)));
        assert_eq!(outcome.after, Some(state("1.25", 9)));
        assert_eq!(
            after(Op::IncrByFloat(1.0), Some(state(" 1", 1))).error,
            Some(OpError::NotAFloat)
        );
        assert_eq!(
            after(Op::IncrByFloat(f64::INFINITY), Some(state("0", 1))).error,
            Some(OpError::NotFinite)
        );
    }

    #[test]
    fn string_edits_grow_pad_and_respect_the_bound() {
        let append = Op::Append {
            suffix: Bytes::from_static(b"bar"),
            max_len: 6,
        };
        assert_eq!(
            after(append.clone(), Some(state("foo", 1))).after,
            Some(state("foobar", 9))
        );
        assert_eq!(
            after(append, Some(state("food", 1))).error,
            Some(OpError::TooLarge { max: 6 })
        );
        let range = Op::SetRange {
            offset: 2,
            bytes: Bytes::from_static(b"xy"),
            max_len: 100,
        };
        assert_eq!(after(range, None).after, Some(state("\0\0xy", 9)));
        let empty = Op::SetRange {
            offset: 5,
            bytes: Bytes::new(),
            max_len: 100,
        };
        let outcome = after(empty, None);
        assert_eq!((outcome.after, outcome.applied), (None, true));
        let bit = Op::SetBit {
            offset: 9,
            bit: true,
            max_len: 100,
        };
        assert_eq!(after(bit, None).after, Some(state("\0\x40", 9)));
    }

    #[test]
    fn conditional_writes_hold_or_change_nothing() {
        let nx = Op::Set {
            value: Bytes::from_static(b"v"),
            when: Condition::Absent,
        };
        assert!(after(nx.clone(), None).applied);
        let refused = after(nx, Some(state("old", 4)));
        assert!(!refused.applied);
        assert_eq!(refused.after, Some(state("old", 4)));
        let cas = Op::Set {
            value: Bytes::from_static(b"new"),
            when: Condition::Version(4),
        };
        assert!(after(cas.clone(), Some(state("old", 4))).applied);
        assert!(!after(cas, Some(state("old", 5))).applied);
        let delete = Op::Delete {
            when: Condition::Version(4),
        };
        let outcome = after(delete.clone(), Some(state("old", 4)));
        assert_eq!((outcome.applied, outcome.after), (true, None));
        assert!(!after(delete, None).applied);
    }

    #[test]
    fn a_batch_runs_its_steps_in_order_only_when_every_condition_holds() {
        let batch = Batch {
            conditions: vec![(Bytes::from_static(b"a"), Condition::Version(3))],
            steps: vec![
                (Bytes::from_static(b"a"), Some(Op::IncrBy(1))),
                (
                    Bytes::from_static(b"b"),
                    Some(Op::Append {
                        suffix: Bytes::from_static(b"!"),
                        max_len: 10,
                    }),
                ),
                (Bytes::from_static(b"a"), Some(Op::IncrBy(1))),
                (Bytes::from_static(b"a"), None),
            ],
        };
        let mut states = vec![
            (Bytes::from_static(b"a"), Some(state("1", 3))),
            (Bytes::from_static(b"b"), None),
        ];
        let (held, outcomes) = batch.evaluate(&mut states, At { offset: 7, time: 0 });
        assert!(held);
        assert_eq!(outcomes[2].after, Some(state("3", 7)));
        assert_eq!(
            outcomes[3].after,
            Some(state("3", 7)),
            "a read sees the writes before it"
        );
        assert_eq!(states[1].1, Some(state("!", 7)));
        let mut stale = vec![
            (Bytes::from_static(b"a"), Some(state("1", 4))),
            (Bytes::from_static(b"b"), None),
        ];
        let (held, verdicts) = batch.evaluate(&mut stale, At { offset: 7, time: 0 });
        assert!(!held);
        assert_eq!(verdicts.len(), 1, "one verdict per condition");
        assert!(!verdicts[0].applied);
        assert_eq!(stale[0].1, Some(state("1", 4)), "nothing written");
    }

    #[test]
    fn every_operation_survives_its_encoding() {
        let ops = [
            Op::IncrBy(-7),
            Op::IncrByFloat(1.5),
            Op::Append {
                suffix: Bytes::from_static(b"\0x"),
                max_len: 9,
            },
            Op::SetRange {
                offset: 3,
                bytes: Bytes::from_static(b"ab"),
                max_len: 9,
            },
            Op::SetBit {
                offset: 70,
                bit: true,
                max_len: 9,
            },
            Op::Set {
                value: Bytes::from_static(b"v"),
                when: Condition::Version(12),
            },
            Op::Set {
                value: Bytes::new(),
                when: Condition::Absent,
            },
            Op::Delete {
                when: Condition::Present,
            },
            Op::SetEx {
                value: Bytes::from_static(b"v"),
                when: Condition::Absent,
                expiry: SetExpiry::Until(Deadline::In(500)),
            },
            Op::SetEx {
                value: Bytes::new(),
                when: Condition::Present,
                expiry: SetExpiry::Until(Deadline::At(-3)),
            },
            Op::SetEx {
                value: Bytes::from_static(b"k"),
                when: Condition::Always,
                expiry: SetExpiry::Keep,
            },
            Op::Expire {
                deadline: Deadline::In(i64::MAX),
                when: ExpireWhen::XxLt,
            },
            Op::Expire {
                deadline: Deadline::At(1_700_000_000_000),
                when: ExpireWhen::Nx,
            },
            Op::Persist,
            Op::Batch(Batch {
                conditions: vec![
                    (Bytes::from_static(b"a"), Condition::Version(3)),
                    (Bytes::from_static(b"b"), Condition::Absent),
                ],
                steps: vec![
                    (Bytes::from_static(b"a"), Some(Op::IncrBy(2))),
                    (Bytes::from_static(b"b"), None),
                    (
                        Bytes::from_static(b"b"),
                        Some(Op::Set {
                            value: Bytes::from_static(b"x"),
                            when: Condition::Always,
                        }),
                    ),
                    (
                        Bytes::from_static(b"c"),
                        Some(Op::CopyFrom {
                            source: Bytes::from_static(b"a"),
                            when: Condition::Absent,
                        }),
                    ),
                ],
            }),
        ];
        for op in ops {
            assert_eq!(Op::decode(&op.encode()), Ok(op.clone()), "{op:?}");
        }
        assert!(Op::decode(b"").is_err());
        assert!(Op::decode(&[9, b'i']).is_err());
        assert!(Op::decode(&[FORMAT, b'i', 1]).is_err());
    }
}
