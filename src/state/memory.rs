//! The memory backend: every live key and value in this process's heap, at
//! a fixed overhead of about 45 bytes per key beyond one allocation holding
//! the key and value bytes (see docs/design.md, "Memory").
//!
//! Layout: entries live in a slab (`slots`), each one allocation of
//! key ‖ value plus where it sits in the log. Two indexes refer to entries by
//! their 4-byte slot id instead of holding keys again: a hash table for point
//! reads (the hot path) and [`SortedIds`] for ordered scans. A slot id is
//! stable for as long as its key is live, which is what the `SCAN` cursor
//! relies on ([`MemoryTable::slots_from`]).

use std::{hash::BuildHasher, ops::Bound};

use hashbrown::{DefaultHashBuilder, HashTable};

use super::{Record, sorted::SortedIds};

/// One live entry: a single allocation of key ‖ value.
#[derive(Debug)]
pub(super) struct Slot {
    data: Box<[u8]>,
    key_len: u32,
    pub(super) partition: i32,
    pub(super) offset: i64,
}

impl Slot {
    pub(super) fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }
}

#[derive(Debug, Default)]
pub(super) struct MemoryTable {
    /// `None` marks a free slot; its id is on `free`.
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Point lookups by key hash; holds slot ids, and rehashes from the keys.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    sorted: SortedIds,
    live: usize,
}

impl MemoryTable {
    pub(super) fn get(&self, key: &[u8]) -> Option<&Slot> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |id| slot(&self.slots, *id).key() == key)
            .map(|id| slot(&self.slots, *id))
    }

    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Applies one record: a value replaces the key's entry in place (same
    /// slot id), a tombstone frees it. A new key takes a free slot, unless
    /// `visible` (it was already readable, through the overlay of
    /// acknowledged writes): then it takes a slot past every cursor handed
    /// out, so a SCAN that began while it was readable cannot pass it by.
    pub(super) fn apply(&mut self, record: Record, visible: bool) {
        let Self {
            slots,
            free,
            index,
            hasher,
            sorted,
            live,
        } = self;
        let hash = hasher.hash_one(record.key());
        let found = index.find(hash, |id| slot(slots, *id).key() == record.key());
        match (found.copied(), record.is_tombstone()) {
            (Some(id), false) => slots[id as usize] = Some(Slot::from(record)),
            (None, false) => {
                let entry = Slot::from(record);
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
            }
            (Some(id), true) => {
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
    pub(super) fn range_from<'s>(&'s self, lower: Bound<&[u8]>) -> impl Iterator<Item = &'s Slot> {
        let slots = &self.slots;
        self.sorted
            .range_from(lower, |id| slot(slots, id).key())
            .map(|id| slot(slots, id))
    }

    /// Live entries by slot id from `from` on, with their ids.
    pub(super) fn slots_from(&self, from: usize) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .skip(from)
            .filter_map(|(id, entry)| entry.as_ref().map(|entry| (id, entry)))
    }

    /// Heap bytes this table holds beyond the entries' own allocations.
    pub(super) fn overhead_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<Slot>>()
            + self.free.capacity() * size_of::<u32>()
            + self.index.capacity() * (size_of::<u32>() + 1)
            + self.sorted.heap_bytes()
    }
}

/// The live entry in slot `id`; the indexes only ever hold live ids.
fn slot(slots: &[Option<Slot>], id: u32) -> &Slot {
    slots[id as usize]
        .as_ref()
        .expect("indexes hold live slots")
}

impl From<Record> for Slot {
    fn from(record: Record) -> Self {
        Slot {
            key_len: record.key_len,
            partition: record.partition,
            offset: record.offset,
            data: record.data,
        }
    }
}
