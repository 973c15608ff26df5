//! Redis collections (lists, sets, hashes, sorted sets): the key types, the
//! canonical encoding of each collection as one value, the reads the command
//! layer makes of them, and the write operations ([`CollectionOp`]) that
//! operation records carry.
//!
//! A collection is stored whole, as one value, in the view and on the
//! topic; its [`Type`] travels beside the value, never inside it. A write to
//! a collection is an operation record: every instance evaluates it with
//! [`CollectionOp::evaluate`] on the key's value just before the record, at
//! the record's offset, and must compute byte-identical values. Evaluation
//! is therefore a pure function of the operation, the prior value and the
//! offset: no hash-map iteration order, no clock, no randomness but what is
//! derived from the offset (`SPOP`), and every encoding is canonical (the
//! same content is always the same bytes).
//!
//! Replies are not part of evaluation: the command layer derives them from
//! the values before and after, with the helpers here (each
//! [`CollectionOp`] variant says how).
//!
//! # Encodings
//! Every collection starts with its element count, a big-endian `u32`, never
//! 0: Redis keeps no empty collection (emptying one deletes the key), so a
//! zero count is corrupt. [`len`] is O(1) for every type. A `varint` is
//! unsigned LEB128 in its minimal form (a longer form is corrupt, so that
//! the bytes stay canonical).
//! - List: the elements head first, each `varint(len) ‖ bytes ‖
//!   reverse(varint(len))`. The mirrored length lets a reader walk from
//!   either end.
//! - Set: the members in strictly ascending bytewise order, each
//!   `varint(len) ‖ bytes`.
//! - Hash: the fields in strictly ascending bytewise order, each
//!   `varint(len) ‖ field ‖ varint(len) ‖ value`.
//! - Sorted set: the entries in Redis's order (score ascending, then member
//!   bytewise), each `score ‖ varint(len) ‖ member`, the score as the
//!   big-endian bits of an `f64`; members unique, scores never NaN, and
//!   `-0.0` stored as `0.0` (they are the same score to Redis).
//!
//! # Cost
//! A list push or pop at either end decodes nothing but the popped
//! elements and allocates once: the untouched elements are one memcpy, so
//! it is O(value bytes) at worst. A list read costs the elements it returns
//! plus those it skips from the nearer end (`LRANGE 0 599`, `LINDEX -1`
//! touch only what they return). Set, hash and sorted-set writes walk the
//! value once (`ZADD` twice: once for the members' scores, once for the
//! insertion points) and copy it once with the changes spliced in: O(value
//! bytes + k log k) for a command naming k members. Reads by member are
//! linear scans (a sorted set is not ordered by member). That is acceptable
//! for a first version; large sets would want an index.
//!
//! # Corruption
//! A value can come from another program on the topic, so nothing here
//! trusts it: every read is bounds-checked, and a value that does not parse
//! is [`CollectionError::Corrupt`], never a panic. Reads check what they
//! touch (lengths, order, and that the count matches once they reach the
//! end); a list push checks only the count, since not reading the elements
//! is the point of its encoding. [`validate`] checks a whole value.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::op::{format_float, parse_i64};

type Result<T, E = CollectionError> = std::result::Result<T, E>;

/// A key's type, as Redis's `TYPE` names it. Stored beside the value (its
/// [`Type::code`] in spare bits), never inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Type {
    /// A plain value, the only type before collections (so the default: a
    /// value stored without a type is a string).
    #[default]
    String,
    List,
    Set,
    Hash,
    ZSet,
}

impl Type {
    /// Every type, in code order.
    pub const ALL: [Type; 5] = [Type::String, Type::List, Type::Set, Type::Hash, Type::ZSet];

    /// The name `TYPE` replies.
    /// The type `TYPE` names `name` (what the `kafkv.type` header carries).
    pub fn from_name(name: &str) -> Option<Type> {
        Type::ALL.into_iter().find(|ty| ty.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::List => "list",
            Type::Set => "set",
            Type::Hash => "hash",
            Type::ZSet => "zset",
        }
    }

    /// The type's code, 0..=4 (a string is 0). Codes are stored, so they
    /// never change meaning, and other code packs them into 3 bits, so they
    /// stay below 8.
    pub fn code(self) -> u8 {
        match self {
            Type::String => 0,
            Type::List => 1,
            Type::Set => 2,
            Type::Hash => 3,
            Type::ZSet => 4,
        }
    }

    /// The type with this code; `None` for a code no type has (yet).
    pub fn from_code(code: u8) -> Option<Type> {
        Type::ALL.get(usize::from(code)).copied()
    }
}

/// Why a collection operation or read failed. An operation that fails
/// changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionError {
    /// The key holds another type (the caller adds Redis's `WRONGTYPE`
    /// prefix).
    #[error("Operation against a key holding the wrong kind of value")]
    WrongType,
    /// The result would be longer than the operation's `max_len`.
    #[error("collection exceeds maximum allowed size ({max} bytes)")]
    TooLarge { max: u64 },
    /// `HINCRBY` on a field that does not hold an integer.
    #[error("hash value is not an integer")]
    NotAnInteger,
    /// `HINCRBY` past `i64`.
    #[error("increment or decrement would overflow")]
    Overflow,
    /// `ZADD INCR` reaching NaN (`inf` plus `-inf`), or a NaN score.
    #[error("resulting score is not a number (NaN)")]
    NotANumber,
    /// The stored value does not parse as its type's encoding.
    #[error("collection value is corrupt")]
    Corrupt,
}

use CollectionError::Corrupt;

/// What evaluating a [`CollectionOp`] does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key keeps its value (or stays absent).
    Unchanged,
    /// The key now holds this value, of the operation's
    /// [`CollectionOp::result_type`].
    Put(Bytes),
    /// The collection emptied: the key is now absent.
    Delete,
}

// ---------------------------------------------------------------------------
// Varints and the count header.

/// Bytes of the count that starts every collection.
const HEADER: usize = 4;

/// What an absent key reads as when an operation creates it: count 0, no
/// elements. Never stored.
static ABSENT: [u8; HEADER] = [0; HEADER];

/// The count of a stored collection: 0 is corrupt (empty collections are
/// deleted), as is a value too short to hold it.
fn header(value: &[u8]) -> Result<u32> {
    let count = u32::from_be_bytes(*value.first_chunk::<HEADER>().ok_or(Corrupt)?);
    if count == 0 {
        return Err(Corrupt);
    }
    Ok(count)
}

/// `value` in LEB128: the bytes and how many of them are used.
fn varint_bytes(mut value: u64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut n = 0;
    while value >= 0x80 {
        bytes[n] = value as u8 | 0x80;
        value >>= 7;
        n += 1;
    }
    bytes[n] = value as u8;
    (bytes, n + 1)
}

fn varint_len(value: u64) -> usize {
    varint_bytes(value).1
}

fn put_varint(out: &mut BytesMut, value: u64) {
    let (bytes, n) = varint_bytes(value);
    out.put_slice(&bytes[..n]);
}

/// Reads a minimal LEB128 varint from `bytes` (a list element's trailing
/// length is read through a reversed iterator): its value and length.
/// `None` when it runs out, exceeds 64 bits or is not minimal.
fn varint(bytes: impl Iterator<Item = u8>) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.take(10).enumerate() {
        // The tenth byte carries bit 63 only.
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A zero last byte would be a padded (non-canonical) form.
            return (byte != 0 || i == 0).then_some((value, i + 1));
        }
    }
    None
}

/// A length-prefixed item: a set member, a hash field or value, a sorted-set
/// member, an operation's argument.
fn put_item(out: &mut BytesMut, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

/// A list element: its length both before and (mirrored) after it.
fn put_list_element(out: &mut BytesMut, bytes: &[u8]) {
    let (len, n) = varint_bytes(bytes.len() as u64);
    out.put_slice(&len[..n]);
    out.put_slice(bytes);
    for &byte in len[..n].iter().rev() {
        out.put_u8(byte);
    }
}

fn list_element_len(bytes: &[u8]) -> usize {
    2 * varint_len(bytes.len() as u64) + bytes.len()
}

fn put_zset_entry(out: &mut BytesMut, score: f64, member: &[u8]) {
    out.put_u64(score.to_bits());
    put_item(out, member);
}

/// Redis's sorted-set order: by score, then by member. `total_cmp` agrees
/// with `<` on the scores stored (never NaN, no `-0.0`).
fn zcmp(a: (f64, &[u8]), b: (f64, &[u8])) -> Ordering {
    a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1))
}

/// The score as stored: `-0.0` is `0.0` (equal to Redis, and one encoding
/// for one content).
fn canonical(score: f64) -> f64 {
    if score == 0.0 { 0.0 } else { score }
}

// ---------------------------------------------------------------------------
// Walking values.

/// A forward walk over a set, hash or sorted set: the position of the next
/// entry and how many entries remain. An error ends it ([`Walk::fail`]).
#[derive(Debug, Clone)]
struct Walk<'a> {
    value: &'a [u8],
    pos: usize,
    remaining: u32,
}

impl<'a> Walk<'a> {
    /// A walk over a stored value, or over nothing (absent).
    fn new(value: Option<&'a [u8]>) -> Result<Self> {
        Ok(match value {
            Some(value) => Walk {
                value,
                pos: HEADER,
                remaining: header(value)?,
            },
            None => Walk {
                value: &ABSENT,
                pos: HEADER,
                remaining: 0,
            },
        })
    }

    /// Where the next entry starts, or `None` after the last, once the count
    /// is reached exactly where the value ends (bytes beyond the count are
    /// corrupt).
    fn next_entry(&mut self) -> Result<Option<usize>> {
        if self.remaining == 0 {
            return if self.pos == self.value.len() {
                Ok(None)
            } else {
                Err(Corrupt)
            };
        }
        self.remaining -= 1;
        Ok(Some(self.pos))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let rest = &self.value[self.pos..];
        let (len, n) = varint(rest.iter().copied()).ok_or(Corrupt)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(n))
            .filter(|&end| end <= rest.len())
            .ok_or(Corrupt)?;
        self.pos += end;
        Ok(&rest[n..end])
    }

    fn score(&mut self) -> Result<f64> {
        let bits = u64::from_be_bytes(*self.value[self.pos..].first_chunk::<8>().ok_or(Corrupt)?);
        let score = f64::from_bits(bits);
        if score.is_nan() || bits == (-0.0f64).to_bits() {
            return Err(Corrupt);
        }
        self.pos += 8;
        Ok(score)
    }

    /// Ends the walk: after an error it yields nothing more.
    fn fail(&mut self) {
        self.remaining = 0;
        self.pos = self.value.len();
    }

    /// `read`'s entry, ending the walk on an error.
    fn guard<T>(&mut self, read: Result<Option<T>>) -> Result<Option<T>> {
        if read.is_err() {
            self.fail();
        }
        read
    }
}

/// A list's elements, zero-copy, from either end (a [`DoubleEndedIterator`]).
/// An error (a corrupt element, or a count that does not match the bytes)
/// is yielded once and ends the iteration.
#[derive(Debug, Clone)]
pub struct ListIter<'a> {
    value: &'a [u8],
    /// The unread elements are `value[front..back]`.
    front: usize,
    back: usize,
    remaining: u32,
}

/// Walks a stored list.
pub fn list_iter(value: &[u8]) -> Result<ListIter<'_>> {
    Ok(ListIter {
        value,
        front: HEADER,
        back: value.len(),
        remaining: header(value)?,
    })
}

impl<'a> ListIter<'a> {
    fn step(&mut self, front: bool) -> Option<Result<&'a [u8]>> {
        if self.remaining == 0 {
            if self.front == self.back {
                return None;
            }
            self.front = self.back;
            return Some(Err(Corrupt));
        }
        let read = if front {
            self.read_front()
        } else {
            self.read_back()
        };
        match read {
            Ok(_) => self.remaining -= 1,
            Err(_) => {
                self.remaining = 0;
                self.front = self.back;
            }
        }
        Some(read)
    }

    /// The next element, which must be there (the caller counted).
    fn expect_element(&mut self, front: bool) -> Result<&'a [u8]> {
        self.step(front).unwrap_or(Err(Corrupt))
    }

    fn read_front(&mut self) -> Result<&'a [u8]> {
        let rest = &self.value[self.front..self.back];
        let (len, n) = varint(rest.iter().copied()).ok_or(Corrupt)?;
        let size = element_size(len, n, rest.len())?;
        let element = &rest[..size];
        check_mirrored(element, n)?;
        self.front += size;
        Ok(&element[n..size - n])
    }

    fn read_back(&mut self) -> Result<&'a [u8]> {
        let rest = &self.value[self.front..self.back];
        let (len, n) = varint(rest.iter().rev().copied()).ok_or(Corrupt)?;
        let size = element_size(len, n, rest.len())?;
        let element = &rest[rest.len() - size..];
        check_mirrored(element, n)?;
        self.back -= size;
        Ok(&element[n..size - n])
    }
}

/// A list element's size from its length `len` written in `n` bytes, if it
/// fits in `available`.
fn element_size(len: u64, n: usize, available: usize) -> Result<usize> {
    usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(2 * n))
        .filter(|&size| size <= available)
        .ok_or(Corrupt)
}

/// The length before an element must mirror the one after it.
fn check_mirrored(element: &[u8], n: usize) -> Result<()> {
    let (lead, trail) = (&element[..n], &element[element.len() - n..]);
    if lead.iter().eq(trail.iter().rev()) {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

impl DoubleEndedIterator for ListIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

/// The next entry of a walk and the bytes it spans; `None` after the last.
type Spanned<T> = Option<(Range<usize>, T)>;

/// A set's members in order, zero-copy. An error (corruption, including
/// members out of order) is yielded once and ends the iteration.
#[derive(Debug, Clone)]
pub struct SetIter<'a> {
    walk: Walk<'a>,
    prev: Option<&'a [u8]>,
}

/// Walks a stored set.
pub fn set_iter(value: &[u8]) -> Result<SetIter<'_>> {
    SetIter::over(Some(value))
}

impl<'a> SetIter<'a> {
    fn over(value: Option<&'a [u8]>) -> Result<Self> {
        Ok(SetIter {
            walk: Walk::new(value)?,
            prev: None,
        })
    }

    /// The next member and the bytes its entry spans.
    fn entry(&mut self) -> Result<Spanned<&'a [u8]>> {
        let read = self.read();
        self.walk.guard(read)
    }

    fn read(&mut self) -> Result<Spanned<&'a [u8]>> {
        let Some(start) = self.walk.next_entry()? else {
            return Ok(None);
        };
        let member = self.walk.bytes()?;
        if self.prev.is_some_and(|prev| prev >= member) {
            return Err(Corrupt);
        }
        self.prev = Some(member);
        Ok(Some((start..self.walk.pos, member)))
    }
}

impl<'a> Iterator for SetIter<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        self.entry()
            .map(|e| e.map(|(_, member)| member))
            .transpose()
    }
}

/// A hash's `(field, value)` pairs in field order, zero-copy. An error is
/// yielded once and ends the iteration.
#[derive(Debug, Clone)]
pub struct HashIter<'a> {
    walk: Walk<'a>,
    prev: Option<&'a [u8]>,
}

/// Walks a stored hash.
pub fn hash_iter(value: &[u8]) -> Result<HashIter<'_>> {
    HashIter::over(Some(value))
}

type Pair<'a> = (&'a [u8], &'a [u8]);

impl<'a> HashIter<'a> {
    fn over(value: Option<&'a [u8]>) -> Result<Self> {
        Ok(HashIter {
            walk: Walk::new(value)?,
            prev: None,
        })
    }

    fn entry(&mut self) -> Result<Spanned<Pair<'a>>> {
        let read = self.read();
        self.walk.guard(read)
    }

    fn read(&mut self) -> Result<Spanned<Pair<'a>>> {
        let Some(start) = self.walk.next_entry()? else {
            return Ok(None);
        };
        let field = self.walk.bytes()?;
        let value = self.walk.bytes()?;
        if self.prev.is_some_and(|prev| prev >= field) {
            return Err(Corrupt);
        }
        self.prev = Some(field);
        Ok(Some((start..self.walk.pos, (field, value))))
    }
}

impl<'a> Iterator for HashIter<'a> {
    type Item = Result<Pair<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.entry().map(|e| e.map(|(_, pair)| pair)).transpose()
    }
}

/// A sorted set's `(member, score)` entries in Redis's order (score
/// ascending, then member), members zero-copy. An error is yielded once and
/// ends the iteration. Member uniqueness is not checked here (it would need
/// more than a walk); [`validate`] checks it.
#[derive(Debug, Clone)]
pub struct ZSetIter<'a> {
    walk: Walk<'a>,
    prev: Option<(f64, &'a [u8])>,
}

/// Walks a stored sorted set.
pub fn zset_iter(value: &[u8]) -> Result<ZSetIter<'_>> {
    ZSetIter::over(Some(value))
}

impl<'a> ZSetIter<'a> {
    fn over(value: Option<&'a [u8]>) -> Result<Self> {
        Ok(ZSetIter {
            walk: Walk::new(value)?,
            prev: None,
        })
    }

    fn entry(&mut self) -> Result<Spanned<(&'a [u8], f64)>> {
        let read = self.read();
        self.walk.guard(read)
    }

    fn read(&mut self) -> Result<Spanned<(&'a [u8], f64)>> {
        let Some(start) = self.walk.next_entry()? else {
            return Ok(None);
        };
        let score = self.walk.score()?;
        let member = self.walk.bytes()?;
        if self
            .prev
            .is_some_and(|prev| zcmp(prev, (score, member)) != Ordering::Less)
        {
            return Err(Corrupt);
        }
        self.prev = Some((score, member));
        Ok(Some((start..self.walk.pos, (member, score))))
    }
}

impl<'a> Iterator for ZSetIter<'a> {
    type Item = Result<(&'a [u8], f64)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.entry().map(|e| e.map(|(_, entry)| entry)).transpose()
    }
}

// ---------------------------------------------------------------------------
// Reads.

/// A collection's element count (any type: the count is the same header in
/// each); an absent key has 0. O(1).
pub fn len(value: Option<&[u8]>) -> Result<u64> {
    value.map_or(Ok(0), |value| header(value).map(u64::from))
}

/// Checks a whole value of type `ty`: every length, the order, the count,
/// and for a sorted set that its members are unique. A string is any bytes.
pub fn validate(ty: Type, value: &[u8]) -> Result<()> {
    match ty {
        Type::String => Ok(()),
        Type::List => list_iter(value)?.try_for_each(|e| e.map(|_| ())),
        Type::Set => set_iter(value)?.try_for_each(|e| e.map(|_| ())),
        Type::Hash => hash_iter(value)?.try_for_each(|e| e.map(|_| ())),
        Type::ZSet => {
            let mut members = zset_iter(value)?
                .map(|e| e.map(|(member, _)| member))
                .collect::<Result<Vec<_>>>()?;
            members.sort_unstable();
            if members.windows(2).any(|pair| pair[0] == pair[1]) {
                return Err(Corrupt);
            }
            Ok(())
        }
    }
}

/// Redis's index range (`LRANGE`, `ZRANGE`) over `len` elements: negative
/// indexes count from the end, `start` clamps to 0 and `stop` to the last;
/// `None` when that leaves nothing (`start > stop`, or past the end).
fn rank_range(len: u32, start: i64, stop: i64) -> Option<(u32, u32)> {
    let len = i64::from(len);
    let start = if start < 0 {
        (start + len).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        stop + len
    } else {
        stop.min(len - 1)
    };
    if start > stop || start >= len {
        return None;
    }
    // Both within 0..len now.
    Some((start as u32, stop as u32))
}

/// `LRANGE`: the elements from `start` to `stop` inclusive, with Redis's
/// index semantics (see [`rank_range`]), walked from the nearer end so a
/// range at either end touches only what it returns.
pub fn list_range(value: &Bytes, start: i64, stop: i64) -> Result<Vec<Bytes>> {
    let mut iter = list_iter(value)?;
    let len = iter.remaining;
    let Some((first, last)) = rank_range(len, start, stop) else {
        return Ok(Vec::new());
    };
    let take = last - first + 1;
    // A count is untrusted: each element takes at least 2 bytes.
    let mut out = Vec::with_capacity((take as usize).min(value.len() / 2));
    let after = len - 1 - last;
    if first <= after {
        for _ in 0..first {
            iter.expect_element(true)?;
        }
        for _ in 0..take {
            out.push(value.slice_ref(iter.expect_element(true)?));
        }
    } else {
        for _ in 0..after {
            iter.expect_element(false)?;
        }
        for _ in 0..take {
            out.push(value.slice_ref(iter.expect_element(false)?));
        }
        out.reverse();
    }
    Ok(out)
}

/// `LINDEX`: the element at `index` (negative counts from the end), walked
/// from the nearer end; `None` out of range.
pub fn list_index(value: &Bytes, index: i64) -> Result<Option<Bytes>> {
    let mut iter = list_iter(value)?;
    let len = i64::from(iter.remaining);
    let index = if index < 0 { index + len } else { index };
    if !(0..len).contains(&index) {
        return Ok(None);
    }
    let from_back = len - 1 - index;
    let (skip, front) = if index <= from_back {
        (index, true)
    } else {
        (from_back, false)
    };
    for _ in 0..skip {
        iter.expect_element(front)?;
    }
    Ok(Some(value.slice_ref(iter.expect_element(front)?)))
}

/// `SISMEMBER`: stops at the first member not below `member`.
pub fn set_contains(value: &[u8], member: &[u8]) -> Result<bool> {
    for candidate in set_iter(value)? {
        match candidate?.cmp(member) {
            Ordering::Less => {}
            Ordering::Equal => return Ok(true),
            Ordering::Greater => return Ok(false),
        }
    }
    Ok(false)
}

/// `SMEMBERS`: every member, in bytewise order.
pub fn set_members(value: &Bytes) -> Result<Vec<Bytes>> {
    set_iter(value)?
        .map(|member| member.map(|member| value.slice_ref(member)))
        .collect()
}

/// `HGET`: the field's value; stops at the first field not below `field`.
pub fn hash_get(value: &Bytes, field: &[u8]) -> Result<Option<Bytes>> {
    for pair in hash_iter(value)? {
        let (candidate, found) = pair?;
        match candidate.cmp(field) {
            Ordering::Less => {}
            Ordering::Equal => return Ok(Some(value.slice_ref(found))),
            Ordering::Greater => return Ok(None),
        }
    }
    Ok(None)
}

/// `HGETALL`: every `(field, value)`, in field order.
pub fn hash_pairs(value: &Bytes) -> Result<Vec<(Bytes, Bytes)>> {
    hash_iter(value)?
        .map(|pair| pair.map(|(field, v)| (value.slice_ref(field), value.slice_ref(v))))
        .collect()
}

/// `HKEYS`: every field, in order.
pub fn hash_fields(value: &Bytes) -> Result<Vec<Bytes>> {
    hash_iter(value)?
        .map(|pair| pair.map(|(field, _)| value.slice_ref(field)))
        .collect()
}

/// `HVALS`: every value, in field order.
pub fn hash_values(value: &Bytes) -> Result<Vec<Bytes>> {
    hash_iter(value)?
        .map(|pair| pair.map(|(_, v)| value.slice_ref(v)))
        .collect()
}

/// `ZSCORE`: the member's score (a linear scan).
pub fn zset_score(value: &[u8], member: &[u8]) -> Result<Option<f64>> {
    for entry in zset_iter(value)? {
        let (candidate, score) = entry?;
        if candidate == member {
            return Ok(Some(score));
        }
    }
    Ok(None)
}

/// `ZRANGE key start stop` (by rank, ascending): `(member, score)` from
/// rank `start` to `stop` inclusive, with Redis's index semantics.
pub fn zset_range(value: &Bytes, start: i64, stop: i64) -> Result<Vec<(Bytes, f64)>> {
    let mut iter = zset_iter(value)?;
    let Some((first, last)) = rank_range(iter.walk.remaining, start, stop) else {
        return Ok(Vec::new());
    };
    // An entry takes at least 9 bytes; the count is untrusted.
    let mut out = Vec::with_capacity(((last - first + 1) as usize).min(value.len() / 9));
    for rank in 0..=last {
        let (member, score) = iter.next().unwrap_or(Err(Corrupt))?;
        if rank >= first {
            out.push((value.slice_ref(member), score));
        }
    }
    Ok(out)
}

/// A score as Redis prints it: `inf`, `-inf`, or the shortest decimal that
/// reads back as the same float ([`format_float`]).
pub fn format_score(score: f64) -> String {
    if score == f64::INFINITY {
        "inf".into()
    } else if score == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format_float(score)
    }
}

// ---------------------------------------------------------------------------
// Reply derivations: from the values before and after an operation.

/// `LPOP`/`RPOP`'s reply: the elements `before` had and `after` has not, in
/// the order popped (from the head for `left`, from the tail otherwise).
pub fn list_popped(before: Option<&Bytes>, after: Option<&[u8]>, left: bool) -> Result<Vec<Bytes>> {
    let Some(before) = before else {
        return Ok(Vec::new());
    };
    let popped = len(Some(before))?.saturating_sub(len(after)?) as i64;
    if popped == 0 {
        return Ok(Vec::new());
    }
    if left {
        list_range(before, 0, popped - 1)
    } else {
        let mut tail = list_range(before, -popped, -1)?;
        tail.reverse();
        Ok(tail)
    }
}

/// The members of set `before` not in set `after`, in bytewise order:
/// `SPOP`'s reply (and `SREM`'s removed members). One merge walk of both.
pub fn set_difference(before: Option<&Bytes>, after: Option<&[u8]>) -> Result<Vec<Bytes>> {
    let Some(before) = before else {
        return Ok(Vec::new());
    };
    let mut others = SetIter::over(after)?;
    let mut other = others.next().transpose()?;
    let mut out = Vec::new();
    for member in set_iter(before)? {
        let member = member?;
        while let Some(o) = other
            && o < member
        {
            other = others.next().transpose()?;
        }
        if other == Some(member) {
            other = others.next().transpose()?;
        } else {
            out.push(before.slice_ref(member));
        }
    }
    Ok(out)
}

/// `ZPOPMIN`/`ZPOPMAX`'s reply: the entries `before` had and `after` has
/// not, lowest first for `ZPOPMIN`, highest first for `ZPOPMAX` (`max`), as
/// Redis replies them.
pub fn zset_popped(
    before: Option<&Bytes>,
    after: Option<&[u8]>,
    max: bool,
) -> Result<Vec<(Bytes, f64)>> {
    let Some(before) = before else {
        return Ok(Vec::new());
    };
    let popped = len(Some(before))?.saturating_sub(len(after)?) as i64;
    if popped == 0 {
        return Ok(Vec::new());
    }
    if max {
        let mut top = zset_range(before, -popped, -1)?;
        top.reverse();
        Ok(top)
    } else {
        zset_range(before, 0, popped - 1)
    }
}

/// What `ZADD` did, member by member as Redis counts it (see
/// [`CollectionOp::zadd_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ZAddReply {
    /// Members added.
    pub added: u64,
    /// Score changes of existing members (each pair that changed one, so a
    /// member named twice can count twice, as in Redis).
    pub updated: u64,
    /// The last pair's resulting score, or `None` if NX, XX, GT or LT
    /// skipped it: `ZADD … INCR`'s reply (nil for `None`).
    pub score: Option<f64>,
}

impl ZAddReply {
    /// `ZADD`'s integer reply: added, or added and updated with `CH`.
    pub fn count(&self, ch: bool) -> u64 {
        if ch {
            self.added + self.updated
        } else {
            self.added
        }
    }
}

// ---------------------------------------------------------------------------
// Operations.

/// One write to a collection key, carried by an operation record and
/// evaluated by every instance with [`CollectionOp::evaluate`]. Each variant
/// says how the command layer derives Redis's reply from the values before
/// and after (absent: no value); an error is replied as the error.
#[derive(Debug, Clone, PartialEq)]
pub enum CollectionOp {
    /// `LPUSH` (`left`), `RPUSH`, and with `only_if_exists` `LPUSHX`,
    /// `RPUSHX` (an absent key stays absent). Values go on one at a time,
    /// so `LPUSH k a b c` leaves `c b a` at the head.
    /// Reply: `len(after)` (0 for an X variant on an absent key).
    Push {
        left: bool,
        values: Vec<Bytes>,
        only_if_exists: bool,
        max_len: u64,
    },
    /// `LPOP`/`RPOP`: up to `count` elements from the head (`left`) or tail.
    /// Reply: [`list_popped`] (for the count-less form, its first element or
    /// nil).
    Pop { left: bool, count: u64 },
    /// `SADD`. Reply: `len(after) - len(before)`.
    SetAdd { members: Vec<Bytes>, max_len: u64 },
    /// `SREM`. Reply: `len(before) - len(after)`.
    SetRemove { members: Vec<Bytes> },
    /// `SPOP`: `count` members (all if fewer), chosen pseudo-randomly from
    /// the record's offset only, so every instance removes the same ones.
    /// Reply: [`set_difference`]`(before, after)`.
    SetPop { count: u64 },
    /// `HSET` (and `HMSET`): a later pair for the same field wins.
    /// Reply: `len(after) - len(before)` (fields created).
    HashSet {
        pairs: Vec<(Bytes, Bytes)>,
        max_len: u64,
    },
    /// `HDEL`. Reply: `len(before) - len(after)`.
    HashDelete { fields: Vec<Bytes> },
    /// `HINCRBY`: an absent field counts as 0. Reply: the field's value in
    /// `after` ([`hash_get`], then [`parse_i64`]); when it is unchanged
    /// (`by` 0), `after` is `before`.
    HashIncrBy { field: Bytes, by: i64, max_len: u64 },
    /// `ZADD` with Redis 7's flags, the pairs applied in order: `nx` only
    /// adds, `xx` only updates; `gt`/`lt` update an existing member only to
    /// a greater/lesser score (still adding new ones unless `xx`); `incr`
    /// adds the pair's score to the member's (absent: 0), and a NaN result
    /// is [`CollectionError::NotANumber`] (so is a NaN score in `pairs`).
    /// The command layer rejects the flag combinations Redis rejects; if
    /// given, they combine as written.
    /// Reply: [`CollectionOp::zadd_reply`] on `before`.
    ZAdd {
        nx: bool,
        xx: bool,
        gt: bool,
        lt: bool,
        incr: bool,
        pairs: Vec<(f64, Bytes)>,
        max_len: u64,
    },
    /// `ZREM`. Reply: `len(before) - len(after)`.
    ZRemove { members: Vec<Bytes> },
    /// `ZPOPMIN`, or `ZPOPMAX` (`max`): up to `count` entries from that end.
    /// Reply: [`zset_popped`].
    ZPop { max: bool, count: u64 },
}

// A score is never NaN (decoding refuses it, evaluation refuses it), so
// equality is an equivalence.
impl Eq for CollectionOp {}

impl CollectionOp {
    /// Redis's keyspace-notification event for this write.
    pub fn event_name(&self) -> &'static str {
        match self {
            CollectionOp::Push { left: true, .. } => "lpush",
            CollectionOp::Push { left: false, .. } => "rpush",
            CollectionOp::Pop { left: true, .. } => "lpop",
            CollectionOp::Pop { left: false, .. } => "rpop",
            CollectionOp::SetAdd { .. } => "sadd",
            CollectionOp::SetRemove { .. } => "srem",
            CollectionOp::SetPop { .. } => "spop",
            CollectionOp::HashSet { .. } => "hset",
            CollectionOp::HashDelete { .. } => "hdel",
            CollectionOp::HashIncrBy { .. } => "hincrby",
            CollectionOp::ZAdd { incr: true, .. } => "zincr",
            CollectionOp::ZAdd { .. } => "zadd",
            CollectionOp::ZRemove { .. } => "zrem",
            CollectionOp::ZPop { max: false, .. } => "zpopmin",
            CollectionOp::ZPop { max: true, .. } => "zpopmax",
        }
    }

    /// The type the key must have (or gets, when the operation creates it).
    pub fn result_type(&self) -> Type {
        match self {
            CollectionOp::Push { .. } | CollectionOp::Pop { .. } => Type::List,
            CollectionOp::SetAdd { .. }
            | CollectionOp::SetRemove { .. }
            | CollectionOp::SetPop { .. } => Type::Set,
            CollectionOp::HashSet { .. }
            | CollectionOp::HashDelete { .. }
            | CollectionOp::HashIncrBy { .. } => Type::Hash,
            CollectionOp::ZAdd { .. }
            | CollectionOp::ZRemove { .. }
            | CollectionOp::ZPop { .. } => Type::ZSet,
        }
    }

    /// Evaluates the operation on the key's live value `current` (with its
    /// type; `None`: absent) for the record at `offset`. A key of another
    /// type is [`CollectionError::WrongType`]; a result longer than the
    /// operation's `max_len` is [`CollectionError::TooLarge`] (operations
    /// that only remove have no bound); an emptied collection is
    /// [`Change::Delete`]; an operation that changes nothing is
    /// [`Change::Unchanged`]. On an error the key is left as it was.
    pub fn evaluate(&self, current: Option<(Type, &Bytes)>, offset: i64) -> Result<Change> {
        let value: Option<&[u8]> = match current {
            Some((ty, value)) if ty == self.result_type() => Some(value),
            Some(_) => return Err(CollectionError::WrongType),
            None => None,
        };
        match self {
            CollectionOp::Push {
                left,
                values,
                only_if_exists,
                max_len,
            } => push(value, *left, values, *only_if_exists, *max_len),
            CollectionOp::Pop { left, count } => pop(value, *left, *count),
            CollectionOp::SetAdd { members, max_len } => set_add(value, members, *max_len),
            CollectionOp::SetRemove { members } => set_remove(value, members),
            CollectionOp::SetPop { count } => set_pop(value, *count, offset),
            CollectionOp::HashSet { pairs, max_len } => hash_set(value, pairs, *max_len),
            CollectionOp::HashDelete { fields } => hash_delete(value, fields),
            CollectionOp::HashIncrBy { field, by, max_len } => {
                hash_incr_by(value, field, *by, *max_len)
            }
            CollectionOp::ZAdd {
                nx,
                xx,
                gt,
                lt,
                incr,
                pairs,
                max_len,
            } => {
                let args = ZAddArgs {
                    nx: *nx,
                    xx: *xx,
                    gt: *gt,
                    lt: *lt,
                    incr: *incr,
                    pairs,
                };
                zadd(value, &args, *max_len)
            }
            CollectionOp::ZRemove { members } => zset_remove(value, members),
            CollectionOp::ZPop { max, count } => zset_pop(value, *max, *count),
        }
    }

    /// For a `ZAdd`, what it does on the sorted set `before` (the value it
    /// was evaluated on, `None`: absent), pair by pair as Redis counts:
    /// `ZADD`'s reply is [`ZAddReply::count`], `ZADD … INCR`'s is
    /// [`ZAddReply::score`]. One walk of `before`; the same error as
    /// evaluation. `Ok(None)` for any other operation.
    pub fn zadd_reply(&self, before: Option<&[u8]>) -> Result<Option<ZAddReply>> {
        let Some(args) = self.zadd_args() else {
            return Ok(None);
        };
        zadd_plan(before, &args).map(|(_, reply)| Some(reply))
    }

    fn zadd_args(&self) -> Option<ZAddArgs<'_>> {
        match self {
            CollectionOp::ZAdd {
                nx,
                xx,
                gt,
                lt,
                incr,
                pairs,
                ..
            } => Some(ZAddArgs {
                nx: *nx,
                xx: *xx,
                gt: *gt,
                lt: *lt,
                incr: *incr,
                pairs,
            }),
            _ => None,
        }
    }
}

/// Changes to a stored set, hash or sorted set, collected during one walk
/// and applied in one copy: each edit replaces the bytes `at` of the old
/// value (nothing, for an insertion) with `scratch[new]`. Edits are pushed
/// in increasing position, an insertion before a removal at the same place,
/// which is the order a forward walk meets them.
#[derive(Default)]
struct Splice {
    scratch: BytesMut,
    edits: Vec<(Range<usize>, Range<usize>)>,
}

impl Splice {
    fn replace(&mut self, at: Range<usize>, write: impl FnOnce(&mut BytesMut)) {
        let start = self.scratch.len();
        write(&mut self.scratch);
        self.edits.push((at, start..self.scratch.len()));
    }

    fn insert(&mut self, at: usize, write: impl FnOnce(&mut BytesMut)) {
        self.replace(at..at, write);
    }

    fn remove(&mut self, at: Range<usize>) {
        self.replace(at, |_| {});
    }

    /// `old` (a stored value, or [`ABSENT`]) with the edits, holding `count`
    /// entries; refused beyond `max_len` bytes.
    fn apply(self, old: &[u8], count: u64, max_len: u64) -> Result<Change> {
        if self.edits.is_empty() {
            return Ok(Change::Unchanged);
        }
        if count == 0 {
            return Ok(Change::Delete);
        }
        let too_large = CollectionError::TooLarge { max: max_len };
        let count = u32::try_from(count).map_err(|_| too_large)?;
        let removed: usize = self.edits.iter().map(|(at, _)| at.end - at.start).sum();
        let size = old.len() - removed + self.scratch.len();
        if size as u64 > max_len {
            return Err(too_large);
        }
        let mut out = BytesMut::with_capacity(size);
        out.put_u32(count);
        let mut cursor = HEADER;
        for (at, new) in &self.edits {
            out.put_slice(&old[cursor..at.start]);
            out.put_slice(&self.scratch[new.clone()]);
            cursor = at.end;
        }
        out.put_slice(&old[cursor..]);
        Ok(Change::Put(out.freeze()))
    }
}

/// No bound: for operations that only remove.
const UNBOUNDED: u64 = u64::MAX;

fn push(
    value: Option<&[u8]>,
    left: bool,
    values: &[Bytes],
    only_if_exists: bool,
    max_len: u64,
) -> Result<Change> {
    if values.is_empty() || (only_if_exists && value.is_none()) {
        return Ok(Change::Unchanged);
    }
    let too_large = CollectionError::TooLarge { max: max_len };
    // Only the count is read: the elements are copied as they are.
    let (count, elements) = match value {
        Some(value) => (header(value)?, &value[HEADER..]),
        None => (0, &[][..]),
    };
    let count = u32::try_from(values.len())
        .ok()
        .and_then(|n| count.checked_add(n))
        .ok_or(too_large)?;
    let size = HEADER
        + elements.len()
        + values
            .iter()
            .map(|value| list_element_len(value))
            .sum::<usize>();
    if size as u64 > max_len {
        return Err(too_large);
    }
    let mut out = BytesMut::with_capacity(size);
    out.put_u32(count);
    if left {
        for value in values.iter().rev() {
            put_list_element(&mut out, value);
        }
        out.put_slice(elements);
    } else {
        out.put_slice(elements);
        for value in values {
            put_list_element(&mut out, value);
        }
    }
    Ok(Change::Put(out.freeze()))
}

fn pop(value: Option<&[u8]>, left: bool, count: u64) -> Result<Change> {
    let Some(value) = value else {
        return Ok(Change::Unchanged);
    };
    let mut iter = list_iter(value)?;
    let len = iter.remaining;
    if count == 0 {
        return Ok(Change::Unchanged);
    }
    if count >= u64::from(len) {
        return Ok(Change::Delete);
    }
    // count < len, so it fits.
    let count = count as u32;
    for _ in 0..count {
        iter.expect_element(left)?;
    }
    let kept = if left {
        &value[iter.front..]
    } else {
        &value[HEADER..iter.back]
    };
    let mut out = BytesMut::with_capacity(HEADER + kept.len());
    out.put_u32(len - count);
    out.put_slice(kept);
    Ok(Change::Put(out.freeze()))
}

/// `items` sorted bytewise without duplicates: the order the merge walks
/// need (sorting equal byte strings is deterministic whatever the sort).
fn sorted_unique(items: &[Bytes]) -> Vec<&[u8]> {
    let mut sorted: Vec<&[u8]> = items.iter().map(|item| &item[..]).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

fn set_add(value: Option<&[u8]>, members: &[Bytes], max_len: u64) -> Result<Change> {
    let new = sorted_unique(members);
    let old = value.unwrap_or(&ABSENT);
    let mut iter = SetIter::over(value)?;
    let count = u64::from(iter.walk.remaining);
    let mut splice = Splice::default();
    let mut added = 0;
    let mut next = new.iter().peekable();
    // A merge walk: each new member goes in before the first member above it.
    while next.peek().is_some() {
        let Some((at, member)) = iter.entry()? else {
            break;
        };
        while let Some(&m) = next.next_if(|&&m| m < member) {
            splice.insert(at.start, |out| put_item(out, m));
            added += 1;
        }
        next.next_if(|&&m| m == member);
    }
    for &m in next {
        splice.insert(old.len(), |out| put_item(out, m));
        added += 1;
    }
    splice.apply(old, count + added, max_len)
}

fn set_remove(value: Option<&[u8]>, members: &[Bytes]) -> Result<Change> {
    let Some(value) = value else {
        return Ok(Change::Unchanged);
    };
    let mut iter = set_iter(value)?;
    let count = u64::from(iter.walk.remaining);
    remove_keys(value, count, members, || iter.entry())
}

/// Removes the entries whose key is one of `keys` from `value` (`count`
/// entries), which `next_entry` walks in ascending key order with each
/// entry's span: one merge of the two sorted sequences (`SREM`, `HDEL`).
fn remove_keys<'a>(
    value: &[u8],
    count: u64,
    keys: &[Bytes],
    mut next_entry: impl FnMut() -> Result<Spanned<&'a [u8]>>,
) -> Result<Change> {
    let gone = sorted_unique(keys);
    let mut splice = Splice::default();
    let mut removed = 0;
    let mut next = gone.iter().peekable();
    while next.peek().is_some() {
        let Some((at, key)) = next_entry()? else {
            break;
        };
        while next.next_if(|&&k| k < key).is_some() {}
        if next.next_if(|&&k| k == key).is_some() {
            splice.remove(at);
            removed += 1;
        }
    }
    splice.apply(value, count - removed, UNBOUNDED)
}

/// SplitMix64's step: a fixed, well-mixed generator, so the same seed gives
/// the same sequence on every instance and version.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `k` distinct indexes below `n`, ascending, uniformly chosen from
/// `seed` (Floyd's sampling: k draws, no shuffle of all n).
fn sample(seed: u64, n: u32, k: u32) -> Vec<u32> {
    let mut state = seed;
    let mut picked = BTreeSet::new();
    for j in n - k..n {
        // A draw below j + 1 by multiply-shift (no modulo bias worth a loop).
        let draw = ((u128::from(splitmix64(&mut state)) * (u128::from(j) + 1)) >> 64) as u32;
        if !picked.insert(draw) {
            picked.insert(j);
        }
    }
    picked.into_iter().collect()
}

fn set_pop(value: Option<&[u8]>, count: u64, offset: i64) -> Result<Change> {
    let Some(value) = value else {
        return Ok(Change::Unchanged);
    };
    let mut iter = set_iter(value)?;
    let len = iter.walk.remaining;
    if count == 0 {
        return Ok(Change::Unchanged);
    }
    if count >= u64::from(len) {
        return Ok(Change::Delete);
    }
    // The offset is the only source of randomness, so every instance picks
    // the same members.
    let picks = sample(offset as u64, len, count as u32);
    let mut splice = Splice::default();
    let mut next = picks.iter().peekable();
    let mut index = 0;
    while next.peek().is_some() {
        let (at, _) = iter.entry()?.ok_or(Corrupt)?;
        if next.next_if(|&&pick| pick == index).is_some() {
            splice.remove(at);
        }
        index += 1;
    }
    splice.apply(value, u64::from(len) - count, UNBOUNDED)
}

fn put_pair(out: &mut BytesMut, field: &[u8], value: &[u8]) {
    put_item(out, field);
    put_item(out, value);
}

fn hash_set(value: Option<&[u8]>, pairs: &[(Bytes, Bytes)], max_len: u64) -> Result<Change> {
    // By field; the stable sort keeps a field's pairs in command order, so
    // keeping the last of each run makes the later pair win.
    let mut sorted: Vec<Pair<'_>> = pairs.iter().map(|(f, v)| (&f[..], &v[..])).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut new: Vec<Pair<'_>> = Vec::with_capacity(sorted.len());
    for pair in sorted {
        match new.last_mut() {
            Some(last) if last.0 == pair.0 => *last = pair,
            _ => new.push(pair),
        }
    }
    let old = value.unwrap_or(&ABSENT);
    let mut iter = HashIter::over(value)?;
    let count = u64::from(iter.walk.remaining);
    let mut splice = Splice::default();
    let mut added = 0;
    let mut next = new.iter().peekable();
    while next.peek().is_some() {
        let Some((at, (field, current))) = iter.entry()? else {
            break;
        };
        while let Some(&(f, v)) = next.next_if(|(f, _)| *f < field) {
            splice.insert(at.start, |out| put_pair(out, f, v));
            added += 1;
        }
        if let Some(&(f, v)) = next.next_if(|(f, _)| *f == field)
            && v != current
        {
            splice.replace(at, |out| put_pair(out, f, v));
        }
    }
    for &(f, v) in next {
        splice.insert(old.len(), |out| put_pair(out, f, v));
        added += 1;
    }
    splice.apply(old, count + added, max_len)
}

fn hash_delete(value: Option<&[u8]>, fields: &[Bytes]) -> Result<Change> {
    let Some(value) = value else {
        return Ok(Change::Unchanged);
    };
    let mut iter = hash_iter(value)?;
    let count = u64::from(iter.walk.remaining);
    remove_keys(value, count, fields, || {
        Ok(iter.entry()?.map(|(at, (field, _))| (at, field)))
    })
}

fn hash_incr_by(value: Option<&[u8]>, field: &[u8], by: i64, max_len: u64) -> Result<Change> {
    let old = value.unwrap_or(&ABSENT);
    let mut iter = HashIter::over(value)?;
    let count = u64::from(iter.walk.remaining);
    let mut splice = Splice::default();
    let mut added = 0;
    loop {
        match iter.entry()? {
            Some((at, (f, current))) if f == field => {
                let current = parse_i64(current).ok_or(CollectionError::NotAnInteger)?;
                let sum = current.checked_add(by).ok_or(CollectionError::Overflow)?;
                // `parse_i64` takes only the canonical decimal, so an equal
                // sum is equal bytes: nothing to write.
                if sum != current {
                    splice.replace(at, |out| put_pair(out, field, sum.to_string().as_bytes()));
                }
                break;
            }
            Some((at, (f, _))) if f > field => {
                splice.insert(at.start, |out| {
                    put_pair(out, field, by.to_string().as_bytes())
                });
                added = 1;
                break;
            }
            Some(_) => {}
            None => {
                splice.insert(old.len(), |out| {
                    put_pair(out, field, by.to_string().as_bytes())
                });
                added = 1;
                break;
            }
        }
    }
    splice.apply(old, count + added, max_len)
}

/// The touched member `member`'s index.
fn find(touched: &[Touched<'_>], member: &[u8]) -> Option<usize> {
    touched.binary_search_by(|t| t.member.cmp(member)).ok()
}

/// A `ZAdd`'s flags and pairs.
struct ZAddArgs<'a> {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    incr: bool,
    pairs: &'a [(f64, Bytes)],
}

/// A member a `ZAdd` names: its score before and after, and where its entry
/// started (the second walk removes the entry starting there).
struct Touched<'a> {
    member: &'a [u8],
    before: Option<f64>,
    after: Option<f64>,
    at: usize,
}

/// Runs a `ZAdd`'s pairs, in order, against the scores `value` gives the
/// members they name (one walk, stopping once all are found), as Redis's
/// `zsetAdd` does: the members touched (sorted by member) and the counts.
fn zadd_plan<'a>(
    value: Option<&[u8]>,
    args: &ZAddArgs<'a>,
) -> Result<(Vec<Touched<'a>>, ZAddReply)> {
    if args.pairs.iter().any(|(score, _)| score.is_nan()) {
        return Err(CollectionError::NotANumber);
    }
    let mut touched: Vec<Touched<'a>> = args
        .pairs
        .iter()
        .map(|(_, member)| Touched {
            member,
            before: None,
            after: None,
            at: 0,
        })
        .collect();
    touched.sort_unstable_by(|a, b| a.member.cmp(b.member));
    touched.dedup_by(|a, b| a.member == b.member);
    let mut iter = ZSetIter::over(value)?;
    let mut unseen = touched.len();
    while unseen > 0 {
        let Some((at, (member, score))) = iter.entry()? else {
            break;
        };
        if let Some(i) = find(&touched, member)
            && touched[i].before.is_none()
        {
            let t = &mut touched[i];
            (t.before, t.after, t.at) = (Some(score), Some(score), at.start);
            unseen -= 1;
        }
    }
    let mut reply = ZAddReply::default();
    for (score, member) in args.pairs {
        let Some(i) = find(&touched, member) else {
            continue;
        };
        let t = &mut touched[i];
        reply.score = None;
        match t.after {
            Some(_) if args.nx => {}
            Some(current) => {
                let new = if args.incr { current + score } else { *score };
                if new.is_nan() {
                    return Err(CollectionError::NotANumber);
                }
                let new = canonical(new);
                if (args.lt && new >= current) || (args.gt && new <= current) {
                    continue;
                }
                reply.score = Some(new);
                if new != current {
                    t.after = Some(new);
                    reply.updated += 1;
                }
            }
            None if args.xx => {}
            None => {
                // INCR on an absent member: 0 + score.
                let new = canonical(*score);
                t.after = Some(new);
                reply.added += 1;
                reply.score = Some(new);
            }
        }
    }
    Ok((touched, reply))
}

fn zadd(value: Option<&[u8]>, args: &ZAddArgs<'_>, max_len: u64) -> Result<Change> {
    let (touched, reply) = zadd_plan(value, args)?;
    let moved = |t: &&Touched<'_>| t.after != t.before;
    let mut inserts: Vec<(f64, &[u8])> = touched
        .iter()
        .filter(moved)
        .filter_map(|t| Some((t.after?, t.member)))
        .collect();
    if inserts.is_empty() {
        return Ok(Change::Unchanged);
    }
    inserts.sort_unstable_by(|a, b| zcmp(*a, *b));
    let mut removals: Vec<usize> = touched
        .iter()
        .filter(moved)
        .filter(|t| t.before.is_some())
        .map(|t| t.at)
        .collect();
    removals.sort_unstable();
    // A second walk finds where each new or moved entry goes, removing the
    // moved ones' old entries on the way.
    let old = value.unwrap_or(&ABSENT);
    let mut iter = ZSetIter::over(value)?;
    let count = u64::from(iter.walk.remaining);
    let mut splice = Splice::default();
    let mut next = inserts.iter().peekable();
    let mut gone = removals.into_iter().peekable();
    while next.peek().is_some() || gone.peek().is_some() {
        let Some((at, (member, score))) = iter.entry()? else {
            break;
        };
        while let Some(&(s, m)) = next.next_if(|&&(s, m)| zcmp((s, m), (score, member)).is_lt()) {
            splice.insert(at.start, |out| put_zset_entry(out, s, m));
        }
        if gone.next_if(|&start| start == at.start).is_some() {
            splice.remove(at);
        }
    }
    for &(s, m) in next {
        splice.insert(old.len(), |out| put_zset_entry(out, s, m));
    }
    splice.apply(old, count + reply.added, max_len)
}

fn zset_remove(value: Option<&[u8]>, members: &[Bytes]) -> Result<Change> {
    let Some(value) = value else {
        return Ok(Change::Unchanged);
    };
    let gone = sorted_unique(members);
    let mut iter = zset_iter(value)?;
    let count = u64::from(iter.walk.remaining);
    let mut splice = Splice::default();
    let mut removed = 0;
    while removed < gone.len() {
        let Some((at, (member, _))) = iter.entry()? else {
            break;
        };
        if gone.binary_search(&member).is_ok() {
            splice.remove(at);
            removed += 1;
        }
    }
    splice.apply(value, count - removed as u64, UNBOUNDED)
}

fn zset_pop(value: Option<&[u8]>, max: bool, count: u64) -> Result<Change> {
    let Some(value) = value else {
        return Ok(Change::Unchanged);
    };
    let mut iter = zset_iter(value)?;
    let len = iter.walk.remaining;
    if count == 0 {
        return Ok(Change::Unchanged);
    }
    if count >= u64::from(len) {
        return Ok(Change::Delete);
    }
    // Entries only walk forward, so ZPOPMAX walks past the entries it keeps
    // to find where the popped ones start.
    let skip = if max { u64::from(len) - count } else { count };
    let mut cut = HEADER;
    for _ in 0..skip {
        let (at, _) = iter.entry()?.ok_or(Corrupt)?;
        cut = at.end;
    }
    let mut splice = Splice::default();
    if max {
        splice.remove(cut..value.len());
    } else {
        splice.remove(HEADER..cut);
    }
    splice.apply(value, u64::from(len) - count, UNBOUNDED)
}

// ---------------------------------------------------------------------------
// The operation's encoding.

/// A collection operation's payload could not be read (written by another
/// program, or a newer kafkv).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed kafkv collection operation: {0}")]
pub struct DecodeError(&'static str);

impl DecodeError {
    /// What was wrong.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

// One tag byte per variant. Stored in records: never reuse or renumber.
const PUSH: u8 = b'L';
const POP: u8 = b'l';
const SET_ADD: u8 = b'S';
const SET_REMOVE: u8 = b's';
const SET_POP: u8 = b'p';
const HASH_SET: u8 = b'H';
const HASH_DELETE: u8 = b'h';
const HASH_INCR_BY: u8 = b'I';
const ZADD: u8 = b'Z';
const ZREMOVE: u8 = b'z';
const ZPOP: u8 = b'm';

/// Flags as bits, the first flag lowest.
fn flags(bits: &[bool]) -> u8 {
    bits.iter()
        .enumerate()
        .fold(0, |acc, (i, &bit)| acc | (u8::from(bit) << i))
}

fn put_items(out: &mut BytesMut, items: &[Bytes]) {
    put_varint(out, items.len() as u64);
    for item in items {
        put_item(out, item);
    }
}

impl CollectionOp {
    /// Appends the operation's encoding to `out`: a tag byte, then its
    /// fields (counts, lengths and `u64`s as varints, `i64` and `f64` as 8
    /// big-endian bytes, flags as one byte of bits).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            CollectionOp::Push {
                left,
                values,
                only_if_exists,
                max_len,
            } => {
                out.put_u8(PUSH);
                out.put_u8(flags(&[*left, *only_if_exists]));
                put_varint(out, *max_len);
                put_items(out, values);
            }
            CollectionOp::Pop { left, count } => {
                out.put_u8(POP);
                out.put_u8(flags(&[*left]));
                put_varint(out, *count);
            }
            CollectionOp::SetAdd { members, max_len } => {
                out.put_u8(SET_ADD);
                put_varint(out, *max_len);
                put_items(out, members);
            }
            CollectionOp::SetRemove { members } => {
                out.put_u8(SET_REMOVE);
                put_items(out, members);
            }
            CollectionOp::SetPop { count } => {
                out.put_u8(SET_POP);
                put_varint(out, *count);
            }
            CollectionOp::HashSet { pairs, max_len } => {
                out.put_u8(HASH_SET);
                put_varint(out, *max_len);
                put_varint(out, pairs.len() as u64);
                for (field, value) in pairs {
                    put_pair(out, field, value);
                }
            }
            CollectionOp::HashDelete { fields } => {
                out.put_u8(HASH_DELETE);
                put_items(out, fields);
            }
            CollectionOp::HashIncrBy { field, by, max_len } => {
                out.put_u8(HASH_INCR_BY);
                put_varint(out, *max_len);
                out.put_i64(*by);
                put_item(out, field);
            }
            CollectionOp::ZAdd {
                nx,
                xx,
                gt,
                lt,
                incr,
                pairs,
                max_len,
            } => {
                out.put_u8(ZADD);
                out.put_u8(flags(&[*nx, *xx, *gt, *lt, *incr]));
                put_varint(out, *max_len);
                put_varint(out, pairs.len() as u64);
                for (score, member) in pairs {
                    put_zset_entry(out, *score, member);
                }
            }
            CollectionOp::ZRemove { members } => {
                out.put_u8(ZREMOVE);
                put_items(out, members);
            }
            CollectionOp::ZPop { max, count } => {
                out.put_u8(ZPOP);
                out.put_u8(flags(&[*max]));
                put_varint(out, *count);
            }
        }
    }

    /// Reads an operation back from exactly `buf` (truncated or trailing
    /// bytes, unknown tags or flags, non-minimal varints and NaN scores are
    /// errors).
    pub fn decode(buf: &[u8]) -> Result<CollectionOp, DecodeError> {
        let mut r = Reader(buf);
        let op = match r.u8()? {
            PUSH => {
                let [left, only_if_exists] = r.flags()?;
                let max_len = r.varint()?;
                CollectionOp::Push {
                    left,
                    values: r.items()?,
                    only_if_exists,
                    max_len,
                }
            }
            POP => {
                let [left] = r.flags()?;
                CollectionOp::Pop {
                    left,
                    count: r.varint()?,
                }
            }
            SET_ADD => {
                let max_len = r.varint()?;
                CollectionOp::SetAdd {
                    members: r.items()?,
                    max_len,
                }
            }
            SET_REMOVE => CollectionOp::SetRemove {
                members: r.items()?,
            },
            SET_POP => CollectionOp::SetPop { count: r.varint()? },
            HASH_SET => {
                let max_len = r.varint()?;
                let pairs = (0..r.count()?)
                    .map(|_| Ok((r.bytes()?, r.bytes()?)))
                    .collect::<Result<_, DecodeError>>()?;
                CollectionOp::HashSet { pairs, max_len }
            }
            HASH_DELETE => CollectionOp::HashDelete { fields: r.items()? },
            HASH_INCR_BY => {
                let max_len = r.varint()?;
                let by = i64::from_be_bytes(r.eight()?);
                CollectionOp::HashIncrBy {
                    field: r.bytes()?,
                    by,
                    max_len,
                }
            }
            ZADD => {
                let [nx, xx, gt, lt, incr] = r.flags()?;
                let max_len = r.varint()?;
                let pairs = (0..r.count()?)
                    .map(|_| {
                        let score = f64::from_be_bytes(r.eight()?);
                        if score.is_nan() {
                            return Err(DecodeError("NaN score"));
                        }
                        Ok((score, r.bytes()?))
                    })
                    .collect::<Result<_, DecodeError>>()?;
                CollectionOp::ZAdd {
                    nx,
                    xx,
                    gt,
                    lt,
                    incr,
                    pairs,
                    max_len,
                }
            }
            ZREMOVE => CollectionOp::ZRemove {
                members: r.items()?,
            },
            ZPOP => {
                let [max] = r.flags()?;
                CollectionOp::ZPop {
                    max,
                    count: r.varint()?,
                }
            }
            _ => return Err(DecodeError("unknown collection operation")),
        };
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(op)
    }
}

/// The unread rest of an operation's encoding.
struct Reader<'a>(&'a [u8]);

const TRUNCATED: DecodeError = DecodeError("truncated");

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&byte, rest) = self.0.split_first().ok_or(TRUNCATED)?;
        self.0 = rest;
        Ok(byte)
    }

    fn flags<const N: usize>(&mut self) -> Result<[bool; N], DecodeError> {
        let bits = self.u8()?;
        if u32::from(bits) >> N != 0 {
            return Err(DecodeError("unknown flags"));
        }
        Ok(std::array::from_fn(|i| bits & (1 << i) != 0))
    }

    fn eight(&mut self) -> Result<[u8; 8], DecodeError> {
        let (bytes, rest) = self.0.split_first_chunk::<8>().ok_or(TRUNCATED)?;
        self.0 = rest;
        Ok(*bytes)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let (value, n) = varint(self.0.iter().copied()).ok_or(DecodeError("bad varint"))?;
        self.0 = &self.0[n..];
        Ok(value)
    }

    /// A count of items, each at least a byte long: more than the bytes
    /// left is truncated (and never allocates for a forged count).
    fn count(&mut self) -> Result<usize, DecodeError> {
        let count = self.varint()?;
        usize::try_from(count)
            .ok()
            .filter(|&count| count <= self.0.len())
            .ok_or(TRUNCATED)
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| TRUNCATED)?;
        if self.0.len() < len {
            return Err(TRUNCATED);
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(Bytes::copy_from_slice(bytes))
    }

    fn items(&mut self) -> Result<Vec<Bytes>, DecodeError> {
        (0..self.count()?).map(|_| self.bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use std::collections::{BTreeMap, VecDeque};

    const MAX: u64 = u64::MAX;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn bs(items: &[&str]) -> Vec<Bytes> {
        items.iter().map(|s| b(s)).collect()
    }

    /// Evaluates `op` at `offset` on `key` (a value of the op's type, or
    /// absent) and applies what it does.
    fn run_at(key: &mut Option<Bytes>, op: &CollectionOp, offset: i64) -> Result<Change> {
        let change = op.evaluate(key.as_ref().map(|v| (op.result_type(), v)), offset)?;
        match &change {
            Change::Put(value) => *key = Some(value.clone()),
            Change::Delete => *key = None,
            Change::Unchanged => {}
        }
        Ok(change)
    }

    fn run(key: &mut Option<Bytes>, op: &CollectionOp) -> Result<Change> {
        run_at(key, op, 7)
    }

    /// The value `ops` build from an absent key.
    fn build(ops: &[CollectionOp]) -> Bytes {
        let mut key = None;
        for op in ops {
            run(&mut key, op).expect("builds");
        }
        key.expect("not empty")
    }

    fn push(left: bool, values: &[&str]) -> CollectionOp {
        CollectionOp::Push {
            left,
            values: bs(values),
            only_if_exists: false,
            max_len: MAX,
        }
    }

    fn sadd(members: &[&str]) -> CollectionOp {
        CollectionOp::SetAdd {
            members: bs(members),
            max_len: MAX,
        }
    }

    fn hset(pairs: &[(&str, &str)]) -> CollectionOp {
        CollectionOp::HashSet {
            pairs: pairs.iter().map(|(f, v)| (b(f), b(v))).collect(),
            max_len: MAX,
        }
    }

    fn hincrby(field: &str, by: i64) -> CollectionOp {
        CollectionOp::HashIncrBy {
            field: b(field),
            by,
            max_len: MAX,
        }
    }

    /// `ZADD` with the flags named in `flags` (`"xx gt"`, `"incr"`, …).
    fn zadd(flags: &str, pairs: &[(f64, &str)]) -> CollectionOp {
        let has = |flag| flags.split_whitespace().any(|f| f == flag);
        CollectionOp::ZAdd {
            nx: has("nx"),
            xx: has("xx"),
            gt: has("gt"),
            lt: has("lt"),
            incr: has("incr"),
            pairs: pairs.iter().map(|&(s, m)| (s, b(m))).collect(),
            max_len: MAX,
        }
    }

    fn list_of(key: &Option<Bytes>) -> Vec<Bytes> {
        key.as_ref()
            .map_or(Vec::new(), |v| list_range(v, 0, -1).unwrap())
    }

    fn zset_of(value: &Bytes) -> Vec<(Bytes, f64)> {
        zset_range(value, 0, -1).unwrap()
    }

    fn entries(pairs: &[(&str, f64)]) -> Vec<(Bytes, f64)> {
        pairs.iter().map(|&(m, s)| (b(m), s)).collect()
    }

    #[test]
    fn types_have_redis_names_and_stable_codes_below_8() {
        let names: Vec<_> = Type::ALL.iter().map(|ty| ty.name()).collect();
        assert_eq!(names, ["string", "list", "set", "hash", "zset"]);
        for (code, ty) in Type::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(ty.code()), code);
            assert!(ty.code() < 8);
            assert_eq!(Type::from_code(ty.code()), Some(ty));
        }
        assert_eq!(Type::default(), Type::String);
        assert_eq!(Type::String.code(), 0);
        assert_eq!(Type::from_code(5), None);
        assert_eq!(Type::from_code(7), None);
    }

    #[test]
    fn lpush_puts_the_last_value_first_and_rpush_appends() {
        let mut key = None;
        assert!(matches!(
            run(&mut key, &push(true, &["a", "b", "c"])),
            Ok(Change::Put(_))
        ));
        assert_eq!(list_of(&key), bs(&["c", "b", "a"]));
        run(&mut key, &push(false, &["x", "y"])).unwrap();
        assert_eq!(list_of(&key), bs(&["c", "b", "a", "x", "y"]));
        assert_eq!(len(key.as_deref()), Ok(5));
        // The same content, however it was built, is the same bytes.
        assert_eq!(Some(build(&[push(false, &["c", "b", "a", "x", "y"])])), key);
        assert_eq!(
            run(&mut key, &push(true, &[])),
            Ok(Change::Unchanged),
            "nothing to push"
        );
    }

    #[test]
    fn lrange_and_lindex_follow_redis_indexes() {
        let list = build(&[push(false, &["one", "two", "three"])]);
        let range = |start, stop| list_range(&list, start, stop).unwrap();
        assert_eq!(range(0, 0), bs(&["one"]));
        assert_eq!(range(-3, 2), bs(&["one", "two", "three"]));
        assert_eq!(range(-100, 100), bs(&["one", "two", "three"]));
        assert_eq!(range(5, 10), bs(&[]));
        assert_eq!(range(1, -1), bs(&["two", "three"]));
        assert_eq!(range(-1, -1), bs(&["three"]));
        assert_eq!(range(-5, -3), bs(&["one"]));
        assert_eq!(range(2, 1), bs(&[]), "start after stop");
        assert_eq!(range(0, -4), bs(&[]), "stop before the first");
        assert_eq!(range(i64::MIN, i64::MAX), bs(&["one", "two", "three"]));
        let index = |i| list_index(&list, i).unwrap();
        assert_eq!(index(0), Some(b("one")));
        assert_eq!(index(1), Some(b("two")));
        assert_eq!(index(-1), Some(b("three")));
        assert_eq!(index(-3), Some(b("one")));
        assert_eq!(index(3), None);
        assert_eq!(index(-4), None);
    }

    #[test]
    fn pushx_needs_a_list_and_pops_delete_the_emptied_key() {
        let pushx = CollectionOp::Push {
            left: true,
            values: bs(&["a"]),
            only_if_exists: true,
            max_len: MAX,
        };
        let mut key = None;
        assert_eq!(run(&mut key, &pushx), Ok(Change::Unchanged));
        assert_eq!(key, None);
        let lpop = |count| CollectionOp::Pop { left: true, count };
        let rpop = |count| CollectionOp::Pop { left: false, count };
        assert_eq!(run(&mut key, &lpop(1)), Ok(Change::Unchanged));
        run(&mut key, &push(false, &["a", "b", "c", "d"])).unwrap();
        run(&mut key, &pushx).unwrap();
        assert_eq!(list_of(&key), bs(&["a", "a", "b", "c", "d"]));

        let before = key.clone();
        run(&mut key, &rpop(2)).unwrap();
        assert_eq!(
            list_popped(before.as_ref(), key.as_deref(), false),
            Ok(bs(&["d", "c"])),
            "RPOP replies from the tail inwards"
        );
        let before = key.clone();
        run(&mut key, &lpop(1)).unwrap();
        assert_eq!(
            list_popped(before.as_ref(), key.as_deref(), true),
            Ok(bs(&["a"]))
        );
        assert_eq!(list_of(&key), bs(&["a", "b"]));
        assert_eq!(run(&mut key, &lpop(0)), Ok(Change::Unchanged));
        let before = key.clone();
        assert_eq!(run(&mut key, &lpop(5)), Ok(Change::Delete));
        assert_eq!(key, None);
        assert_eq!(
            list_popped(before.as_ref(), None, true),
            Ok(bs(&["a", "b"]))
        );
    }

    #[test]
    fn list_reads_touch_only_the_elements_they_return() {
        // Five elements claimed, with garbage between the first and last: a
        // read or write at either end must not need the middle.
        let mut value = BytesMut::new();
        value.put_u32(5);
        put_list_element(&mut value, b"head");
        value.put_slice(&[0xff; 7]);
        put_list_element(&mut value, b"tail");
        let value = value.freeze();
        assert_eq!(list_range(&value, 0, 0), Ok(bs(&["head"])));
        assert_eq!(list_range(&value, -1, -1), Ok(bs(&["tail"])));
        assert_eq!(list_index(&value, 0), Ok(Some(b("head"))));
        assert_eq!(list_index(&value, -1), Ok(Some(b("tail"))));
        // Whoever reads the middle finds it corrupt.
        assert_eq!(list_range(&value, 0, -1), Err(Corrupt));
        assert_eq!(list_index(&value, 1), Err(Corrupt));
        assert_eq!(validate(Type::List, &value), Err(Corrupt));
        // A push copies the elements without reading them; a pop reads what
        // it pops.
        let Ok(Change::Put(pushed)) = push(true, &["new"]).evaluate(Some((Type::List, &value)), 1)
        else {
            panic!("LPUSH does not read the elements");
        };
        assert_eq!(list_range(&pushed, 0, 1), Ok(bs(&["new", "head"])));
        assert_eq!(len(Some(&pushed)), Ok(6));
        let rpop = CollectionOp::Pop {
            left: false,
            count: 1,
        };
        let Ok(Change::Put(popped)) = rpop.evaluate(Some((Type::List, &value)), 1) else {
            panic!("RPOP reads only the tail");
        };
        assert_eq!(list_index(&popped, 0), Ok(Some(b("head"))));
        let lpop2 = CollectionOp::Pop {
            left: true,
            count: 2,
        };
        assert_eq!(lpop2.evaluate(Some((Type::List, &value)), 1), Err(Corrupt));
    }

    #[test]
    fn a_long_list_takes_many_pushes_and_reads_its_ends() {
        let values: Vec<Bytes> = (0..200_000u32)
            .map(|i| Bytes::from(i.to_string()))
            .collect();
        let mut key = None;
        run(
            &mut key,
            &CollectionOp::Push {
                left: false,
                values,
                only_if_exists: false,
                max_len: MAX,
            },
        )
        .unwrap();
        for i in 0..1000 {
            run(&mut key, &push(true, &[&format!("n{i}")])).unwrap();
        }
        let list = key.unwrap();
        assert_eq!(len(Some(&list)), Ok(201_000));
        let head = list_range(&list, 0, 599).unwrap();
        assert_eq!(head.len(), 600);
        assert_eq!((&head[0], &head[599]), (&b("n999"), &b("n400")));
        assert_eq!(list_index(&list, -1), Ok(Some(b("199999"))));
        assert_eq!(
            list_range(&list, -3, -1),
            Ok(bs(&["199997", "199998", "199999"]))
        );
        assert_eq!(list_index(&list, 1000), Ok(Some(b("0"))));
    }

    #[test]
    fn elements_with_multibyte_lengths_walk_from_both_ends() {
        let sizes = [0usize, 1, 127, 128, 16_383, 16_384, 100_000];
        let values: Vec<Bytes> = sizes
            .iter()
            .map(|&n| Bytes::from(vec![n as u8; n]))
            .collect();
        let list = build(&[CollectionOp::Push {
            left: false,
            values: values.clone(),
            only_if_exists: false,
            max_len: MAX,
        }]);
        let forward: Vec<&[u8]> = list_iter(&list).unwrap().map(Result::unwrap).collect();
        assert_eq!(forward, values.iter().map(|v| &v[..]).collect::<Vec<_>>());
        let backward: Vec<&[u8]> = list_iter(&list)
            .unwrap()
            .rev()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            backward,
            values.iter().rev().map(|v| &v[..]).collect::<Vec<_>>()
        );
        // From both ends at once, meeting in the middle.
        let mut iter = list_iter(&list).unwrap();
        let mut met = Vec::new();
        while let (Some(front), back) = (iter.next(), iter.next_back()) {
            met.push(front.unwrap().len());
            if let Some(back) = back {
                met.push(back.unwrap().len());
            }
        }
        met.sort_unstable();
        assert_eq!(met, sizes);
        assert_eq!(
            list_index(&list, -2).unwrap().map(|v| v.len()),
            Some(16_384)
        );
        assert_eq!(validate(Type::List, &list), Ok(()));
    }

    #[test]
    fn writes_refuse_a_key_of_another_type() {
        let ops = [
            push(true, &["a"]),
            CollectionOp::Pop {
                left: true,
                count: 1,
            },
            sadd(&["a"]),
            CollectionOp::SetRemove {
                members: bs(&["a"]),
            },
            CollectionOp::SetPop { count: 1 },
            hset(&[("f", "v")]),
            CollectionOp::HashDelete { fields: bs(&["f"]) },
            hincrby("f", 1),
            zadd("", &[(1.0, "a")]),
            CollectionOp::ZRemove {
                members: bs(&["a"]),
            },
            CollectionOp::ZPop {
                max: false,
                count: 1,
            },
        ];
        let string = b("plain");
        let list = build(&[push(false, &["a"])]);
        let set = build(&[sadd(&["a"])]);
        for op in &ops {
            assert_eq!(
                op.evaluate(Some((Type::String, &string)), 1),
                Err(CollectionError::WrongType),
                "{op:?} on a string"
            );
            let (other, value) = if op.result_type() == Type::List {
                (Type::Set, &set)
            } else {
                (Type::List, &list)
            };
            assert_eq!(
                op.evaluate(Some((other, value)), 1),
                Err(CollectionError::WrongType),
                "{op:?} on a {}",
                other.name()
            );
        }
    }

    #[test]
    fn a_result_over_max_len_is_refused_and_the_bound_is_inclusive() {
        // Each result's exact size: the count (4) plus its one entry.
        type Bounded = fn(u64) -> CollectionOp;
        let cases: [(Bounded, u64); 5] = [
            // 1 + "abc" + 1
            (
                |max_len| CollectionOp::Push {
                    left: true,
                    values: bs(&["abc"]),
                    only_if_exists: false,
                    max_len,
                },
                9,
            ),
            // 1 + "ab"
            (
                |max_len| CollectionOp::SetAdd {
                    members: bs(&["ab"]),
                    max_len,
                },
                7,
            ),
            // 1 + "f" + 1 + "v"
            (
                |max_len| CollectionOp::HashSet {
                    pairs: vec![(b("f"), b("v"))],
                    max_len,
                },
                8,
            ),
            // 1 + "f" + 1 + "10"
            (
                |max_len| CollectionOp::HashIncrBy {
                    field: b("f"),
                    by: 10,
                    max_len,
                },
                9,
            ),
            // score + 1 + "m"
            (
                |max_len| CollectionOp::ZAdd {
                    nx: false,
                    xx: false,
                    gt: false,
                    lt: false,
                    incr: false,
                    pairs: vec![(1.0, b("m"))],
                    max_len,
                },
                14,
            ),
        ];
        for (op, size) in cases {
            let Ok(Change::Put(value)) = op(size).evaluate(None, 1) else {
                panic!("{:?} fits in {size}", op(size));
            };
            assert_eq!(value.len() as u64, size);
            assert_eq!(
                op(size - 1).evaluate(None, 1),
                Err(CollectionError::TooLarge { max: size - 1 })
            );
        }
        // Growth is what is bounded: a write that changes nothing is fine.
        let set = build(&[sadd(&["ab", "cd"])]);
        let again = CollectionOp::SetAdd {
            members: bs(&["ab"]),
            max_len: 1,
        };
        assert_eq!(
            again.evaluate(Some((Type::Set, &set)), 1),
            Ok(Change::Unchanged)
        );
    }

    #[test]
    fn sets_keep_unique_members_in_bytewise_order() {
        let mut key = None;
        run(&mut key, &sadd(&["b", "a", "c", "a"])).unwrap();
        let members = |key: &Option<Bytes>| set_members(key.as_ref().unwrap()).unwrap();
        assert_eq!(members(&key), bs(&["a", "b", "c"]));
        let before = key.clone();
        run(&mut key, &sadd(&["c", "d", "a"])).unwrap();
        assert_eq!(
            len(key.as_deref()).unwrap() - len(before.as_deref()).unwrap(),
            1,
            "SADD's reply"
        );
        assert_eq!(run(&mut key, &sadd(&["a", "d"])), Ok(Change::Unchanged));
        let set = key.clone().unwrap();
        assert_eq!(set_contains(&set, b"a"), Ok(true));
        assert_eq!(set_contains(&set, b"d"), Ok(true));
        assert_eq!(set_contains(&set, b"bb"), Ok(false));
        assert_eq!(set_contains(&set, b""), Ok(false));
        assert_eq!(set_contains(&set, b"e"), Ok(false));
        let before = key.clone();
        let srem = |members: &[&str]| CollectionOp::SetRemove {
            members: bs(members),
        };
        run(&mut key, &srem(&["a", "zz", "a"])).unwrap();
        assert_eq!(
            set_difference(before.as_ref(), key.as_deref()),
            Ok(bs(&["a"]))
        );
        assert_eq!(members(&key), bs(&["b", "c", "d"]));
        assert_eq!(run(&mut key, &srem(&["nope"])), Ok(Change::Unchanged));
        assert_eq!(run(&mut key, &srem(&["b", "c", "d"])), Ok(Change::Delete));
        assert_eq!(run(&mut key, &srem(&["b"])), Ok(Change::Unchanged));
        assert_eq!(
            build(&[sadd(&["c", "b", "a"])]),
            build(&[sadd(&["a", "b", "c"])])
        );
    }

    #[test]
    fn spop_picks_from_the_offset_alone_and_spreads_over_offsets() {
        let members: Vec<Bytes> = (0..10).map(|i| b(&format!("m{i}"))).collect();
        let set = build(&[CollectionOp::SetAdd {
            members: members.clone(),
            max_len: MAX,
        }]);
        let spop = |count, offset| {
            CollectionOp::SetPop { count }.evaluate(Some((Type::Set, &set)), offset)
        };
        assert_eq!(spop(3, 42), spop(3, 42));
        let Ok(Change::Put(after)) = spop(3, 42) else {
            panic!("SPOP 3 of 10 keeps 7");
        };
        let popped = set_difference(Some(&set), Some(&after)).unwrap();
        assert_eq!(popped.len(), 3);
        assert_eq!(len(Some(&after)), Ok(7));
        // Over many offsets every member is picked about as often.
        let mut picks: BTreeMap<Bytes, u32> = BTreeMap::new();
        let mut distinct = BTreeSet::new();
        for offset in 0..2000 {
            let Ok(Change::Put(after)) = spop(1, offset) else {
                panic!("SPOP 1 of 10");
            };
            for member in set_difference(Some(&set), Some(&after)).unwrap() {
                *picks.entry(member).or_default() += 1;
            }
            distinct.insert(after);
        }
        assert_eq!(picks.keys().cloned().collect::<Vec<_>>(), members);
        // 200 expected each; the bound is about 6 standard deviations.
        assert!(
            picks.values().all(|&n| (120..=280).contains(&n)),
            "{picks:?}"
        );
        assert_eq!(distinct.len(), 10);
        assert_eq!(spop(10, 1), Ok(Change::Delete));
        assert_eq!(spop(u64::MAX, 1), Ok(Change::Delete));
        assert_eq!(spop(0, 1), Ok(Change::Unchanged));
        assert_eq!(
            CollectionOp::SetPop { count: 1 }.evaluate(None, 1),
            Ok(Change::Unchanged)
        );
        // The sampler itself: distinct, ascending, in range, and all of n.
        assert_eq!(sample(9, 5, 5), vec![0, 1, 2, 3, 4]);
        let some = sample(9, 1000, 50);
        assert_eq!(some.len(), 50);
        assert!(some.windows(2).all(|w| w[0] < w[1]) && some[49] < 1000);
    }

    #[test]
    fn hset_lets_a_later_pair_win_and_equal_values_change_nothing() {
        let mut key = None;
        run(&mut key, &hset(&[("f", "1"), ("g", "2"), ("f", "3")])).unwrap();
        let pairs = |key: &Option<Bytes>| hash_pairs(key.as_ref().unwrap()).unwrap();
        assert_eq!(pairs(&key), vec![(b("f"), b("3")), (b("g"), b("2"))]);
        assert_eq!(run(&mut key, &hset(&[("g", "2")])), Ok(Change::Unchanged));
        let before = key.clone();
        run(&mut key, &hset(&[("a", "x"), ("g", "9")])).unwrap();
        assert_eq!(
            len(key.as_deref()).unwrap() - len(before.as_deref()).unwrap(),
            1,
            "HSET's reply: fields created"
        );
        let hash = key.clone().unwrap();
        assert_eq!(hash_fields(&hash), Ok(bs(&["a", "f", "g"])));
        assert_eq!(hash_values(&hash), Ok(bs(&["x", "3", "9"])));
        assert_eq!(hash_get(&hash, b"f"), Ok(Some(b("3"))));
        assert_eq!(hash_get(&hash, b"b"), Ok(None));
        assert_eq!(hash_get(&hash, b"zz"), Ok(None));
        let hdel = |fields: &[&str]| CollectionOp::HashDelete { fields: bs(fields) };
        run(&mut key, &hdel(&["f", "nope"])).unwrap();
        assert_eq!(pairs(&key), vec![(b("a"), b("x")), (b("g"), b("9"))]);
        assert_eq!(run(&mut key, &hdel(&["a", "g"])), Ok(Change::Delete));
        assert_eq!(run(&mut key, &hdel(&["a"])), Ok(Change::Unchanged));
    }

    #[test]
    fn hincrby_counts_from_zero_and_refuses_non_integers_and_overflow() {
        let mut key = None;
        run(&mut key, &hincrby("f", 5)).unwrap();
        let get = |key: &Option<Bytes>, field: &str| {
            hash_get(key.as_ref().unwrap(), field.as_bytes()).unwrap()
        };
        assert_eq!(get(&key, "f"), Some(b("5")));
        run(&mut key, &hincrby("f", -7)).unwrap();
        assert_eq!(get(&key, "f"), Some(b("-2")));
        assert_eq!(run(&mut key, &hincrby("f", 0)), Ok(Change::Unchanged));
        run(&mut key, &hincrby("g", 1)).unwrap();
        run(&mut key, &hincrby("a", 1)).unwrap();
        assert_eq!(hash_fields(key.as_ref().unwrap()), Ok(bs(&["a", "f", "g"])));
        for bad in ["x", " 1", "01", "1.5", ""] {
            run(&mut key, &hset(&[("f", bad)])).unwrap();
            let before = key.clone();
            assert_eq!(
                run(&mut key, &hincrby("f", 1)),
                Err(CollectionError::NotAnInteger),
                "{bad:?}"
            );
            assert_eq!(key, before);
        }
        run(&mut key, &hset(&[("f", &i64::MAX.to_string())])).unwrap();
        assert_eq!(
            run(&mut key, &hincrby("f", 1)),
            Err(CollectionError::Overflow)
        );
        run(&mut key, &hincrby("f", i64::MIN)).unwrap();
        assert_eq!(get(&key, "f"), Some(b("-1")));
        assert_eq!(
            CollectionError::NotAnInteger.to_string(),
            "hash value is not an integer"
        );
    }

    /// `ZADD`'s arguments as Redis takes them: flags, then score-member
    /// pairs (`"xx gt 6 a 1 c"`).
    fn zadd_args(args: &str) -> CollectionOp {
        let words: Vec<&str> = args.split_whitespace().collect();
        let flags = words
            .iter()
            .take_while(|w| ["nx", "xx", "gt", "lt", "incr"].contains(w))
            .count();
        let pairs: Vec<(f64, &str)> = words[flags..]
            .chunks(2)
            .map(|pair| (pair[0].parse().unwrap(), pair[1]))
            .collect();
        zadd(&words[..flags].join(" "), &pairs)
    }

    /// A sorted set's entries written `member:score`, in any order.
    fn zentries(text: &str) -> Vec<(Bytes, f64)> {
        let mut all: Vec<(Bytes, f64)> = text
            .split_whitespace()
            .map(|entry| {
                let (member, score) = entry.split_once(':').unwrap();
                (b(member), score.parse().unwrap())
            })
            .collect();
        all.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
        all
    }

    #[test]
    fn zadd_follows_redis_7_flags() {
        let base = build(&[zadd_args("5 a 10 b")]);
        // (ZADD's arguments on {a:5, b:10}, the entries after, added,
        // updated, INCR's reply)
        let cases: &[(&str, &str, u64, u64, Option<f64>)] = &[
            ("1 c", "c:1 a:5 b:10", 1, 0, Some(1.0)),
            ("5 a", "a:5 b:10", 0, 0, Some(5.0)),
            ("nx 1 a 2 c", "c:2 a:5 b:10", 1, 0, Some(2.0)),
            ("nx 1 a", "a:5 b:10", 0, 0, None),
            ("xx 1 a 2 c", "a:1 b:10", 0, 1, None),
            ("gt 3 a 11 b 1 c", "c:1 a:5 b:11", 1, 1, Some(1.0)),
            ("lt 3 a 11 b 1 c", "c:1 a:3 b:10", 1, 1, Some(1.0)),
            ("xx gt 6 a 1 c", "a:6 b:10", 0, 1, None),
            ("xx lt 6 a 9 b", "a:5 b:9", 0, 1, Some(9.0)),
            ("incr 2 a", "a:7 b:10", 0, 1, Some(7.0)),
            ("incr 6 a", "b:10 a:11", 0, 1, Some(11.0)),
            ("incr 0 a", "a:5 b:10", 0, 0, Some(5.0)),
            ("incr 3 c", "c:3 a:5 b:10", 1, 0, Some(3.0)),
            ("incr nx 2 a", "a:5 b:10", 0, 0, None),
            ("incr xx 2 c", "a:5 b:10", 0, 0, None),
            ("incr gt -1 a", "a:5 b:10", 0, 0, None),
            ("incr lt -1 a", "a:4 b:10", 0, 1, Some(4.0)),
            // A member named twice: added, then updated (CH counts 2).
            ("1 x 2 x", "x:2 a:5 b:10", 1, 1, Some(2.0)),
            ("gt 3 x 1 x", "x:3 a:5 b:10", 1, 0, None),
            ("-inf a inf b", "a:-inf b:inf", 0, 2, Some(f64::INFINITY)),
        ];
        for &(args, after, added, updated, score) in cases {
            let op = zadd_args(args);
            let change = op.evaluate(Some((Type::ZSet, &base)), 1).unwrap();
            let result = match &change {
                Change::Put(value) => value.clone(),
                Change::Unchanged => base.clone(),
                Change::Delete => panic!("ZADD never deletes"),
            };
            assert_eq!(zset_of(&result), zentries(after), "ZADD {args}");
            assert_eq!(
                change == Change::Unchanged,
                result == base,
                "ZADD {args} is Unchanged exactly when it changes nothing"
            );
            let reply = op.zadd_reply(Some(&base)).unwrap().unwrap();
            let expected = ZAddReply {
                added,
                updated,
                score,
            };
            assert_eq!(reply, expected, "ZADD {args}");
            assert_eq!(reply.count(true), added + updated);
            assert_eq!(reply.count(false), added);
        }
        assert_eq!(zadd_args("xx 1 a").evaluate(None, 1), Ok(Change::Unchanged));
        assert_eq!(zadd_args("").evaluate(None, 1), Ok(Change::Unchanged));
        assert_eq!(CollectionOp::SetPop { count: 1 }.zadd_reply(None), Ok(None));
    }

    #[test]
    fn zadd_refuses_nan_whole() {
        let zset = build(&[zadd("", &[(f64::INFINITY, "a"), (1.0, "b")])]);
        let op = zadd("incr", &[(f64::NEG_INFINITY, "a")]);
        assert_eq!(
            op.evaluate(Some((Type::ZSet, &zset)), 1),
            Err(CollectionError::NotANumber)
        );
        assert_eq!(op.zadd_reply(Some(&zset)), Err(CollectionError::NotANumber));
        // -inf on a new member is just a score.
        assert!(matches!(
            zadd("incr", &[(f64::NEG_INFINITY, "c")]).evaluate(Some((Type::ZSet, &zset)), 1),
            Ok(Change::Put(_))
        ));
        let nan = zadd("", &[(1.0, "c"), (f64::NAN, "d")]);
        assert_eq!(nan.evaluate(None, 1), Err(CollectionError::NotANumber));
        assert_eq!(
            CollectionError::NotANumber.to_string(),
            "resulting score is not a number (NaN)"
        );
    }

    #[test]
    fn zsets_order_by_score_then_member_and_store_negative_zero_as_zero() {
        let zset = build(&[zadd(
            "",
            &[
                (1.0, "b"),
                (1.0, "a"),
                (-0.0, "z"),
                (f64::INFINITY, "i"),
                (f64::NEG_INFINITY, "n"),
            ],
        )]);
        let members: Vec<Bytes> = zset_of(&zset).into_iter().map(|(m, _)| m).collect();
        assert_eq!(members, bs(&["n", "z", "a", "b", "i"]));
        assert_eq!(
            zset_range(&zset, -2, -1),
            Ok(entries(&[("b", 1.0), ("i", f64::INFINITY)]))
        );
        assert_eq!(zset_range(&zset, 1, 1), Ok(entries(&[("z", 0.0)])));
        assert_eq!(zset_range(&zset, 5, 10), Ok(Vec::new()));
        assert_eq!(
            zset_range(&zset, -100, 0),
            Ok(entries(&[("n", f64::NEG_INFINITY)]))
        );
        let zero = zset_score(&zset, b"z").unwrap().unwrap();
        assert!(zero == 0.0 && zero.is_sign_positive());
        assert_eq!(zset_score(&zset, b"q"), Ok(None));
        assert_eq!(
            build(&[zadd("", &[(-0.0, "m")])]),
            build(&[zadd("", &[(0.0, "m")])])
        );
        assert_eq!(
            zadd("", &[(-0.0, "z")]).evaluate(Some((Type::ZSet, &zset)), 1),
            Ok(Change::Unchanged)
        );
        assert_eq!(validate(Type::ZSet, &zset), Ok(()));
    }

    #[test]
    fn zpop_and_zrem_take_from_the_right_places() {
        let mut key = Some(build(&[zadd(
            "",
            &[(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "d"), (5.0, "e")],
        )]));
        let zpop = |max, count| CollectionOp::ZPop { max, count };
        let before = key.clone();
        run(&mut key, &zpop(false, 2)).unwrap();
        assert_eq!(
            zset_popped(before.as_ref(), key.as_deref(), false),
            Ok(entries(&[("a", 1.0), ("b", 2.0)]))
        );
        let before = key.clone();
        run(&mut key, &zpop(true, 2)).unwrap();
        assert_eq!(
            zset_popped(before.as_ref(), key.as_deref(), true),
            Ok(entries(&[("e", 5.0), ("d", 4.0)])),
            "ZPOPMAX replies the highest first"
        );
        assert_eq!(zset_of(key.as_ref().unwrap()), entries(&[("c", 3.0)]));
        assert_eq!(run(&mut key, &zpop(true, 0)), Ok(Change::Unchanged));
        assert_eq!(run(&mut key, &zpop(true, 5)), Ok(Change::Delete));
        assert_eq!(run(&mut key, &zpop(true, 1)), Ok(Change::Unchanged));

        let mut key = Some(build(&[zadd("", &[(1.0, "a"), (2.0, "b"), (3.0, "c")])]));
        let zrem = |members: &[&str]| CollectionOp::ZRemove {
            members: bs(members),
        };
        run(&mut key, &zrem(&["b", "nope", "b"])).unwrap();
        assert_eq!(
            zset_of(key.as_ref().unwrap()),
            entries(&[("a", 1.0), ("c", 3.0)])
        );
        assert_eq!(run(&mut key, &zrem(&["nope"])), Ok(Change::Unchanged));
        assert_eq!(run(&mut key, &zrem(&["a", "c"])), Ok(Change::Delete));
    }

    #[test]
    fn scores_print_as_redis() {
        assert_eq!(format_score(f64::INFINITY), "inf");
        assert_eq!(format_score(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_score(1.5), "1.5");
        assert_eq!(format_score(3.0), "3");
        assert_eq!(format_score(-0.0), "0");
        assert_eq!(format_score(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn malformed_values_are_corrupt() {
        let items = |count: u32, items: &[&[u8]]| {
            let mut value = BytesMut::new();
            value.put_u32(count);
            for item in items {
                put_item(&mut value, item);
            }
            value.freeze()
        };
        assert_eq!(len(Some(&[0, 0, 1])), Err(Corrupt));
        assert_eq!(
            len(Some(&[0, 0, 0, 0])),
            Err(Corrupt),
            "empty is never stored"
        );
        let unsorted = items(2, &[b"b", b"a"]);
        assert_eq!(set_members(&unsorted), Err(Corrupt));
        assert_eq!(validate(Type::Set, &unsorted), Err(Corrupt));
        assert_eq!(
            sadd(&["c"]).evaluate(Some((Type::Set, &unsorted)), 1),
            Err(Corrupt)
        );
        assert_eq!(set_members(&items(2, &[b"a", b"a"])), Err(Corrupt));
        assert_eq!(set_members(&items(2, &[b"a", b"b", b"c"])), Err(Corrupt));
        assert_eq!(set_members(&items(3, &[b"a", b"b"])), Err(Corrupt));
        assert_eq!(set_members(&items(2, &[b"a", b"b"])), Ok(bs(&["a", "b"])));
        // A padded varint (1 written in two bytes) is not canonical.
        assert_eq!(
            set_members(&Bytes::from_static(&[0, 0, 0, 1, 0x81, 0, b'x'])),
            Err(Corrupt)
        );
        assert_eq!(
            set_members(&Bytes::from_static(&[0, 0, 0, 1, 1, b'x'])),
            Ok(bs(&["x"]))
        );
        // A list element whose lengths do not mirror.
        assert_eq!(
            list_range(&Bytes::from_static(&[0, 0, 0, 1, 1, b'x', 2]), 0, 0),
            Err(Corrupt)
        );
        let zset = |score: f64, member: &[u8], more: Option<(f64, &[u8])>| {
            let mut value = BytesMut::new();
            value.put_u32(1 + u32::from(more.is_some()));
            put_zset_entry(&mut value, score, member);
            if let Some((score, member)) = more {
                put_zset_entry(&mut value, score, member);
            }
            value.freeze()
        };
        assert_eq!(zset_range(&zset(f64::NAN, b"m", None), 0, -1), Err(Corrupt));
        assert_eq!(zset_range(&zset(-0.0, b"m", None), 0, -1), Err(Corrupt));
        assert_eq!(
            zset_range(&zset(2.0, b"m", Some((1.0, b"n"))), 0, -1),
            Err(Corrupt)
        );
        // The same member twice (in order by score) walks, but is not valid.
        let twice = zset(1.0, b"m", Some((2.0, b"m")));
        assert_eq!(zset_range(&twice, 0, -1).map(|e| e.len()), Ok(2));
        assert_eq!(validate(Type::ZSet, &twice), Err(Corrupt));
        assert_eq!(validate(Type::String, b""), Ok(()));
    }

    #[test]
    fn every_operation_survives_its_encoding() {
        let ops = [
            push(true, &["a", ""]),
            CollectionOp::Push {
                left: false,
                values: vec![Bytes::from(vec![7; 300])],
                only_if_exists: true,
                max_len: 1 << 40,
            },
            CollectionOp::Pop {
                left: false,
                count: u64::MAX,
            },
            sadd(&["x"]),
            CollectionOp::SetRemove {
                members: Vec::new(),
            },
            CollectionOp::SetPop { count: 3 },
            hset(&[("f", "v"), ("", "")]),
            CollectionOp::HashDelete { fields: bs(&["f"]) },
            CollectionOp::HashIncrBy {
                field: b("f"),
                by: i64::MIN,
                max_len: 0,
            },
            zadd("nx xx gt lt incr", &[(f64::NEG_INFINITY, "m"), (-0.5, "")]),
            CollectionOp::ZRemove {
                members: bs(&["m", "n"]),
            },
            CollectionOp::ZPop {
                max: true,
                count: 2,
            },
        ];
        for op in ops {
            let mut out = BytesMut::new();
            op.encode(&mut out);
            assert_eq!(CollectionOp::decode(&out), Ok(op.clone()), "{op:?}");
            for cut in 0..out.len() {
                assert!(
                    CollectionOp::decode(&out[..cut]).is_err(),
                    "{op:?} cut at {cut}"
                );
            }
            out.put_u8(0);
            assert_eq!(
                CollectionOp::decode(&out),
                Err(DecodeError("trailing bytes"))
            );
        }
        assert!(CollectionOp::decode(b"").is_err());
        assert!(CollectionOp::decode(b"?").is_err());
        assert!(
            CollectionOp::decode(&[POP, 0b10, 1]).is_err(),
            "unknown flag"
        );
        assert!(
            CollectionOp::decode(&[SET_POP, 0x81, 0]).is_err(),
            "padded varint"
        );
        assert_eq!(
            CollectionOp::decode(&[SET_POP, 0x81, 1]),
            Ok(CollectionOp::SetPop { count: 129 })
        );
        let mut nan = BytesMut::new();
        zadd("", &[(1.0, "m")]).encode(&mut nan);
        let at = nan.len() - 10;
        nan[at..at + 8].copy_from_slice(&f64::NAN.to_be_bytes());
        assert_eq!(CollectionOp::decode(&nan), Err(DecodeError("NaN score")));
    }

    // -----------------------------------------------------------------------
    // Properties.

    fn member() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            8 => vec(b'a'..b'e', 0..3),
            1 => vec(any::<u8>(), 120..300),
        ]
        .prop_map(Bytes::from)
    }

    fn score() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NEG_INFINITY),
            Just(f64::INFINITY),
            Just(-0.0),
            (-6i32..6).prop_map(|x| f64::from(x) / 2.0),
        ]
    }

    fn list_op() -> impl Strategy<Value = CollectionOp> {
        prop_oneof![
            (
                any::<bool>(),
                vec(member(), 0..5),
                prop::bool::weighted(0.2)
            )
                .prop_map(|(left, values, only_if_exists)| CollectionOp::Push {
                    left,
                    values,
                    only_if_exists,
                    max_len: MAX,
                }),
            (any::<bool>(), 0u64..4).prop_map(|(left, count)| CollectionOp::Pop { left, count }),
        ]
    }

    fn set_op() -> impl Strategy<Value = CollectionOp> {
        prop_oneof![
            2 => vec(member(), 0..5).prop_map(|members| CollectionOp::SetAdd { members, max_len: MAX }),
            1 => vec(member(), 0..4).prop_map(|members| CollectionOp::SetRemove { members }),
            1 => (0u64..4).prop_map(|count| CollectionOp::SetPop { count }),
        ]
    }

    fn hash_value() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            member(),
            (-5i64..5).prop_map(|i| Bytes::from(i.to_string())),
            Just(Bytes::from(i64::MAX.to_string())),
        ]
    }

    fn hash_op() -> impl Strategy<Value = CollectionOp> {
        prop_oneof![
            2 => vec((member(), hash_value()), 0..4).prop_map(|pairs| CollectionOp::HashSet { pairs, max_len: MAX }),
            1 => vec(member(), 0..4).prop_map(|fields| CollectionOp::HashDelete { fields }),
            1 => (member(), prop_oneof![-3i64..3, Just(i64::MAX), Just(i64::MIN)])
                .prop_map(|(field, by)| CollectionOp::HashIncrBy { field, by, max_len: MAX }),
        ]
    }

    fn zset_op() -> impl Strategy<Value = CollectionOp> {
        prop_oneof![
            3 => (any::<[bool; 5]>(), vec((score(), member()), 0..4)).prop_map(
                |([nx, xx, gt, lt, incr], pairs)| CollectionOp::ZAdd { nx, xx, gt, lt, incr, pairs, max_len: MAX }
            ),
            1 => vec(member(), 0..4).prop_map(|members| CollectionOp::ZRemove { members }),
            1 => (any::<bool>(), 0u64..4).prop_map(|(max, count)| CollectionOp::ZPop { max, count }),
        ]
    }

    fn any_op() -> impl Strategy<Value = CollectionOp> {
        prop_oneof![list_op(), set_op(), hash_op(), zset_op()]
    }

    /// `op` with its bound (if it has one) set to `max`.
    fn bounded(mut op: CollectionOp, max: u64) -> CollectionOp {
        match &mut op {
            CollectionOp::Push { max_len, .. }
            | CollectionOp::SetAdd { max_len, .. }
            | CollectionOp::HashSet { max_len, .. }
            | CollectionOp::HashIncrBy { max_len, .. }
            | CollectionOp::ZAdd { max_len, .. } => *max_len = max,
            _ => {}
        }
        op
    }

    /// Asserts what `change` says against whether the model changed.
    fn check_change<T: PartialEq>(
        change: &Change,
        was: &T,
        now: &T,
        now_empty: bool,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(matches!(change, Change::Unchanged), was == now);
        prop_assert_eq!(matches!(change, Change::Delete), now_empty && was != now);
        Ok(())
    }

    /// Redis's index range over a model of `n` elements, as a filter.
    fn model_ranks(n: usize, start: i64, stop: i64) -> Vec<usize> {
        let n = n as i64;
        let resolve = |i: i64| if i < 0 { i + n } else { i };
        (0..n)
            .filter(|&i| i >= resolve(start) && i <= resolve(stop))
            .map(|i| i as usize)
            .collect()
    }

    fn check_list(
        key: &Option<Bytes>,
        model: &VecDeque<Bytes>,
        probes: &[(i64, i64)],
    ) -> Result<(), TestCaseError> {
        let Some(value) = key else {
            prop_assert!(model.is_empty());
            return Ok(());
        };
        prop_assert_eq!(validate(Type::List, value), Ok(()));
        prop_assert_eq!(len(Some(value)), Ok(model.len() as u64));
        let all: Vec<Bytes> = model.iter().cloned().collect();
        prop_assert_eq!(list_range(value, 0, -1).unwrap(), all.clone());
        let backwards: Vec<&[u8]> = list_iter(value)
            .unwrap()
            .rev()
            .map(Result::unwrap)
            .collect();
        prop_assert_eq!(
            backwards,
            all.iter().rev().map(|v| &v[..]).collect::<Vec<_>>()
        );
        for &(start, stop) in probes {
            let expected: Vec<Bytes> = model_ranks(model.len(), start, stop)
                .into_iter()
                .map(|i| model[i].clone())
                .collect();
            prop_assert_eq!(list_range(value, start, stop).unwrap(), expected);
            let index = model_ranks(model.len(), start, start)
                .first()
                .map(|&i| model[i].clone());
            prop_assert_eq!(list_index(value, start).unwrap(), index);
        }
        let rebuilt = CollectionOp::Push {
            left: false,
            values: all,
            only_if_exists: false,
            max_len: MAX,
        };
        prop_assert_eq!(
            rebuilt.evaluate(None, 0),
            Ok(Change::Put(value.clone())),
            "canonical"
        );
        Ok(())
    }

    fn check_set(key: &Option<Bytes>, model: &BTreeSet<Bytes>) -> Result<(), TestCaseError> {
        let Some(value) = key else {
            prop_assert!(model.is_empty());
            return Ok(());
        };
        prop_assert_eq!(validate(Type::Set, value), Ok(()));
        prop_assert_eq!(len(Some(value)), Ok(model.len() as u64));
        let all: Vec<Bytes> = model.iter().cloned().collect();
        prop_assert_eq!(set_members(value).unwrap(), all.clone());
        for member in &all {
            prop_assert_eq!(set_contains(value, member), Ok(true));
        }
        for probe in [&b"ab"[..], b"e", b""] {
            prop_assert_eq!(set_contains(value, probe), Ok(model.contains(probe)));
        }
        let rebuilt = CollectionOp::SetAdd {
            members: all.into_iter().rev().collect(),
            max_len: MAX,
        };
        prop_assert_eq!(
            rebuilt.evaluate(None, 0),
            Ok(Change::Put(value.clone())),
            "canonical"
        );
        Ok(())
    }

    fn check_hash(
        key: &Option<Bytes>,
        model: &BTreeMap<Bytes, Bytes>,
    ) -> Result<(), TestCaseError> {
        let Some(value) = key else {
            prop_assert!(model.is_empty());
            return Ok(());
        };
        prop_assert_eq!(validate(Type::Hash, value), Ok(()));
        prop_assert_eq!(len(Some(value)), Ok(model.len() as u64));
        let all: Vec<(Bytes, Bytes)> = model.iter().map(|(f, v)| (f.clone(), v.clone())).collect();
        prop_assert_eq!(hash_pairs(value).unwrap(), all.clone());
        for (field, v) in &all {
            prop_assert_eq!(hash_get(value, field), Ok(Some(v.clone())));
        }
        prop_assert_eq!(hash_get(value, b"e"), Ok(model.get(&b"e"[..]).cloned()));
        let rebuilt = CollectionOp::HashSet {
            pairs: all.into_iter().rev().collect(),
            max_len: MAX,
        };
        prop_assert_eq!(
            rebuilt.evaluate(None, 0),
            Ok(Change::Put(value.clone())),
            "canonical"
        );
        Ok(())
    }

    /// The model's entries in Redis's order (by `<` on scores, not the
    /// encoding's `total_cmp`).
    fn ordered(model: &BTreeMap<Bytes, f64>) -> Vec<(Bytes, f64)> {
        let mut all: Vec<(Bytes, f64)> = model.iter().map(|(m, s)| (m.clone(), *s)).collect();
        all.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap().then_with(|| a.0.cmp(&b.0)));
        all
    }

    /// `ZADD` on a map, as Redis's `zsetAdd` loop reads.
    #[allow(clippy::too_many_arguments)]
    fn model_zadd(
        model: &mut BTreeMap<Bytes, f64>,
        nx: bool,
        xx: bool,
        gt: bool,
        lt: bool,
        incr: bool,
        pairs: &[(f64, Bytes)],
    ) -> Result<ZAddReply> {
        let mut next = model.clone();
        let mut reply = ZAddReply::default();
        for (score, member) in pairs {
            reply.score = None;
            match next.get(member).copied() {
                Some(_) if nx => {}
                Some(current) => {
                    let new = if incr { current + score } else { *score };
                    if new.is_nan() {
                        return Err(CollectionError::NotANumber);
                    }
                    if (lt && new >= current) || (gt && new <= current) {
                        continue;
                    }
                    reply.score = Some(new + 0.0);
                    if new != current {
                        next.insert(member.clone(), new + 0.0);
                        reply.updated += 1;
                    }
                }
                None if xx => {}
                None => {
                    next.insert(member.clone(), score + 0.0);
                    reply.added += 1;
                    reply.score = Some(score + 0.0);
                }
            }
        }
        *model = next;
        Ok(reply)
    }

    fn check_zset(
        key: &Option<Bytes>,
        model: &BTreeMap<Bytes, f64>,
        probes: &[(i64, i64)],
    ) -> Result<(), TestCaseError> {
        let Some(value) = key else {
            prop_assert!(model.is_empty());
            return Ok(());
        };
        prop_assert_eq!(validate(Type::ZSet, value), Ok(()));
        prop_assert_eq!(len(Some(value)), Ok(model.len() as u64));
        let all = ordered(model);
        let stored = zset_range(value, 0, -1).unwrap();
        prop_assert_eq!(&stored, &all);
        prop_assert!(
            stored
                .iter()
                .all(|(_, s)| s.is_sign_positive() || *s != 0.0),
            "no -0.0"
        );
        for (member, score) in &all {
            prop_assert_eq!(zset_score(value, member), Ok(Some(*score)));
        }
        for &(start, stop) in probes {
            let expected: Vec<(Bytes, f64)> = model_ranks(all.len(), start, stop)
                .into_iter()
                .map(|i| all[i].clone())
                .collect();
            prop_assert_eq!(zset_range(value, start, stop).unwrap(), expected);
        }
        let rebuilt = CollectionOp::ZAdd {
            nx: false,
            xx: false,
            gt: false,
            lt: false,
            incr: false,
            pairs: all.into_iter().rev().map(|(m, s)| (s, m)).collect(),
            max_len: MAX,
        };
        prop_assert_eq!(
            rebuilt.evaluate(None, 0),
            Ok(Change::Put(value.clone())),
            "canonical"
        );
        Ok(())
    }

    /// Every read and every operation on `value`, whatever it holds: errors
    /// are fine, panics are not.
    fn exercise(value: &Bytes, op: &CollectionOp, offset: i64) {
        for ty in Type::ALL {
            let _ = validate(ty, value);
        }
        let _ = len(Some(value));
        let _ = list_range(value, 0, -1);
        let _ = list_range(value, -3, 2);
        let _ = list_index(value, -2);
        if let Ok(iter) = list_iter(value) {
            let _ = iter.rev().count();
        }
        let _ = set_members(value);
        let _ = set_contains(value, b"b");
        let _ = hash_pairs(value);
        let _ = hash_get(value, b"b");
        let _ = zset_range(value, -2, -1);
        let _ = zset_score(value, b"b");
        let _ = list_popped(Some(value), None, false);
        let _ = set_difference(Some(value), Some(value));
        let _ = zset_popped(Some(value), Some(b"\0\0\0\x01"), true);
        let _ = op.zadd_reply(Some(value));
        let _ = op.evaluate(Some((op.result_type(), value)), offset);
    }

    proptest! {
        #[test]
        fn lists_agree_with_a_vecdeque(
            ops in vec(list_op(), 1..30),
            probes in vec((-8i64..8, -8i64..8), 4),
        ) {
            let mut key = None;
            let mut model: VecDeque<Bytes> = VecDeque::new();
            for op in &ops {
                let (before, was) = (key.clone(), model.clone());
                let change = run(&mut key, op).unwrap();
                match op {
                    CollectionOp::Push { left, values, only_if_exists, .. } => {
                        if !(*only_if_exists && model.is_empty()) {
                            for v in values {
                                if *left { model.push_front(v.clone()) } else { model.push_back(v.clone()) }
                            }
                        }
                        prop_assert_eq!(len(key.as_deref()), Ok(model.len() as u64), "the reply");
                    }
                    CollectionOp::Pop { left, count } => {
                        let popped: Vec<Bytes> = (0..*count)
                            .filter_map(|_| if *left { model.pop_front() } else { model.pop_back() })
                            .collect();
                        prop_assert_eq!(list_popped(before.as_ref(), key.as_deref(), *left), Ok(popped));
                    }
                    _ => unreachable!(),
                }
                check_change(&change, &was, &model, model.is_empty())?;
                check_list(&key, &model, &probes)?;
            }
        }

        #[test]
        fn sets_agree_with_a_btreeset(ops in vec(set_op(), 1..30)) {
            let mut key = None;
            let mut model: BTreeSet<Bytes> = BTreeSet::new();
            for (step, op) in ops.iter().enumerate() {
                let offset = step as i64 * 1_000_003;
                let (before, was) = (key.clone(), model.clone());
                let change = run_at(&mut key, op, offset).unwrap();
                match op {
                    CollectionOp::SetAdd { members, .. } => model.extend(members.iter().cloned()),
                    CollectionOp::SetRemove { members } => {
                        for member in members {
                            model.remove(member);
                        }
                        let removed: Vec<Bytes> = was.difference(&model).cloned().collect();
                        prop_assert_eq!(set_difference(before.as_ref(), key.as_deref()), Ok(removed));
                    }
                    CollectionOp::SetPop { count } => {
                        let popped = set_difference(before.as_ref(), key.as_deref()).unwrap();
                        prop_assert_eq!(popped.len() as u64, (*count).min(was.len() as u64));
                        for member in &popped {
                            prop_assert!(model.remove(member), "popped a member it had");
                        }
                        let again = op.evaluate(before.as_ref().map(|v| (Type::Set, v)), offset);
                        prop_assert_eq!(again, Ok(change.clone()), "same offset, same pick");
                    }
                    _ => unreachable!(),
                }
                check_change(&change, &was, &model, model.is_empty())?;
                check_set(&key, &model)?;
            }
        }

        #[test]
        fn hashes_agree_with_a_btreemap(ops in vec(hash_op(), 1..30)) {
            let mut key = None;
            let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
            for op in &ops {
                let (before, was) = (key.clone(), model.clone());
                let result = run(&mut key, op);
                let expected_error = match op {
                    CollectionOp::HashSet { pairs, .. } => {
                        model.extend(pairs.iter().cloned());
                        None
                    }
                    CollectionOp::HashDelete { fields } => {
                        for field in fields {
                            model.remove(field);
                        }
                        None
                    }
                    CollectionOp::HashIncrBy { field, by, .. } => {
                        match model.get(field).map_or(Some(0), |v| parse_i64(v)) {
                            None => Some(CollectionError::NotAnInteger),
                            Some(current) => match current.checked_add(*by) {
                                None => Some(CollectionError::Overflow),
                                Some(sum) => {
                                    model.insert(field.clone(), Bytes::from(sum.to_string()));
                                    None
                                }
                            },
                        }
                    }
                    _ => unreachable!(),
                };
                match expected_error {
                    Some(error) => {
                        prop_assert_eq!(result, Err(error));
                        prop_assert_eq!(&key, &before, "an error changes nothing");
                    }
                    None => check_change(&result.unwrap(), &was, &model, model.is_empty())?,
                }
                check_hash(&key, &model)?;
            }
        }

        #[test]
        fn zsets_agree_with_a_model(
            ops in vec(zset_op(), 1..30),
            probes in vec((-6i64..6, -6i64..6), 3),
        ) {
            let mut key = None;
            let mut model: BTreeMap<Bytes, f64> = BTreeMap::new();
            for op in &ops {
                let (before, was) = (key.clone(), model.clone());
                let result = run(&mut key, op);
                match op {
                    CollectionOp::ZAdd { nx, xx, gt, lt, incr, pairs, .. } => {
                        let expected = model_zadd(&mut model, *nx, *xx, *gt, *lt, *incr, pairs);
                        prop_assert_eq!(op.zadd_reply(before.as_deref()), expected.map(Some));
                        if let Err(error) = expected {
                            prop_assert_eq!(result, Err(error));
                            prop_assert_eq!(&key, &before);
                            continue;
                        }
                    }
                    CollectionOp::ZRemove { members } => {
                        for member in members {
                            model.remove(member);
                        }
                    }
                    CollectionOp::ZPop { max, count } => {
                        let all = ordered(&model);
                        let n = (*count).min(all.len() as u64) as usize;
                        let popped: Vec<(Bytes, f64)> = if *max {
                            all.iter().rev().take(n).cloned().collect()
                        } else {
                            all.iter().take(n).cloned().collect()
                        };
                        for (member, _) in &popped {
                            model.remove(member);
                        }
                        prop_assert_eq!(zset_popped(before.as_ref(), key.as_deref(), *max), Ok(popped));
                    }
                    _ => unreachable!(),
                }
                // Scores compared by bits: -0.0 never appears in either.
                let bits = |m: &BTreeMap<Bytes, f64>| m.iter().map(|(k, s)| (k.clone(), s.to_bits())).collect::<Vec<_>>();
                check_change(&result.unwrap(), &bits(&was), &bits(&model), model.is_empty())?;
                check_zset(&key, &model, &probes)?;
            }
        }

        #[test]
        fn operations_survive_their_encoding(op in any_op(), max in any::<u64>()) {
            let op = bounded(op, max);
            let mut out = BytesMut::new();
            op.encode(&mut out);
            prop_assert_eq!(CollectionOp::decode(&out), Ok(op.clone()));
            for cut in 0..out.len() {
                prop_assert!(CollectionOp::decode(&out[..cut]).is_err());
            }
            out.put_u8(0);
            prop_assert!(CollectionOp::decode(&out).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64), op in any_op(), offset in any::<i64>()) {
            let _ = CollectionOp::decode(&bytes);
            exercise(&Bytes::from(bytes), &op, offset);
        }

        #[test]
        fn damaged_values_never_panic(
            ops in prop_oneof![vec(list_op(), 1..8), vec(set_op(), 1..8), vec(hash_op(), 1..8), vec(zset_op(), 1..8)],
            at in any::<Index>(),
            byte in any::<u8>(),
            op in any_op(),
        ) {
            let mut key = None;
            for op in &ops {
                let _ = run(&mut key, op);
            }
            if let Some(value) = key {
                let mut flipped = value.to_vec();
                let i = at.index(flipped.len());
                flipped[i] = byte;
                exercise(&Bytes::from(flipped), &op, 3);
                exercise(&value.slice(..i), &op, 3);
                // A damaged op record is refused or read, never a panic.
                let mut encoded = BytesMut::new();
                op.encode(&mut encoded);
                let j = at.index(encoded.len());
                encoded[j] = byte;
                let _ = CollectionOp::decode(&encoded);
            }
        }
    }
}
