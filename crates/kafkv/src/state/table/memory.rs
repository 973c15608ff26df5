//! The memory backend: every live key and value in this process's heap, at
//! a fixed overhead of about 45 bytes per key beyond one allocation holding
//! the key and value bytes (see docs/design.md, "Memory"), and 12 bytes more
//! for a key with an expiry (docs/expiry.md, "Memory").
//!
//! Layout: entries live in a slab (`slots`), each one allocation of
//! key ‖ value plus where it sits in the log. Two indexes refer to entries by
//! their 4-byte slot id instead of holding keys again: a hash table for point
//! reads (the hot path) and [`SortedIds`] for ordered scans. A slot id is
//! stable for as long as its key is live, which is what the `SCAN` cursor
//! relies on ([`MemoryTable::slots_from`]).
//!
//! Expiries live in [`Expiries`], a dense slab of (expiry, slot id) pairs
//! that only volatile keys have an entry in; a slot points at its entry
//! through a 4-byte field that packing the log position into 8 bytes left
//! free, so a slot stays 32 bytes with or without an expiry.

use std::{
    hash::BuildHasher,
    ops::Bound,
    sync::atomic::{AtomicI64, Ordering},
};

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::{RwLock, RwLockReadGuard};

use super::{Due, Live, StateError, Table, Versioned, sorted::SortedIds};
use crate::{collection::Type, record::Record};

/// One live entry: a single allocation of key ‖ value, and where it sits in
/// the log.
#[derive(Debug)]
struct Slot {
    data: Box<[u8]>,
    /// The key's length in the low [`KEY_LEN_BITS`], the value's type
    /// ([`Type::code`]) above: a type costs no byte of its own.
    key_len_and_type: u32,
    /// 0: no expiry. Otherwise 1 + the index of this slot's entry in
    /// [`Expiries`] (invariant E1 there).
    exp: u32,
    /// The partition in the top [`PARTITION_BITS`], the offset below
    /// ([`pack`]).
    pos: u64,
}

// A slot is 32 bytes, and a free one (`None`) costs nothing more: the box's
// non-null pointer is the niche. Adding the expiry must not change either.
const _: () = assert!(size_of::<Slot>() == 32);
const _: () = assert!(size_of::<Option<Slot>>() == 32);

/// Bits of [`Slot::key_len_and_type`] holding the key's length (keys up to
/// 512 MiB, Redis's own bound); the type has the rest.
const KEY_LEN_BITS: u32 = 29;
const _: () = assert!(Type::ZSet as u32 >> (u32::BITS - KEY_LEN_BITS) == 0);

/// Bits of [`Slot::pos`] holding the offset; the partition has the rest.
const OFFSET_BITS: u32 = 48;
const PARTITION_BITS: u32 = u64::BITS - OFFSET_BITS;

/// Packs a record's position into [`Slot::pos`]: at most 65,536 partitions
/// and offsets below 2^48 (a topic written at a million records a second
/// for eight years), checked by [`check_position`] before anything is
/// applied.
fn pack(partition: i32, offset: i64) -> u64 {
    debug_assert!(position_fits(partition, offset));
    ((partition as u64) << OFFSET_BITS) | offset as u64
}

fn position_fits(partition: i32, offset: i64) -> bool {
    (0..1 << PARTITION_BITS).contains(&i64::from(partition))
        && (0..1 << OFFSET_BITS).contains(&offset)
}

/// Panics with what went wrong if the table cannot hold a record at this
/// position.
fn check_position(partition: i32, offset: i64) {
    assert!(
        position_fits(partition, offset),
        "the memory state holds partitions 0..{} and offsets below 2^{OFFSET_BITS}, not \
         partition {partition} offset {offset}; use --state disk for this topic",
        1u64 << PARTITION_BITS,
    );
}

impl Slot {
    fn key_len(&self) -> usize {
        (self.key_len_and_type & ((1 << KEY_LEN_BITS) - 1)) as usize
    }

    fn key(&self) -> &[u8] {
        &self.data[..self.key_len()]
    }

    fn value(&self) -> &[u8] {
        &self.data[self.key_len()..]
    }

    fn ty(&self) -> Type {
        Type::from_code((self.key_len_and_type >> KEY_LEN_BITS) as u8)
            .expect("only Slot::new packs a type")
    }

    fn partition(&self) -> i32 {
        (self.pos >> OFFSET_BITS) as i32
    }

    fn offset(&self) -> i64 {
        (self.pos & ((1 << OFFSET_BITS) - 1)) as i64
    }
}

/// The memory backend.
///
/// Its lock is only ever taken while the view's lock is held (shared to read,
/// exclusive to [`install`](Table::install)), so it is never contended; it
/// exists because the table is reached through `&self`.
#[derive(Debug, Default)]
pub(crate) struct MemoryTable {
    entries: RwLock<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// `None` marks a free slot; its id is on `free`.
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Point lookups by key hash; holds slot ids, and rehashes from the keys.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    sorted: SortedIds,
    live: usize,
    /// The expiries of the live slots that have one.
    expiries: Expiries,
}

impl Table for MemoryTable {
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError> {
        let entries = self.entries.read();
        Ok(entries.get(key).map(|slot| Versioned {
            value: Bytes::copy_from_slice(slot.value()),
            partition: slot.partition(),
            offset: slot.offset(),
            expires_at: entries.expiries.of(slot),
            ty: slot.ty(),
        }))
    }

    fn contains(&self, key: &[u8]) -> Result<bool, StateError> {
        Ok(self.entries.read().get(key).is_some())
    }

    fn len(&self) -> usize {
        self.entries.read().live
    }

    fn visit(
        &self,
        lower: Bound<&[u8]>,
        visit: &mut dyn FnMut(Live<'_>) -> bool,
    ) -> Result<(), StateError> {
        let entries = self.entries.read();
        for slot in entries.range_from(lower) {
            let live = Live {
                key: slot.key().into(),
                value: slot.value().into(),
                partition: slot.partition(),
                offset: slot.offset(),
                expires_at: entries.expiries.of(slot),
                ty: slot.ty(),
            };
            if !visit(live) {
                break;
            }
        }
        Ok(())
    }

    /// The cursor is the slot id.
    fn cursor_page(
        &self,
        cursor: u64,
        count: usize,
        now: i64,
    ) -> Result<(Vec<Bytes>, Option<u64>), StateError> {
        let entries = self.entries.read();
        let from = usize::try_from(cursor).unwrap_or(usize::MAX);
        let mut slots = entries.slots_from(from);
        let page = slots
            .by_ref()
            .take(count)
            .filter(|(_, slot)| !entries.is_expired(slot, now))
            .map(|(_, slot)| Bytes::copy_from_slice(slot.key()))
            .collect();
        Ok((page, slots.next().map(|(id, _)| id as u64)))
    }

    fn cursor_bound(&self) -> Result<u64, StateError> {
        Ok(self.entries.read().slots.len() as u64)
    }

    fn key_at(&self, cursor: u64, now: i64) -> Result<Option<Bytes>, StateError> {
        let entries = self.entries.read();
        let Ok(id) = usize::try_from(cursor) else {
            return Ok(None);
        };
        let slot = entries.slots.get(id);
        Ok(slot
            .and_then(Option::as_ref)
            .filter(|slot| !entries.is_expired(slot, now))
            .map(|slot| Bytes::copy_from_slice(slot.key())))
    }

    /// The total is the slab's length; the expired ones are counted in the
    /// blocks whose floor is at or before `now` (none while the sweeper
    /// keeps up, so then this only reads one floor per 64 volatile keys),
    /// a whole block at once where its ceiling is too (a bulk expiry: a
    /// million expired keys are counted in 15,625 steps).
    /// The walk lets writers in as [`walk_blocks`] says, so a count taken
    /// while an install runs (the sweeper's gauge) is of a slab that changed
    /// while it was counted; `View::len` holds the view's lock, which every
    /// install needs, so its count is exact.
    fn volatile_counts(&self, now: i64) -> Result<(usize, usize), StateError> {
        let mut entries = self.entries.read();
        let mut expired = 0;
        walk_blocks(&mut entries, |block| {
            if block.ceiling() <= now {
                expired += block.at.len();
            } else if block.floor() <= now {
                block.walk(|at, _| expired += usize::from(at <= now));
            }
            true
        });
        Ok((entries.expiries.len, expired))
    }

    /// The cursor is `(expires_at, slot id)`, and entries come in that order.
    /// The slab is in no time order, so this walks every block whose floor
    /// is at or before `upto` and keeps the `limit` smallest candidates;
    /// once it holds `limit`, the largest of them bounds the rest of the
    /// walk. From the start (no cursor) the walk stops once it holds
    /// `limit` candidates: when more than `limit` are due (a bulk expiry, a
    /// million at once) the call returns the earliest of those in the first
    /// blocks of the slab, not of all, so that each call costs about
    /// `limit` entries, not the backlog (walking a million per sweeper tick
    /// took a third of a core per instance). Those swept leave the slab, so
    /// the next calls reach the rest. The walk also lets writers in between
    /// groups of blocks ([`walk_blocks`]), and the candidates are checked
    /// against the slab as it is at the end: one swept, rewritten or moved
    /// meanwhile is left out (a later call finds a moved one), so a call
    /// may return fewer than `limit` while more are due.
    fn due(
        &self,
        upto: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<Due>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut entries = self.entries.read();
        let mut found: Vec<(i64, u32)> = Vec::with_capacity(limit.min(1024));
        // Every candidate still wanted is below `cut` (the `limit`-th
        // smallest found so far, when more than `limit` were found).
        let mut cut: Option<(i64, u32)> = None;
        let spill = limit.saturating_mul(2);
        walk_blocks(&mut entries, |block| {
            if block.floor() > cut.map_or(upto, |(at, _)| at.min(upto)) {
                return true;
            }
            block.walk(|at, id| {
                let wanted = at <= upto
                    && after.is_none_or(|after| (at, u64::from(id)) > after)
                    && cut.is_none_or(|cut| (at, id) < cut);
                if !wanted {
                    return;
                }
                found.push((at, id));
                if found.len() >= spill {
                    let (_, largest, _) = found.select_nth_unstable(limit - 1);
                    cut = Some(*largest);
                    found.truncate(limit);
                }
            });
            // From the start, a backlog of more than `limit` is not sorted
            // through (see above).
            after.is_some() || found.len() < limit
        });
        // Still live with the same expiry (see above).
        found.retain(|&(at, id)| {
            entries
                .slots
                .get(id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|slot| entries.expiries.of(slot) == Some(at))
        });
        found.sort_unstable();
        found.truncate(limit);
        Ok(found
            .into_iter()
            .map(|(at, id)| {
                let slot = slot(&entries.slots, id);
                Due {
                    key: Bytes::copy_from_slice(slot.key()),
                    partition: slot.partition(),
                    expires_at: at,
                    cursor: (at, u64::from(id)),
                }
            })
            .collect())
    }

    /// Nothing to persist.
    fn commit(&self, _: &[&Record], _: &[i64], _: &[Option<bool>]) -> Result<(), StateError> {
        Ok(())
    }

    /// Panics before applying anything if a record to keep lies outside
    /// what a slot's position can hold ([`pack`]).
    fn install(&self, records: Vec<Record>, visible: &[bool]) {
        for record in records.iter().filter(|record| !record.is_tombstone()) {
            check_position(record.partition, record.offset);
        }
        let mut entries = self.entries.write();
        for (record, visible) in records.into_iter().zip(visible) {
            entries.apply(record, *visible);
        }
    }

    fn sync(&self) -> Result<(), StateError> {
        Ok(())
    }

    #[cfg(test)]
    fn overhead_bytes(&self) -> usize {
        self.entries.read().overhead_bytes()
    }
}

impl Entries {
    fn get(&self, key: &[u8]) -> Option<&Slot> {
        self.get_id(key).map(|id| slot(&self.slots, id))
    }

    fn get_id(&self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |id| slot(&self.slots, *id).key() == key)
            .copied()
    }

    fn is_expired(&self, slot: &Slot, now: i64) -> bool {
        self.expiries.of(slot).is_some_and(|at| at <= now)
    }

    /// Applies one record: a value replaces the key's entry in place (same
    /// slot id), a tombstone frees it. A new key takes a free slot, unless
    /// `visible` (it was already readable, through the overlay of
    /// acknowledged writes): then it takes a slot past every cursor handed
    /// out, so a SCAN that began while it was readable cannot pass it by.
    /// The entry's expiry becomes the record's.
    fn apply(&mut self, record: Record, visible: bool) {
        let Entries {
            slots,
            free,
            index,
            hasher,
            sorted,
            live,
            expiries,
        } = self;
        let expires_at = record.expires_at;
        let hash = hasher.hash_one(record.key());
        let found = index.find(hash, |id| slot(slots, *id).key() == record.key());
        match (found.copied(), record.is_tombstone()) {
            (Some(id), false) => {
                let entry = slots[id as usize]
                    .as_mut()
                    .expect("indexes hold live slots");
                // The new slot takes over the old one's expiry entry, then
                // sets it to the record's.
                let exp = entry.exp;
                *entry = Slot::new(record);
                entry.exp = exp;
                expiries.set(slots, id, expires_at);
            }
            (None, false) => {
                let entry = Slot::new(record);
                let recycled = if visible { None } else { free.pop() };
                let id = match recycled {
                    Some(id) => id,
                    None => {
                        slots.push(None);
                        u32::try_from(slots.len() - 1).expect("fewer than 2^32 keys")
                    }
                };
                sorted.insert(id, entry.key(), |id| slot(slots, id).key());
                slots[id as usize] = Some(entry);
                index.insert_unique(hash, id, |id| hasher.hash_one(slot(slots, *id).key()));
                *live += 1;
                expiries.set(slots, id, expires_at);
            }
            (Some(id), true) => {
                // Drop the expiry entry first: a free slot has none (E1).
                expiries.set(slots, id, None);
                sorted.remove(record.key(), |id| slot(slots, id).key());
                index
                    .find_entry(hash, |other| *other == id)
                    .expect("indexed")
                    .remove();
                slots[id as usize] = None;
                free.push(id);
                *live -= 1;
            }
            (None, true) => {}
        }
    }

    /// Live entries in key order from `lower` on.
    fn range_from<'s>(&'s self, lower: Bound<&[u8]>) -> impl Iterator<Item = &'s Slot> {
        let slots = &self.slots;
        self.sorted
            .range_from(lower, |id| slot(slots, id).key())
            .map(|id| slot(slots, id))
    }

    /// Live entries by slot id from `from` on, with their ids.
    fn slots_from(&self, from: usize) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .skip(from)
            .filter_map(|(id, entry)| entry.as_ref().map(|entry| (id, entry)))
    }

    /// Heap bytes this table holds beyond the entries' own allocations.
    #[cfg(test)]
    fn overhead_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<Slot>>()
            + self.free.capacity() * size_of::<u32>()
            + self.index.capacity() * (size_of::<u32>() + 1)
            + self.sorted.heap_bytes()
            + self.expiries.heap_bytes()
    }
}

/// The live entry in slot `id`; the indexes only ever hold live ids.
fn slot(slots: &[Option<Slot>], id: u32) -> &Slot {
    slots[id as usize]
        .as_ref()
        .expect("indexes hold live slots")
}

impl Slot {
    /// The record's entry, without an expiry yet. The caller checked the
    /// position ([`check_position`]).
    fn new(record: Record) -> Self {
        let pos = pack(record.partition, record.offset);
        let ty = record.ty;
        let (data, key_len) = record.into_data();
        assert!(
            key_len < 1 << KEY_LEN_BITS,
            "the memory state holds keys below 512 MiB, not one of {key_len} bytes"
        );
        Slot {
            data,
            key_len_and_type: key_len | u32::from(ty.code()) << KEY_LEN_BITS,
            exp: 0,
            pos,
        }
    }
}

/// Entries per chunk of [`Expiries`]: the slab grows and shrinks a chunk at
/// a time, so its slack is at most one chunk (48 KiB) instead of the half a
/// doubling vector can leave unused.
const CHUNK: usize = 4096;

/// Blocks walked under the shared lock before a waiting writer is let in:
/// 1,024 entries, a few microseconds. A walk over every expired entry of a
/// bulk expiry (a million) takes milliseconds; holding the lock that long
/// kept the consumer's install waiting, and behind it every read (the lock
/// is fair), which put GET p99 at 3 to 5 ms during a bulk sweep.
const WALK_GROUP: usize = 16;

/// Calls `visit` for every non-empty block in slab order until it returns
/// `false`, letting a waiting writer take the lock (`bump`) after each
/// [`WALK_GROUP`] blocks. The slab may change at those points: the walk
/// goes on by block index, so an entry moved meanwhile (a swap-remove
/// fills holes from the end) may be visited twice or not at all, and one
/// added may be visited.
fn walk_blocks(
    entries: &mut RwLockReadGuard<'_, Entries>,
    mut visit: impl FnMut(Block<'_>) -> bool,
) {
    let mut next = 0;
    loop {
        let expiries = &entries.expiries;
        let blocks = expiries.len.div_ceil(BLOCK);
        if next >= blocks {
            return;
        }
        let end = blocks.min(next + WALK_GROUP);
        for b in next..end {
            if !visit(expiries.block(b)) {
                return;
            }
        }
        next = end;
        RwLockReadGuard::bump(entries);
    }
}

/// Entries per block: the unit that walks over [`Expiries`] skip by floor.
/// A floor and a ceiling (8 bytes each) per 64 entries cost 1/4 byte per
/// volatile key.
const BLOCK: usize = 64;

/// The expiries of the volatile keys: 12 bytes for each (an `i64` expiry and
/// a `u32` slot id, in parallel arrays so no padding is paid), and nothing
/// for a key without one.
///
/// The slab is in no time order: `due` and `volatile_counts` find the
/// expired entries by walking blocks, and skip every block whose *floor*, a
/// lower bound of its expiries, is later than what they look for. Walking a
/// whole block tightens its floor to the exact minimum, so once the sweeper
/// has removed what was due, its next call makes the floors exact again and
/// the walks skip almost everything.
///
/// Invariants:
/// - **E1.** Entries `0..len` are exactly the live slots with an expiry:
///   entry `i` names slot `ids[i]`, and that slot's `exp` is `i + 1`. Every
///   other slot (free ones included) has `exp == 0`.
/// - **E2.** Dense: chunk `c` holds entries `c·CHUNK..`, every chunk but the
///   last non-empty one is full, and at most one empty chunk follows it (a
///   spare, so a count moving back and forth across a chunk boundary does
///   not allocate each time). Each chunk's vectors have capacity `CHUNK`
///   and are never reallocated.
/// - **E3.** The floor of every non-empty block is at most each of its
///   expiries. Anything that puts an expiry into a block lowers the floor to
///   it; a floor only rises when a walk sets it to the block's exact minimum
///   ([`Block::walk`], under the shared lock: concurrent walks compute the
///   same value) or when its block empties.
/// - **E4.** Likewise the ceiling of every non-empty block is at least each
///   of its expiries: raised by what enters, lowered only to the exact
///   maximum by a walk or when the block empties. A block whose ceiling has
///   passed is expired whole, and is counted without a walk.
#[derive(Debug, Default)]
struct Expiries {
    chunks: Vec<Chunk>,
    len: usize,
}

/// A block of [`Expiries`], as a walk sees it.
struct Block<'a> {
    at: &'a [i64],
    ids: &'a [u32],
    floor: &'a AtomicI64,
    ceiling: &'a AtomicI64,
}

impl Block<'_> {
    /// At most every expiry in the block (E3).
    fn floor(&self) -> i64 {
        self.floor.load(Ordering::Relaxed)
    }

    /// At least every expiry in the block (E4).
    fn ceiling(&self) -> i64 {
        self.ceiling.load(Ordering::Relaxed)
    }

    /// Calls `each(expires_at, slot id)` for every entry, and tightens the
    /// floor and the ceiling to their minimum and maximum.
    fn walk(&self, mut each: impl FnMut(i64, u32)) {
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for (&at, &id) in self.at.iter().zip(self.ids) {
            min = min.min(at);
            max = max.max(at);
            each(at, id);
        }
        self.floor.store(min, Ordering::Relaxed);
        self.ceiling.store(max, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Chunk {
    at: Vec<i64>,
    ids: Vec<u32>,
    /// One per block. Atomic so that readers, under the shared lock, can
    /// tighten them (E3, E4); `Relaxed` suffices, as the lock orders them
    /// against every write to the chunk.
    floors: Box<[AtomicI64]>,
    ceilings: Box<[AtomicI64]>,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            at: Vec::with_capacity(CHUNK),
            ids: Vec::with_capacity(CHUNK),
            floors: (0..CHUNK / BLOCK)
                .map(|_| AtomicI64::new(i64::MAX))
                .collect(),
            ceilings: (0..CHUNK / BLOCK)
                .map(|_| AtomicI64::new(i64::MIN))
                .collect(),
        }
    }

    /// Widens the bounds of the block holding position `j` to `at` if
    /// needed: lowers its floor, raises its ceiling.
    fn widen_bounds(&mut self, j: usize, at: i64) {
        let floor = self.floors[j / BLOCK].get_mut();
        *floor = (*floor).min(at);
        let ceiling = self.ceilings[j / BLOCK].get_mut();
        *ceiling = (*ceiling).max(at);
    }
}

impl Expiries {
    /// `slot`'s expiry.
    fn of(&self, slot: &Slot) -> Option<i64> {
        let i = slot.exp.checked_sub(1)? as usize;
        Some(self.chunks[i / CHUNK].at[i % CHUNK])
    }

    /// Sets (or clears) the expiry of live slot `id`, keeping E1–E3.
    fn set(&mut self, slots: &mut [Option<Slot>], id: u32, expires_at: Option<i64>) {
        let slot = slots[id as usize].as_mut().expect("a live slot");
        match (slot.exp.checked_sub(1), expires_at) {
            (None, None) => {}
            (None, Some(at)) => {
                let i = self.len;
                slot.exp = u32::try_from(i + 1).expect("fewer than 2^32 - 1 volatile keys");
                if i / CHUNK == self.chunks.len() {
                    self.chunks.push(Chunk::new());
                }
                let chunk = &mut self.chunks[i / CHUNK];
                chunk.at.push(at);
                chunk.ids.push(id);
                chunk.widen_bounds(i % CHUNK, at);
                self.len += 1;
            }
            (Some(i), Some(at)) => {
                let (i, chunk) = (i as usize, &mut self.chunks[i as usize / CHUNK]);
                chunk.at[i % CHUNK] = at;
                chunk.widen_bounds(i % CHUNK, at);
            }
            (Some(i), None) => {
                slot.exp = 0;
                // Fill the hole with the last entry (E2), and point that
                // entry's slot at its new place (E1).
                let last = self.len - 1;
                let chunk = &mut self.chunks[last / CHUNK];
                let (at, moved) = (chunk.at.pop(), chunk.ids.pop());
                let (at, moved) = (at.expect("E2"), moved.expect("E2"));
                if last.is_multiple_of(BLOCK) {
                    // The block is empty now: nothing for its bounds to bound.
                    *chunk.floors[last % CHUNK / BLOCK].get_mut() = i64::MAX;
                    *chunk.ceilings[last % CHUNK / BLOCK].get_mut() = i64::MIN;
                }
                let i = i as usize;
                if i != last {
                    let chunk = &mut self.chunks[i / CHUNK];
                    chunk.at[i % CHUNK] = at;
                    chunk.ids[i % CHUNK] = moved;
                    chunk.widen_bounds(i % CHUNK, at);
                    slots[moved as usize].as_mut().expect("E1").exp = i as u32 + 1;
                }
                self.len = last;
                // Keep one empty chunk as a spare, no more (E2).
                self.chunks.truncate(last.div_ceil(CHUNK) + 1);
            }
        }
    }

    /// Block `b` (`b · BLOCK < len`, so non-empty by E2).
    fn block(&self, b: usize) -> Block<'_> {
        let (chunk, j) = (&self.chunks[b * BLOCK / CHUNK], b % (CHUNK / BLOCK));
        let held = j * BLOCK..chunk.at.len().min((j + 1) * BLOCK);
        Block {
            at: &chunk.at[held.clone()],
            ids: &chunk.ids[held],
            floor: &chunk.floors[j],
            ceiling: &chunk.ceilings[j],
        }
    }

    /// The non-empty blocks, in slab order.
    #[cfg(test)]
    fn blocks(&self) -> impl Iterator<Item = Block<'_>> {
        self.chunks.iter().flat_map(|chunk| {
            let blocks = chunk.at.chunks(BLOCK).zip(chunk.ids.chunks(BLOCK));
            blocks
                .zip(chunk.floors.iter().zip(chunk.ceilings.iter()))
                .map(|((at, ids), (floor, ceiling))| Block {
                    at,
                    ids,
                    floor,
                    ceiling,
                })
        })
    }

    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<Chunk>()
            + self
                .chunks
                .iter()
                .map(|chunk| {
                    chunk.at.capacity() * size_of::<i64>()
                        + chunk.ids.capacity() * size_of::<u32>()
                        + (chunk.floors.len() + chunk.ceilings.len()) * size_of::<AtomicI64>()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{Arc, atomic::AtomicBool},
    };

    use super::*;

    fn put(offset: i64, key: &str, value: &str) -> Record {
        Record::put(0, offset, key.as_bytes(), value.as_bytes())
    }

    fn del(offset: i64, key: &str) -> Record {
        Record::tombstone(0, offset, key.as_bytes())
    }

    fn install(table: &MemoryTable, records: Vec<Record>) {
        let visible = vec![false; records.len()];
        table.install(records, &visible);
    }

    fn value(table: &MemoryTable, key: &str) -> Option<(String, i64)> {
        table
            .get(key.as_bytes())
            .unwrap()
            .map(|v| (String::from_utf8(v.value.to_vec()).unwrap(), v.offset))
    }

    fn keys_in_order(table: &MemoryTable, lower: Bound<&[u8]>) -> Vec<String> {
        let mut keys = Vec::new();
        table
            .visit(lower, &mut |live| {
                keys.push(String::from_utf8(live.key.to_vec()).unwrap());
                true
            })
            .unwrap();
        keys
    }

    /// The slot (the SCAN cursor) holding `key`.
    fn slot_of(table: &MemoryTable, key: &str) -> Option<usize> {
        table
            .entries
            .read()
            .slots_from(0)
            .find(|(_, slot)| slot.key() == key.as_bytes())
            .map(|(id, _)| id)
    }

    #[test]
    fn puts_overwrite_in_place_and_tombstones_remove() {
        let table = MemoryTable::default();
        install(
            &table,
            vec![put(0, "a", "1"), put(1, "b", "2"), put(2, "a", "3")],
        );
        assert_eq!(value(&table, "a"), Some(("3".into(), 2)));
        assert_eq!(value(&table, "b"), Some(("2".into(), 1)));
        assert_eq!(table.len(), 2);
        install(&table, vec![del(3, "a"), del(4, "never-there")]);
        assert_eq!(value(&table, "a"), None);
        assert!(!table.contains(b"a").unwrap());
        assert!(table.contains(b"b").unwrap());
        assert_eq!(table.len(), 1);
        // commit and sync have nothing to do in memory.
        table.commit(&[], &[5], &[None]).unwrap();
        table.sync().unwrap();
    }

    #[test]
    fn a_type_is_kept_beside_the_key_without_changing_its_length() {
        let table = MemoryTable::default();
        // A type changes with a rewrite, and a long key keeps its length.
        let long = "k".repeat(70_000);
        let records: Vec<Record> = Type::ALL
            .iter()
            .enumerate()
            .map(|(i, ty)| put(i as i64, &format!("k{i}"), "v").with_type(*ty))
            .chain([put(9, &long, "v").with_type(Type::ZSet)])
            .collect();
        install(&table, records);
        for (i, ty) in Type::ALL.iter().enumerate() {
            let entry = table.get(format!("k{i}").as_bytes()).unwrap().unwrap();
            assert_eq!((entry.ty, &entry.value[..]), (*ty, &b"v"[..]));
        }
        let entry = table.get(long.as_bytes()).unwrap().unwrap();
        assert_eq!((entry.ty, &entry.value[..]), (Type::ZSet, &b"v"[..]));
        install(&table, vec![put(10, "k1", "s")]);
        assert_eq!(table.get(b"k1").unwrap().unwrap().ty, Type::String);
        let mut seen = Vec::new();
        table
            .visit(Bound::Unbounded, &mut |live| {
                seen.push(live.ty);
                true
            })
            .unwrap();
        assert_eq!(
            seen,
            [
                Type::String,
                Type::String,
                Type::Set,
                Type::Hash,
                Type::ZSet,
                Type::ZSet
            ]
        );
    }

    #[test]
    fn visit_walks_keys_in_byte_order_from_the_lower_bound() {
        let table = MemoryTable::default();
        install(
            &table,
            ["b2", "a1", "c", "b1", "\u{ff}"]
                .iter()
                .enumerate()
                .map(|(i, k)| put(i as i64, k, "v"))
                .collect(),
        );
        assert_eq!(
            keys_in_order(&table, Bound::Unbounded),
            ["a1", "b1", "b2", "c", "\u{ff}"]
        );
        assert_eq!(
            keys_in_order(&table, Bound::Excluded(b"b1")),
            ["b2", "c", "\u{ff}"]
        );
        assert_eq!(
            keys_in_order(&table, Bound::Included(b"b1")),
            ["b1", "b2", "c", "\u{ff}"]
        );
        // The visitor stops the walk.
        let mut seen = 0;
        table
            .visit(Bound::Unbounded, &mut |_| {
                seen += 1;
                seen < 2
            })
            .unwrap();
        assert_eq!(seen, 2);
    }

    #[test]
    fn a_key_keeps_its_cursor_while_live_and_a_freed_one_is_reused() {
        let table = MemoryTable::default();
        install(
            &table,
            vec![put(0, "a", "1"), put(1, "b", "1"), put(2, "c", "1")],
        );
        let b = slot_of(&table, "b").unwrap();
        // An overwrite keeps the cursor.
        install(&table, vec![put(3, "b", "2")]);
        assert_eq!(slot_of(&table, "b"), Some(b));
        // A new key takes the slot a delete freed...
        install(&table, vec![del(4, "b"), put(5, "d", "1")]);
        assert_eq!(slot_of(&table, "d"), Some(b));
        // ...unless it was readable through the overlay: then it takes a
        // fresh slot past every cursor handed out, though one is free.
        install(&table, vec![del(6, "a")]);
        table.install(vec![put(7, "e", "1")], &[true]);
        assert_eq!(slot_of(&table, "e"), Some(3));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn cursor_pages_hold_at_most_count_keys_and_end_with_none() {
        let table = MemoryTable::default();
        install(
            &table,
            (0..10).map(|i| put(i, &format!("k{i}"), "v")).collect(),
        );
        let (page, next) = table.cursor_page(0, 4, 0).unwrap();
        assert_eq!(page.len(), 4);
        assert_eq!(next, Some(4));
        let (page, next) = table.cursor_page(8, 4, 0).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(next, None);
        let (page, next) = table.cursor_page(u64::MAX, 4, 0).unwrap();
        assert!(page.is_empty() && next.is_none());
    }

    fn put_ex(offset: i64, key: &str, value: &str, expires_at: Option<i64>) -> Record {
        put(offset, key, value).with_expiry(expires_at)
    }

    fn expiry(table: &MemoryTable, key: &str) -> Option<i64> {
        table.get(key.as_bytes()).unwrap().unwrap().expires_at
    }

    fn due_keys(due: &[Due]) -> Vec<(String, i64)> {
        due.iter()
            .map(|due| (String::from_utf8(due.key.to_vec()).unwrap(), due.expires_at))
            .collect()
    }

    /// Checks E1–E3 of [`Expiries`] and the slot count; with `exact`, also
    /// that every floor is its block's minimum (after a walk over all).
    fn check_invariants(table: &MemoryTable, exact: bool) {
        let entries = table.entries.read();
        let expiries = &entries.expiries;
        // E1: entries 0..len and the slots with an expiry point at each other.
        let mut volatile = 0;
        for (id, slot) in entries.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let Some(i) = slot.exp.checked_sub(1) else {
                continue;
            };
            volatile += 1;
            let i = i as usize;
            assert!(i < expiries.len, "slot {id} points past the slab");
            assert_eq!(expiries.chunks[i / CHUNK].ids[i % CHUNK] as usize, id);
        }
        assert_eq!(volatile, expiries.len);
        // E2: dense, full chunks, at most one spare, never reallocated.
        let needed = expiries.len.div_ceil(CHUNK);
        assert!((needed..=needed + 1).contains(&expiries.chunks.len()));
        for (c, chunk) in expiries.chunks.iter().enumerate() {
            let held = expiries.len.saturating_sub(c * CHUNK).min(CHUNK);
            assert_eq!((chunk.at.len(), chunk.ids.len()), (held, held));
            assert_eq!((chunk.at.capacity(), chunk.ids.capacity()), (CHUNK, CHUNK));
        }
        // `block(b)`, what walks use, is the b-th non-empty block.
        assert_eq!(expiries.blocks().count(), expiries.len.div_ceil(BLOCK));
        for (b, block) in expiries.blocks().enumerate() {
            let same = expiries.block(b);
            assert_eq!((same.at, same.ids), (block.at, block.ids));
            assert!(std::ptr::eq(same.floor, block.floor));
        }
        // E3, E4: floors and ceilings bound their blocks.
        for block in expiries.blocks() {
            let min = *block.at.iter().min().unwrap();
            let max = *block.at.iter().max().unwrap();
            assert!(block.floor() <= min, "a floor above its block");
            assert!(block.ceiling() >= max, "a ceiling below its block");
            if exact {
                assert_eq!((block.floor(), block.ceiling()), (min, max));
            }
        }
    }

    #[test]
    fn a_slot_is_32_bytes_and_holds_the_largest_positions() {
        assert_eq!(size_of::<Slot>(), 32);
        assert_eq!(size_of::<Option<Slot>>(), 32);
        let table = MemoryTable::default();
        let last = (1 << 48) - 1;
        install(
            &table,
            vec![
                Record::put(65_535, last, b"a", b"1"),
                Record::put(0, 0, b"b", b"2").with_expiry(Some(i64::MIN)),
                Record::put(65_535, 7, b"c", b"3").with_expiry(Some(i64::MAX)),
            ],
        );
        let got = |key: &[u8]| {
            let v = table.get(key).unwrap().unwrap();
            (v.partition, v.offset, v.expires_at)
        };
        assert_eq!(got(b"a"), (65_535, last, None));
        assert_eq!(got(b"b"), (0, 0, Some(i64::MIN)));
        assert_eq!(got(b"c"), (65_535, 7, Some(i64::MAX)));
        assert_eq!(table.volatile_counts(i64::MAX).unwrap(), (2, 2));
        assert_eq!(table.volatile_counts(i64::MIN).unwrap(), (2, 1));
    }

    #[test]
    fn a_position_beyond_the_packed_limits_is_refused_before_anything_applies() {
        assert!(position_fits(65_535, (1 << 48) - 1));
        for (partition, offset) in [(65_536, 0), (-1, 0), (0, 1 << 48), (0, -1)] {
            assert!(!position_fits(partition, offset), "{partition} {offset}");
        }
        let table = MemoryTable::default();
        let batch = vec![put(0, "ok", "1"), Record::put(65_536, 0, b"bad", b"1")];
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            install(&table, batch);
        }))
        .expect_err("refused");
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("partitions 0..65536 and offsets below 2^48"));
        assert_eq!(table.len(), 0, "nothing of the batch applied");
        // A tombstone is not stored, so its position does not matter.
        install(&table, vec![Record::tombstone(70_000, 1 << 50, b"gone")]);
        assert_eq!(table.len(), 0);
    }

    /// A walk over many expired entries (a bulk expiry) lets a writer that
    /// waits for the lock in between groups of blocks, and `due` then
    /// holds what the writer left.
    #[test]
    fn a_long_walk_lets_a_waiting_writer_in_between_groups_of_blocks() {
        let table = Arc::new(MemoryTable::default());
        let n = 64 * WALK_GROUP * 4;
        let keys: Vec<String> = (0..n).map(|i| format!("k{i:06}")).collect();
        install(
            &table,
            (0..n)
                .map(|i| put_ex(i as i64, &keys[i], "v", Some(100)))
                .collect(),
        );
        // The walk's own read lock, held while a writer queues behind it.
        let mut guard = table.entries.read();
        let swept = Arc::new(AtomicBool::new(false));
        let writer = std::thread::spawn({
            let (table, swept, key) = (table.clone(), swept.clone(), keys[0].clone());
            move || {
                // What `install` does, with the flag set under the same
                // lock: a flag set after it was let go could be seen late
                // (the woken walk may run first) and count as a group
                // walked before the writer.
                let mut entries = table.entries.write();
                entries.apply(del(n as i64, &key), false);
                swept.store(true, Ordering::SeqCst);
            }
        });
        // Fair: once the writer is parked, a new reader is refused.
        while table.entries.try_read().is_some() {
            std::thread::yield_now();
        }
        let mut seen_before_sweep = 0;
        let mut blocks = 0;
        walk_blocks(&mut guard, |_| {
            if !swept.load(Ordering::SeqCst) {
                seen_before_sweep += 1;
            }
            blocks += 1;
            true
        });
        drop(guard);
        writer.join().unwrap();
        assert_eq!(
            seen_before_sweep, WALK_GROUP,
            "the writer ran after the first group"
        );
        assert_eq!(blocks, n / 64);
        // And `due`, racing nothing now, finds all but the swept key.
        let due = table.due(100, None, n).unwrap();
        assert_eq!(due.len(), n - 1);
        assert!(due.iter().all(|due| due.key != keys[0].as_bytes()));
        check_invariants(&table, true);
    }

    #[test]
    fn expiries_follow_puts_rewrites_and_tombstones() {
        let table = MemoryTable::default();
        install(
            &table,
            vec![
                put_ex(0, "a", "1", Some(100)),
                put_ex(1, "b", "1", None),
                put_ex(2, "c", "1", Some(50)),
                put_ex(3, "d", "1", Some(100)),
            ],
        );
        check_invariants(&table, false);
        assert_eq!(expiry(&table, "a"), Some(100));
        assert_eq!(expiry(&table, "b"), None);
        assert_eq!(table.volatile_counts(49).unwrap(), (3, 0));
        assert_eq!(table.volatile_counts(50).unwrap(), (3, 1));
        assert_eq!(table.volatile_counts(100).unwrap(), (3, 3));
        // Earliest first; a tie goes by slot id ("a" before "d").
        assert_eq!(
            due_keys(&table.due(100, None, 10).unwrap()),
            [("c".into(), 50), ("a".into(), 100), ("d".into(), 100)]
        );
        assert!(table.due(49, None, 10).unwrap().is_empty());
        let first = table.due(100, None, 2).unwrap();
        assert_eq!(due_keys(&first), [("c".into(), 50), ("a".into(), 100)]);
        let rest = table.due(100, Some(first[1].cursor), 2).unwrap();
        assert_eq!(due_keys(&rest), [("d".into(), 100)]);
        assert_eq!(rest[0].partition, 0);
        assert!(table.due(100, Some(rest[0].cursor), 2).unwrap().is_empty());
        assert!(table.due(100, None, 0).unwrap().is_empty());

        // Expired entries are hidden from SCAN and RANDOMKEY, not from get.
        let c = slot_of(&table, "c").unwrap() as u64;
        assert_eq!(table.key_at(c, 49).unwrap().as_deref(), Some(&b"c"[..]));
        assert_eq!(table.key_at(c, 50).unwrap(), None);
        assert_eq!(table.cursor_page(0, 10, 60).unwrap().0.len(), 3);
        let mut seen = Vec::new();
        table
            .visit(Bound::Unbounded, &mut |live| {
                seen.push(live.expires_at);
                true
            })
            .unwrap();
        assert_eq!(seen, [Some(100), None, Some(50), Some(100)]);

        // Changed, set, cleared by a rewrite without one.
        install(
            &table,
            vec![
                put_ex(4, "a", "2", Some(300)),
                put_ex(5, "b", "2", Some(200)),
                put_ex(6, "c", "2", None),
            ],
        );
        check_invariants(&table, false);
        assert_eq!(expiry(&table, "a"), Some(300));
        assert_eq!(expiry(&table, "b"), Some(200));
        assert_eq!(expiry(&table, "c"), None);
        assert_eq!(value(&table, "c"), Some(("2".into(), 6)));
        assert_eq!(table.volatile_counts(250).unwrap(), (3, 2));
        assert_eq!(
            due_keys(&table.due(i64::MAX, None, 10).unwrap()),
            [("d".into(), 100), ("b".into(), 200), ("a".into(), 300)]
        );

        // A tombstone removes the expiry; the freed slot's next key starts
        // without one.
        let a = slot_of(&table, "a");
        install(&table, vec![del(7, "a"), put(8, "e", "1")]);
        check_invariants(&table, false);
        assert_eq!(slot_of(&table, "e"), a);
        assert_eq!(expiry(&table, "e"), None);
        assert_eq!(table.volatile_counts(i64::MAX).unwrap(), (2, 2));
        install(&table, vec![del(9, "b"), del(10, "d"), del(11, "b")]);
        check_invariants(&table, true);
        assert_eq!(table.volatile_counts(i64::MAX).unwrap(), (0, 0));
        assert!(table.due(i64::MAX, None, 10).unwrap().is_empty());
        assert_eq!(table.entries.read().expiries.len, 0);
    }

    /// What the model holds for a key.
    struct Modelled {
        offset: i64,
        expires_at: Option<i64>,
        /// Where the key is in `live`.
        at: usize,
    }

    /// Checks everything expiry-related against the model, by brute force.
    fn check_against(table: &MemoryTable, model: &HashMap<u32, Modelled>, rng: &mut fastrand::Rng) {
        check_invariants(table, false);
        assert_eq!(table.len(), model.len());
        for (key, entry) in model {
            let got = table.get(format!("k{key}").as_bytes()).unwrap().unwrap();
            assert_eq!(
                (got.offset, got.expires_at),
                (entry.offset, entry.expires_at)
            );
        }
        // Every volatile key, in `due`'s order: (expiry, slot id).
        let mut expected: Vec<(i64, u64, String)> = model
            .iter()
            .filter_map(|(key, entry)| {
                let key = format!("k{key}");
                let id = u64::from(table.entries.read().get_id(key.as_bytes()).unwrap());
                entry.expires_at.map(|at| (at, id, key))
            })
            .collect();
        expected.sort_unstable();
        for now in [i64::MIN, -1, rng.i64(0..2_100), rng.i64(0..2_100), i64::MAX] {
            let expired = expected.iter().filter(|(at, ..)| *at <= now).count();
            assert_eq!(
                table.volatile_counts(now).unwrap(),
                (expected.len(), expired)
            );
        }
        let as_due = |expected: &[(i64, u64, String)]| -> Vec<(String, i64, (i64, u64))> {
            expected
                .iter()
                .map(|(at, id, key)| (key.clone(), *at, (*at, *id)))
                .collect()
        };
        let got = |due: Vec<Due>| -> Vec<(String, i64, (i64, u64))> {
            due.into_iter()
                .map(|due| {
                    (
                        String::from_utf8(due.key.to_vec()).unwrap(),
                        due.expires_at,
                        due.cursor,
                    )
                })
                .collect()
        };
        for _ in 0..3 {
            let upto = rng.i64(-10..2_100);
            let limit = [1, 7, 100, 5_000][rng.usize(..4)];
            let want: Vec<_> = expected
                .iter()
                .filter(|(at, ..)| *at <= upto)
                .cloned()
                .collect();
            // From the start: all of them when at most `limit` are due,
            // else `limit` of them, earliest first.
            let first = got(table.due(upto, None, limit).unwrap());
            if want.len() <= limit {
                assert_eq!(first, as_due(&want), "upto {upto} limit {limit}");
            } else {
                assert_eq!(first.len(), limit, "upto {upto} limit {limit}");
                assert!(first.is_sorted_by(|a, b| a.2 < b.2), "earliest first");
                let all = as_due(&want);
                assert!(first.iter().all(|due| all.contains(due)), "only due ones");
            }
            // Paging with the cursor, from one before every entry, walks
            // the whole list in order (in at most about 16 pages, to keep
            // the test quick).
            let page_limit = limit.max(want.len() / 16);
            let mut walked = Vec::new();
            let mut cursor = (i64::MIN, 0);
            loop {
                let page = got(table.due(upto, Some(cursor), page_limit).unwrap());
                let Some((_, _, last)) = page.last().cloned() else {
                    break;
                };
                walked.extend(page);
                cursor = last;
            }
            assert_eq!(walked, as_due(&want));
        }
    }

    #[test]
    fn due_and_volatile_counts_match_a_brute_force_model_under_random_operations() {
        let mut rng = fastrand::Rng::with_seed(0x006b_6166_6b76);
        let table = MemoryTable::default();
        let mut model: HashMap<u32, Modelled> = HashMap::new();
        let mut live: Vec<u32> = Vec::new();
        let mut offset = 0;
        let mut since_check = 0;
        // Grow past two chunks of the slab, shrink to nothing, twice: chunks
        // and blocks fill, empty, and are reused.
        for (target, grow) in [(9_500, true), (0, false), (6_000, true), (0, false)] {
            while (grow && model.len() < target) || (!grow && !model.is_empty()) {
                let mut batch = Vec::new();
                let mut visible = Vec::new();
                for _ in 0..rng.usize(1..64) {
                    let deleting = rng.u8(..100) < if grow { 20 } else { 75 };
                    let key = if deleting && !live.is_empty() {
                        live[rng.usize(..live.len())]
                    } else {
                        rng.u32(..20_000)
                    };
                    let name = format!("k{key}");
                    let record = if deleting {
                        if let Some(gone) = model.remove(&key) {
                            let moved = live.swap_remove(gone.at);
                            if let Some(moved) = live.get(gone.at) {
                                model.get_mut(moved).unwrap().at = gone.at;
                            }
                            debug_assert_eq!(moved, key);
                        }
                        del(offset, &name)
                    } else {
                        let old = model.get(&key).and_then(|entry| entry.expires_at);
                        let expires_at = match rng.u8(..100) {
                            0..30 => None,
                            30..40 => old, // a rewrite keeping the expiry
                            40..42 => Some([i64::MIN, i64::MAX, -5][rng.usize(..3)]),
                            _ => Some(rng.i64(0..2_000)),
                        };
                        let at = match model.get(&key) {
                            Some(entry) => entry.at,
                            None => {
                                live.push(key);
                                live.len() - 1
                            }
                        };
                        model.insert(
                            key,
                            Modelled {
                                offset,
                                expires_at,
                                at,
                            },
                        );
                        put_ex(offset, &name, "v", expires_at)
                    };
                    batch.push(record);
                    visible.push(rng.u8(..10) == 0);
                    offset += 1;
                }
                since_check += batch.len();
                table.install(batch, &visible);
                if since_check >= 2_000 {
                    since_check = 0;
                    check_against(&table, &model, &mut rng);
                }
            }
            check_against(&table, &model, &mut rng);
            // A walk over every block leaves every floor exact.
            table.due(i64::MAX, None, 1).unwrap();
            check_invariants(&table, true);
        }
        let entries = table.entries.read();
        assert_eq!(entries.expiries.len, 0);
        assert!(
            entries.expiries.chunks.len() <= 1,
            "at most the spare chunk"
        );
    }

    /// docs/expiry.md, "Memory": a key with an expiry costs at most 16
    /// bytes more than one without, and a key without one nothing more.
    #[test]
    fn a_volatile_key_costs_at_most_16_bytes_more_and_a_plain_one_nothing() {
        let n = 100_000;
        let build = |expiring: bool| {
            let table = MemoryTable::default();
            for chunk in (0..n).collect::<Vec<i64>>().chunks(1024) {
                let records = chunk
                    .iter()
                    .map(|i| {
                        let key = (*i as u64).wrapping_mul(2_654_435_761) % 1_000_000_007;
                        let expires_at = 1_700_000_000_000 + i * 7919 % 3_600_000;
                        put_ex(
                            *i,
                            &format!("key-{key:012}"),
                            "v",
                            expiring.then_some(expires_at),
                        )
                    })
                    .collect();
                install(&table, records);
            }
            table
        };
        let (plain, volatile) = (build(false), build(true));
        assert_eq!(plain.entries.read().expiries.heap_bytes(), 0);
        let per_key = plain.overhead_bytes() as f64 / n as f64;
        let extra = (volatile.overhead_bytes() - plain.overhead_bytes()) as f64 / n as f64;
        eprintln!("{per_key:.2} bytes per plain key, {extra:.2} more per volatile key");
        assert!(extra <= 16.0, "{extra:.2} bytes more per volatile key");

        // Churn: every expiry changed, half of them cleared and set again,
        // a third of the keys deleted and put back. The slab stays dense.
        let mut offset = n;
        let keys: Vec<String> = volatile
            .entries
            .read()
            .slots_from(0)
            .map(|(_, slot)| String::from_utf8(slot.key().to_vec()).unwrap())
            .collect();
        for round in 0..3 {
            for (i, key) in keys.iter().enumerate() {
                let expires_at = match (round, i % 2, i % 3) {
                    (1, 0, _) => None,
                    _ => Some(1_800_000_000_000 + i as i64),
                };
                let mut records = vec![put_ex(offset, key, "w", expires_at)];
                if round == 2 && i % 3 == 0 {
                    records.push(del(offset + 1, key));
                    records.push(put_ex(offset + 2, key, "x", Some(1)));
                }
                offset += records.len() as i64;
                install(&volatile, records);
            }
        }
        check_invariants(&volatile, false);
        let entries = volatile.entries.read();
        assert_eq!(entries.expiries.len, n as usize);
        let per_volatile = entries.expiries.heap_bytes() as f64 / n as f64;
        assert!(
            per_volatile <= 16.0,
            "{per_volatile:.2} bytes per volatile key after churn"
        );
    }
}
