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

use std::{
    collections::{BTreeSet, HashMap},
    hash::BuildHasher,
    ops::Bound,
};

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::RwLock;

use super::{Due, Live, StateError, Table, Versioned, sorted::SortedIds};
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
    /// Expiries by slot id: only keys that have one pay for it.
    expiries: HashMap<u32, i64>,
    /// The same, ordered by time: what the sweeper and `DBSIZE` walk.
    by_expiry: BTreeSet<(i64, u32)>,
}

impl Table for MemoryTable {
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError> {
        let entries = self.entries.read();
        Ok(entries.get_id(key).map(|id| {
            let slot = slot(&entries.slots, id);
            Versioned {
                value: Bytes::copy_from_slice(slot.value()),
                partition: slot.partition,
                offset: slot.offset,
                expires_at: entries.expiries.get(&id).copied(),
            }
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
        for (id, slot) in entries.range_from(lower) {
            let live = Live {
                key: slot.key().into(),
                value: slot.value().into(),
                partition: slot.partition,
                offset: slot.offset,
                expires_at: entries.expiries.get(&id).copied(),
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
            .filter(|(id, _)| !entries.is_expired(*id as u32, now))
            .map(|(_, slot)| Bytes::copy_from_slice(slot.key()))
            .collect();
        Ok((page, slots.next().map(|(id, _)| id as u64)))
    }

    fn cursor_bound(&self) -> Result<u64, StateError> {
        Ok(self.entries.read().slots.len() as u64)
    }

    fn key_at(&self, cursor: u64, now: i64) -> Result<Option<Bytes>, StateError> {
        let entries = self.entries.read();
        let Ok(id) = u32::try_from(cursor) else {
            return Ok(None);
        };
        let slot = entries.slots.get(id as usize);
        Ok(slot
            .and_then(Option::as_ref)
            .filter(|_| !entries.is_expired(id, now))
            .map(|slot| Bytes::copy_from_slice(slot.key())))
    }

    fn volatile_counts(&self, now: i64) -> Result<(usize, usize), StateError> {
        let entries = self.entries.read();
        let expired = entries
            .by_expiry
            .range(..(now.saturating_add(1), 0))
            .count();
        Ok((entries.expiries.len(), expired))
    }

    fn due(
        &self,
        upto: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<Due>, StateError> {
        let entries = self.entries.read();
        let from = match after {
            Some((at, id)) => Bound::Excluded((at, u32::try_from(id).unwrap_or(u32::MAX))),
            None => Bound::Unbounded,
        };
        Ok(entries
            .by_expiry
            .range((from, Bound::Included((upto, u32::MAX))))
            .take(limit)
            .map(|&(at, id)| {
                let slot = slot(&entries.slots, id);
                Due {
                    key: Bytes::copy_from_slice(slot.key()),
                    partition: slot.partition,
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
        self.get_id(key).map(|id| slot(&self.slots, id))
    }

    fn get_id(&self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |id| slot(&self.slots, *id).key() == key)
            .copied()
    }

    fn is_expired(&self, id: u32, now: i64) -> bool {
        self.expiries.get(&id).is_some_and(|at| *at <= now)
    }

    /// Sets (or clears) slot `id`'s expiry.
    fn set_expiry(&mut self, id: u32, expires_at: Option<i64>) {
        let old = match expires_at {
            Some(at) => self.expiries.insert(id, at),
            None => self.expiries.remove(&id),
        };
        if old == expires_at {
            return;
        }
        if let Some(old) = old {
            self.by_expiry.remove(&(old, id));
        }
        if let Some(at) = expires_at {
            self.by_expiry.insert((at, id));
        }
    }

    /// Applies one record: a value replaces the key's entry in place (same
    /// slot id), a tombstone frees it. A new key takes a free slot, unless
    /// `visible` (it was already readable, through the overlay of
    /// acknowledged writes): then it takes a slot past every cursor handed
    /// out, so a SCAN that began while it was readable cannot pass it by.
    fn apply(&mut self, record: Record, visible: bool) {
        let expires_at = record.expires_at;
        let id = self.apply_entry(record, visible);
        if let Some((id, live)) = id {
            self.set_expiry(id, if live { expires_at } else { None });
        }
    }

    /// [`Entries::apply`] without the expiry: the slot the record touched,
    /// and whether it is live now.
    fn apply_entry(&mut self, record: Record, visible: bool) -> Option<(u32, bool)> {
        let Entries {
            slots,
            free,
            index,
            hasher,
            sorted,
            live,
            ..
        } = self;
        let hash = hasher.hash_one(record.key());
        let found = index.find(hash, |id| slot(slots, *id).key() == record.key());
        match (found.copied(), record.is_tombstone()) {
            (Some(id), false) => {
                slots[id as usize] = Some(Slot::from(record));
                Some((id, true))
            }
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
                Some((id, true))
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
                Some((id, false))
            }
            (None, true) => None,
        }
    }

    /// Live entries in key order from `lower` on, with their ids.
    fn range_from<'s>(&'s self, lower: Bound<&[u8]>) -> impl Iterator<Item = (u32, &'s Slot)> {
        let slots = &self.slots;
        self.sorted
            .range_from(lower, |id| slot(slots, id).key())
            .map(|id| (id, slot(slots, id)))
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

#[cfg(test)]
mod tests {
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
}
