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

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::RwLock;

use super::{Live, StateError, Table, Versioned, sorted::SortedIds};
use crate::record::Record;

/// One live entry: a single allocation of key ‖ value.
#[derive(Debug)]
struct Slot {
    data: Box<[u8]>,
    key_len: u32,
    partition: i32,
    offset: i64,
}

impl Slot {
    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
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
}

impl Table for MemoryTable {
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError> {
        Ok(self.entries.read().get(key).map(|slot| Versioned {
            value: Bytes::copy_from_slice(slot.value()),
            partition: slot.partition,
            offset: slot.offset,
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
                partition: slot.partition,
                offset: slot.offset,
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
    ) -> Result<(Vec<Bytes>, Option<u64>), StateError> {
        let entries = self.entries.read();
        let from = usize::try_from(cursor).unwrap_or(usize::MAX);
        let mut slots = entries.slots_from(from);
        let page = slots
            .by_ref()
            .take(count)
            .map(|(_, slot)| Bytes::copy_from_slice(slot.key()))
            .collect();
        Ok((page, slots.next().map(|(id, _)| id as u64)))
    }

    /// Nothing to persist.
    fn commit(&self, _: &[&Record], _: &[i64], _: &[Option<bool>]) -> Result<(), StateError> {
        Ok(())
    }

    fn install(&self, records: Vec<Record>, visible: &[bool]) {
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
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |id| slot(&self.slots, *id).key() == key)
            .map(|id| slot(&self.slots, *id))
    }

    /// Applies one record: a value replaces the key's entry in place (same
    /// slot id), a tombstone frees it. A new key takes a free slot, unless
    /// `visible` (it was already readable, through the overlay of
    /// acknowledged writes): then it takes a slot past every cursor handed
    /// out, so a SCAN that began while it was readable cannot pass it by.
    fn apply(&mut self, record: Record, visible: bool) {
        let Entries {
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
        let (partition, offset) = (record.partition, record.offset);
        let (data, key_len) = record.into_data();
        Slot {
            data,
            key_len,
            partition,
            offset,
        }
    }
}
