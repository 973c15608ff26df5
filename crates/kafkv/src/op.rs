//! Read-modify-write operations: what an operation record carries, how it is
//! encoded on the topic, and how it is evaluated against a key's state.
//!
//! An operation record carries the operation, not its result (see
//! docs/rmw.md): every instance evaluates it with [`Op::evaluate`] at the
//! record's offset, on the key's state just before it, and so computes the
//! same new state and the same reply. Evaluation is therefore a pure function
//! of the operation, the state and the record's offset, with every bound it
//! checks carried inside the operation (an instance's `--max-value-bytes`
//! must not change the verdict on another instance).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A key's state as evaluation sees it: the value and its version (the offset
/// of the record that last changed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub value: Bytes,
    pub version: i64,
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
}

impl Condition {
    pub fn holds(self, state: Option<&KeyState>) -> bool {
        match (self, state) {
            (Condition::Always, _) => true,
            (Condition::Absent, state) => state.is_none(),
            (Condition::Present, state) => state.is_some(),
            (Condition::Version(version), Some(state)) => state.version == version,
            (Condition::Version(_), None) => false,
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
    /// A put that happens only when `when` holds.
    Set { value: Bytes, when: Condition },
    /// A delete that happens only when `when` holds.
    Delete { when: Condition },
    /// Only in a batch: the key takes `source`'s value, as it is at this
    /// step, when `when` holds (`RENAME`, `COPY`); nothing if `source` is
    /// absent.
    CopyFrom { source: Bytes, when: Condition },
    /// Several keys at once (`MULTI`/`EXEC` after `WATCH`, `MSETNX`): the
    /// steps run in order only if every condition holds; see [`Batch`].
    Batch(Batch),
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
        offset: i64,
    ) -> (bool, Vec<Outcome>) {
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
                Outcome {
                    applied: when.holds(state.as_ref()),
                    ..Outcome::replaced(state.clone(), state)
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
                None => Outcome::replaced(before.clone(), before),
                Some(Op::CopyFrom { source, when }) => {
                    let copied = state_of(states, source);
                    let op = match copied {
                        Some(copied) => Op::Set {
                            value: copied.value,
                            when: *when,
                        },
                        // Nothing to copy: a condition that never holds.
                        None => Op::Delete {
                            when: Condition::Version(i64::MIN),
                        },
                    };
                    let (_, outcome) = op.evaluate(before.as_ref(), offset);
                    if let Some((_, state)) = states.iter_mut().find(|(k, _)| k == key) {
                        *state = outcome.after.clone();
                    }
                    outcome
                }
                Some(op) => {
                    let (_, outcome) = op.evaluate(before.as_ref(), offset);
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
}

/// What evaluating an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The key keeps its state (a failed condition, an error, an empty `SETRANGE`).
    Unchanged,
    /// The key now holds this value.
    Put(Bytes),
    /// The key is now absent.
    Delete,
}

/// An operation's result at its offset: the key before and after, whether
/// it wrote, and why not if it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub before: Option<KeyState>,
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
    /// Evaluates the operation on `state` (the key just before the record at
    /// `offset`): the effect on the key and the reply.
    pub fn evaluate(&self, state: Option<&KeyState>, offset: i64) -> (Effect, Outcome) {
        let result = self.effect(state);
        let (effect, error) = match result {
            Ok(effect) => (effect, None),
            Err(error) => (Effect::Unchanged, Some(error)),
        };
        let after = match &effect {
            Effect::Unchanged => state.cloned(),
            Effect::Put(value) => Some(KeyState {
                value: value.clone(),
                version: offset,
            }),
            Effect::Delete => None,
        };
        // An operation that succeeds without changing anything (an empty
        // `SETRANGE`) still counts as applied; only a failed condition or an
        // error does not.
        let outcome = Outcome {
            before: state.cloned(),
            after,
            applied: error.is_none() && self.condition_held(state),
            error,
            steps: Vec::new(),
        };
        (effect, outcome)
    }

    fn condition_held(&self, state: Option<&KeyState>) -> bool {
        match self {
            Op::Set { when, .. } | Op::Delete { when } => when.holds(state),
            _ => true,
        }
    }

    fn effect(&self, state: Option<&KeyState>) -> Result<Effect, OpError> {
        let current = state.map(|s| &s.value[..]);
        match self {
            Op::IncrBy(by) => {
                let value = match current {
                    None => 0,
                    Some(bytes) => parse_i64(bytes).ok_or(OpError::NotAnInteger)?,
                };
                let sum = value.checked_add(*by).ok_or(OpError::Overflow)?;
                Ok(Effect::Put(Bytes::from(sum.to_string())))
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
                Ok(Effect::Put(Bytes::from(format_float(sum))))
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
                Ok(Effect::Put(value.freeze()))
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
                Ok(Effect::Put(Bytes::from(value)))
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
                Ok(Effect::Put(Bytes::from(value)))
            }
            Op::Set { value, when } => Ok(if when.holds(state) {
                Effect::Put(value.clone())
            } else {
                Effect::Unchanged
            }),
            Op::Delete { when } => Ok(if when.holds(state) && state.is_some() {
                Effect::Delete
            } else {
                Effect::Unchanged
            }),
            // Evaluated on all its keys by `Batch::evaluate`, never here.
            Op::Batch(_) | Op::CopyFrom { .. } => Ok(Effect::Unchanged),
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
            Op::Delete { when } => {
                out.put_u8(b'd');
                put_condition(&mut out, *when);
            }
            Op::CopyFrom { source, when } => {
                out.put_u8(b'c');
                put_condition(&mut out, *when);
                out.put_slice(source);
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

fn put_condition(out: &mut BytesMut, when: Condition) {
    match when {
        Condition::Always => out.put_u8(b'a'),
        Condition::Absent => out.put_u8(b'n'),
        Condition::Present => out.put_u8(b'x'),
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
        b'v' if buf.len() >= 8 => Condition::Version(buf.get_i64()),
        _ => return Err(DecodeError("unknown condition")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(value: &str, version: i64) -> KeyState {
        KeyState {
            value: Bytes::copy_from_slice(value.as_bytes()),
            version,
        }
    }

    fn after(op: Op, before: Option<KeyState>) -> Outcome {
        op.evaluate(before.as_ref(), 9).1
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
        let (held, outcomes) = batch.evaluate(&mut states, 7);
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
        let (held, verdicts) = batch.evaluate(&mut stale, 7);
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
