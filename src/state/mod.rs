//! The materialized view: the topic's live keys (in a [`Table`], memory or
//! disk), the acknowledged-but-not-yet-consumed writes of this instance, and
//! the per-partition applied offsets, with a way to wait for an offset.
//!
//! Invariants:
//! - `positions[p]` is the offset of the next record to apply from partition
//!   `p`; every record of `p` below it is reflected in the table. With the
//!   disk backend the same positions are the checkpoint, committed in the
//!   same transaction as the records (see [`disk`]).
//! - An entry of `acked` is newer than anything the table holds for that
//!   key: it is dropped as soon as the consumer applies its offset (or a
//!   later one for the same key), and it is never inserted for an offset
//!   already applied. Reads consult `acked` first, so a write is visible from
//!   the moment it was acknowledged (read-your-writes) without waiting for
//!   the consumer.
//! - Only the consumer thread applies records, so it can read `positions`,
//!   commit a batch to disk, and only then publish the new positions.

mod disk;
mod memory;
mod sorted;

use std::{
    collections::BTreeMap,
    ops::Bound,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;

pub use disk::Checkpoint;
use disk::DiskTable;
use memory::MemoryTable;

use crate::error::StateError;

/// A live value and where it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub partition: i32,
    pub offset: i64,
}

/// One record as the consumer hands it to the view: key and value in one
/// allocation, which the memory table keeps as it is.
#[derive(Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// key ‖ value.
    data: Box<[u8]>,
    key_len: u32,
    tombstone: bool,
}

impl Record {
    pub fn put(partition: i32, offset: i64, key: &[u8], value: &[u8]) -> Self {
        let mut data = Vec::with_capacity(key.len() + value.len());
        data.extend_from_slice(key);
        data.extend_from_slice(value);
        Self {
            partition,
            offset,
            data: data.into_boxed_slice(),
            key_len: u32::try_from(key.len()).expect("Kafka keys are under 4 GiB"),
            tombstone: false,
        }
    }

    pub fn tombstone(partition: i32, offset: i64, key: &[u8]) -> Self {
        Self {
            partition,
            offset,
            data: key.into(),
            key_len: u32::try_from(key.len()).expect("Kafka keys are under 4 GiB"),
            tombstone: true,
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    /// `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        (!self.tombstone).then(|| &self.data[self.key_len as usize..])
    }

    pub fn is_tombstone(&self) -> bool {
        self.tombstone
    }
}

/// What the consumer reports, in log order per partition.
#[derive(Debug)]
pub enum Event {
    Record(Record),
    /// A record kafkv cannot hold (no key): its offset still counts as applied.
    Skipped {
        partition: i32,
        offset: i64,
    },
    /// The consumer reached the partition's end as of its last fetch.
    EndOfPartition(i32),
}

/// Where the view keeps its entries.
#[derive(Debug)]
pub struct Table(Backend);

#[derive(Debug)]
enum Backend {
    Memory,
    Disk(DiskTable),
}

impl Table {
    /// Entries in this process's memory; nothing survives a restart.
    pub fn memory() -> Self {
        Table(Backend::Memory)
    }

    /// Entries in the redb file at `path`, with the checkpoint the last run
    /// left there, if any.
    pub fn open_disk(path: &Path) -> Result<(Self, Option<Checkpoint>), StateError> {
        let (table, checkpoint) = DiskTable::open(path)?;
        Ok((Table(Backend::Disk(table)), checkpoint))
    }

    /// Empties the table and records `checkpoint` as where it starts.
    pub fn reset(&self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        match &self.0 {
            Backend::Memory => Ok(()),
            Backend::Disk(disk) => disk.reset(checkpoint),
        }
    }
}

#[derive(Debug)]
struct Acked {
    /// `None` is an acknowledged delete.
    value: Option<Bytes>,
    partition: i32,
    offset: i64,
}

#[derive(Debug)]
struct Inner {
    acked: BTreeMap<Box<[u8]>, Acked>,
    positions: Vec<i64>,
    /// The memory backend's entries; `None` when they are on disk.
    memory: Option<MemoryTable>,
}

/// Progress of the start-up read, for `/readyz` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// End offsets captured at start; the view is ready once every partition reached its own.
    pub targets: Vec<i64>,
    /// Partitions that reached their target (or reported end-of-partition).
    pub reached: Vec<bool>,
}

impl Bootstrap {
    pub fn is_done(&self) -> bool {
        self.reached.iter().all(|r| *r)
    }
}

/// Counters the view publishes after each batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub positions: Vec<i64>,
    /// Records applied by this process (not those a disk checkpoint already held).
    pub records_applied: u64,
    pub bootstrap: Bootstrap,
}

/// The shared materialized view.
///
/// A `parking_lot::RwLock` rather than a concurrent map: reads take a shared
/// lock for a lookup and a value copy (nanoseconds), the consumer takes the
/// exclusive lock once per batch of at most [`View::MAX_BATCH`] records, so no
/// reader waits long, and one lock keeps the memory table, `acked` and
/// `positions` consistent with each other. It is never held across an
/// `.await`. The disk table has its own transactions: a batch is committed
/// to it before the lock is taken to publish the batch's positions.
#[derive(Debug)]
pub struct View {
    inner: RwLock<Inner>,
    disk: Option<DiskTable>,
    progress: watch::Sender<Progress>,
    closed: AtomicBool,
    /// Mirrors `progress.bootstrap.is_done()` for the read path, which checks
    /// it on every request and must not clone the progress to do so.
    bootstrapped: AtomicBool,
}

/// A live entry as a scan sees it.
struct Live<'a> {
    key: std::borrow::Cow<'a, [u8]>,
    value: std::borrow::Cow<'a, [u8]>,
    partition: i32,
    offset: i64,
}

impl View {
    /// The consumer applies at most this many records per lock acquisition.
    pub const MAX_BATCH: usize = 1024;

    /// An empty memory view whose bootstrap ends at `targets` (one per partition).
    pub fn new(targets: Vec<i64>) -> Self {
        let positions = vec![0; targets.len()];
        Self::with_table(Table::memory(), positions, targets)
    }

    /// A view over `table`, which already holds every record below
    /// `positions`; its bootstrap ends at `targets`.
    pub fn with_table(table: Table, positions: Vec<i64>, targets: Vec<i64>) -> Self {
        let reached: Vec<bool> = targets
            .iter()
            .zip(&positions)
            .map(|(end, position)| position >= end)
            .collect();
        let bootstrapped = AtomicBool::new(reached.iter().all(|r| *r));
        let (progress, _) = watch::channel(Progress {
            positions: positions.clone(),
            records_applied: 0,
            bootstrap: Bootstrap { targets, reached },
        });
        let (memory, disk) = match table.0 {
            Backend::Memory => (Some(MemoryTable::default()), None),
            Backend::Disk(disk) => (None, Some(disk)),
        };
        Self {
            inner: RwLock::new(Inner {
                acked: BTreeMap::new(),
                positions,
                memory,
            }),
            disk,
            progress,
            closed: AtomicBool::new(false),
            bootstrapped,
        }
    }

    /// Whether the start-up read finished (cheap: one atomic load).
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    pub fn partitions(&self) -> usize {
        self.inner.read().positions.len()
    }

    /// The current value of `key`, acknowledged writes of this instance included.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError> {
        let inner = self.inner.read();
        if let Some(acked) = inner.acked.get(key) {
            return Ok(acked.value.as_ref().map(|value| Versioned {
                value: value.clone(),
                partition: acked.partition,
                offset: acked.offset,
            }));
        }
        if let Some(memory) = &inner.memory {
            return Ok(memory.get(key).map(|slot| Versioned {
                value: Bytes::copy_from_slice(slot.value()),
                partition: slot.partition,
                offset: slot.offset,
            }));
        }
        drop(inner);
        Ok(self.disk().get(key)?.map(|entry| Versioned {
            value: entry.value.into(),
            partition: entry.partition,
            offset: entry.offset,
        }))
    }

    /// Whether the table (not the overlay) holds `key`.
    fn in_table(&self, inner: &Inner, key: &[u8]) -> Result<bool, StateError> {
        match &inner.memory {
            Some(memory) => Ok(memory.contains(key)),
            None => Ok(self.disk().get(key)?.is_some()),
        }
    }

    fn disk(&self) -> &DiskTable {
        self.disk
            .as_ref()
            .expect("a view without a memory table has a disk table")
    }

    /// Up to `limit` live keys after `start_after` (exclusive) that begin with
    /// `prefix`, in order, stopping early once the keys and values copied
    /// reach `max_bytes` (at least one entry is returned), so that a page of
    /// large values never holds the lock for long.
    pub fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Bytes, Versioned)>, StateError> {
        let lower: Bound<&[u8]> = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut bytes = 0;
        self.visit_live(prefix, lower, |live| {
            if out.len() >= limit || bytes >= max_bytes {
                return false;
            }
            bytes += live.key.len() + live.value.len();
            out.push((
                Bytes::copy_from_slice(&live.key),
                Versioned {
                    value: Bytes::copy_from_slice(&live.value),
                    partition: live.partition,
                    offset: live.offset,
                },
            ));
            true
        })?;
        Ok(out)
    }

    /// Every live key beginning with `prefix`, in byte order, without
    /// copying values.
    pub fn keys(&self, prefix: &[u8]) -> Result<Vec<Bytes>, StateError> {
        let mut keys = Vec::new();
        self.visit_live(prefix, Bound::Included(prefix), |live| {
            keys.push(Bytes::copy_from_slice(&live.key));
            true
        })?;
        Ok(keys)
    }

    /// Hands live entries beginning with `prefix`, from `lower` on, in key
    /// order to `visit` until it returns `false`: the table merged with
    /// acknowledged writes, which win on equal keys (an acknowledged delete
    /// hides the key).
    fn visit_live(
        &self,
        prefix: &[u8],
        lower: Bound<&[u8]>,
        mut visit: impl FnMut(Live<'_>) -> bool,
    ) -> Result<(), StateError> {
        let inner = self.inner.read();
        let mut acked = inner
            .acked
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        // Called with each table entry in order (`None` at the end): first
        // hands over the acknowledged writes sorting before it.
        let mut merge = |entry: Option<Live<'_>>| -> bool {
            while let Some((key, write)) = acked.peek() {
                if entry.as_ref().is_some_and(|e| e.key.as_ref() < &key[..]) {
                    break;
                }
                let (key, write) = (*key, *write);
                acked.next();
                let shadows = entry.as_ref().is_some_and(|e| e.key.as_ref() == &key[..]);
                if let Some(value) = &write.value {
                    let live = Live {
                        key: key[..].into(),
                        value: value[..].into(),
                        partition: write.partition,
                        offset: write.offset,
                    };
                    if !visit(live) {
                        return false;
                    }
                }
                if shadows {
                    return true;
                }
            }
            match entry {
                Some(entry) => visit(entry),
                None => true,
            }
        };
        let within = |key: &[u8]| key.starts_with(prefix);
        if let Some(memory) = &inner.memory {
            for slot in memory.range_from(lower) {
                if !within(slot.key()) {
                    break;
                }
                let live = Live {
                    key: slot.key().into(),
                    value: slot.value().into(),
                    partition: slot.partition,
                    offset: slot.offset,
                };
                if !merge(Some(live)) {
                    return Ok(());
                }
            }
        } else {
            // `false` once the visitor asked to stop (not when the prefix ended).
            let mut wanted = true;
            self.disk().range_from(lower, |key, entry| {
                if !within(key) {
                    return false;
                }
                wanted = merge(Some(Live {
                    key: key.to_vec().into(),
                    value: entry.value.into(),
                    partition: entry.partition,
                    offset: entry.offset,
                }));
                wanted
            })?;
            if !wanted {
                return Ok(());
            }
        }
        merge(None);
        Ok(())
    }

    /// Number of live keys (acknowledged writes not yet consumed included).
    pub fn len(&self) -> usize {
        let inner = self.inner.read();
        let table = match &inner.memory {
            Some(memory) => memory.len(),
            None => self.disk().len(),
        };
        let mut len = table as isize;
        for (key, write) in &inner.acked {
            let in_table = self.in_table(&inner, key).unwrap_or(false);
            len += write.value.is_some() as isize - in_table as isize;
        }
        len.max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes the memory table holds beyond its entries' own key and
    /// value allocations (0 for the disk backend).
    pub fn memory_overhead_bytes(&self) -> usize {
        self.inner
            .read()
            .memory
            .as_ref()
            .map_or(0, MemoryTable::overhead_bytes)
    }

    /// Records a write the broker acknowledged at `(partition, offset)`, so reads
    /// see it before the consumer gets there.
    pub fn acknowledge(&self, key: &[u8], value: Option<Bytes>, partition: i32, offset: i64) {
        let mut inner = self.inner.write();
        let Some(position) = inner.positions.get(partition as usize).copied() else {
            return;
        };
        if offset < position {
            // The consumer already applied it (and maybe something newer).
            return;
        }
        if inner
            .acked
            .get(key)
            .is_some_and(|existing| existing.offset > offset)
        {
            return;
        }
        inner.acked.insert(
            key.into(),
            Acked {
                value,
                partition,
                offset,
            },
        );
    }

    /// Up to `count` live keys from `cursor` on, and the cursor for the rest
    /// (0 when there is none); 0 starts a scan.
    ///
    /// The cursor is a position in the table that a key keeps for as long as
    /// it is live (its slot in memory, its sequence number on disk), so a key
    /// present from the first call to the last is returned at least once
    /// (twice only if this instance's unapplied write of it crosses another
    /// record for it).
    /// Keys written or deleted meanwhile may or may not be returned, as in
    /// Redis; acknowledged writes the consumer has not applied yet come with
    /// the last page. A cursor means nothing to another instance, and after
    /// a restart only with the disk backend.
    pub fn scan_from(&self, cursor: u64, count: usize) -> Result<(Vec<Bytes>, u64), StateError> {
        let count = count.max(1);
        let inner = self.inner.read();
        let (page, next): (Vec<Bytes>, Option<u64>) = match &inner.memory {
            Some(memory) => {
                let mut slots = memory.slots_from(cursor as usize);
                let page = slots
                    .by_ref()
                    .take(count)
                    .map(|(_, slot)| Bytes::copy_from_slice(slot.key()))
                    .collect();
                (page, slots.next().map(|(id, _)| id as u64))
            }
            None => {
                let (keys, next) = self.disk().keys_from(cursor, count)?;
                (keys.into_iter().map(Bytes::from).collect(), next)
            }
        };
        // An acknowledged delete hides a key the consumer has not removed yet.
        let mut keys: Vec<Bytes> = page
            .into_iter()
            .filter(|key| inner.acked.get(&key[..]).is_none_or(|w| w.value.is_some()))
            .collect();
        if next.is_none() {
            for (key, write) in &inner.acked {
                if write.value.is_some() && !self.in_table(&inner, key)? {
                    keys.push(Bytes::copy_from_slice(key));
                }
            }
        }
        Ok((keys, next.unwrap_or(0)))
    }

    /// Applies the consumer's events in order, then publishes the new
    /// positions. On success `events` is left empty; on a disk error nothing
    /// was applied and the same events can be retried.
    pub fn apply(&self, events: &mut Vec<Event>) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        // Only this (the consumer's) thread moves positions.
        let mut positions = self.inner.read().positions.clone();
        let mut ends = Vec::new();
        let mut fresh = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            match event {
                Event::Record(record) => {
                    if advance(&mut positions, record.partition, record.offset) {
                        fresh.push(i);
                    }
                }
                Event::Skipped { partition, offset } => {
                    advance(&mut positions, *partition, *offset);
                }
                Event::EndOfPartition(partition) => ends.push(*partition),
            }
        }
        let applied = fresh.len() as u64;
        if let Some(disk) = &self.disk {
            let mut at_end = vec![None; positions.len()];
            for event in events.iter() {
                let (partition, end) = match event {
                    Event::Record(record) => (record.partition, false),
                    Event::Skipped { partition, .. } => (*partition, false),
                    Event::EndOfPartition(partition) => (*partition, true),
                };
                if let Some(slot) = at_end.get_mut(partition as usize) {
                    *slot = Some(end);
                }
            }
            let records: Vec<&Record> = fresh
                .iter()
                .map(|i| match &events[*i] {
                    Event::Record(record) => record,
                    _ => unreachable!("fresh holds records"),
                })
                .collect();
            disk.apply(&records, &positions, &at_end)?;
            let mut inner = self.inner.write();
            for record in records {
                inner.forget_acked(record);
            }
            inner.positions.clone_from(&positions);
        } else {
            let mut inner = self.inner.write();
            let mut fresh = fresh.into_iter().peekable();
            for (i, event) in events.drain(..).enumerate() {
                if fresh.next_if_eq(&i).is_none() {
                    continue;
                }
                let Event::Record(record) = event else {
                    unreachable!("fresh holds records")
                };
                let visible = inner.acked.contains_key(record.key());
                inner.forget_acked(&record);
                inner
                    .memory
                    .as_mut()
                    .expect("memory backend")
                    .apply(record, visible);
            }
            inner.positions.clone_from(&positions);
        }
        events.clear();
        self.progress.send_modify(|progress| {
            progress.records_applied += applied;
            let bootstrap = &mut progress.bootstrap;
            for (p, position) in positions.iter().enumerate() {
                if *position >= bootstrap.targets[p] {
                    bootstrap.reached[p] = true;
                }
            }
            // Reaching the end also covers a target that offsets never land on
            // exactly: transaction markers at the tail are not delivered.
            for p in ends {
                if let Some(reached) = bootstrap.reached.get_mut(p as usize) {
                    *reached = true;
                }
            }
            progress.positions = positions;
            if progress.bootstrap.is_done() {
                self.bootstrapped.store(true, Ordering::Release);
            }
        });
        Ok(())
    }

    /// Makes the disk checkpoint durable (a no-op in memory).
    pub fn sync(&self) -> Result<(), StateError> {
        match &self.disk {
            Some(disk) => disk.sync(),
            None => Ok(()),
        }
    }

    /// A receiver that observes every published [`Progress`].
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits until every partition's position reached `targets[p]`
    /// (i.e. every record below it is applied), or `timeout` passes.
    /// Returns `false` on timeout or when the view is closed.
    pub async fn wait_for_positions(&self, targets: &[i64], timeout: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        let caught_up = |p: &Progress| {
            targets
                .iter()
                .zip(&p.positions)
                .all(|(target, position)| position >= target)
        };
        let wait = async {
            loop {
                if caught_up(&rx.borrow_and_update()) {
                    return true;
                }
                if self.closed.load(Ordering::Acquire) || rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Waits until the start-up read finished.
    pub async fn wait_bootstrapped(&self) -> bool {
        let mut rx = self.progress.subscribe();
        loop {
            if rx.borrow_and_update().bootstrap.is_done() {
                return true;
            }
            if self.closed.load(Ordering::Acquire) || rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Wakes every waiter; they return `false`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.progress.send_modify(|_| {});
    }
}

impl Inner {
    /// Drops the acknowledged write `record` supersedes (its own, or older).
    fn forget_acked(&mut self, record: &Record) {
        if self
            .acked
            .get(record.key())
            .is_some_and(|w| w.offset <= record.offset)
        {
            self.acked.remove(record.key());
        }
    }
}

/// Moves `partition`'s position past `offset`; `false` if it was already
/// applied (a duplicate delivery after a reconnect) or unknown.
fn advance(positions: &mut [i64], partition: i32, offset: i64) -> bool {
    match positions.get_mut(partition as usize) {
        Some(position) if offset >= *position => {
            *position = offset + 1;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(p: i32, o: i64, k: &str, v: &str) -> Event {
        Event::Record(Record::put(p, o, k.as_bytes(), v.as_bytes()))
    }

    fn del(p: i32, o: i64, k: &str) -> Event {
        Event::Record(Record::tombstone(p, o, k.as_bytes()))
    }

    fn apply(view: &View, mut events: Vec<Event>) {
        view.apply(&mut events).unwrap();
        assert!(events.is_empty());
    }

    /// Puts each key (value "v") at offsets 0, 1, … of partition 0.
    fn put_each(view: &View, keys: &[String]) {
        let events = keys
            .iter()
            .enumerate()
            .map(|(i, k)| put(0, i as i64, k, "v"))
            .collect();
        apply(view, events);
    }

    fn value(view: &View, k: &str) -> Option<String> {
        view.get(k.as_bytes())
            .unwrap()
            .map(|v| String::from_utf8(v.value.to_vec()).unwrap())
    }

    #[test]
    fn later_records_win_and_tombstones_delete() {
        let view = View::new(vec![3]);
        apply(
            &view,
            vec![put(0, 0, "a", "1"), put(0, 1, "a", "2"), del(0, 2, "a")],
        );
        assert_eq!(value(&view, "a"), None);
        apply(&view, vec![put(0, 3, "a", "3")]);
        assert_eq!(value(&view, "a").as_deref(), Some("3"));
        assert!(view.progress().bootstrap.is_done());
    }

    #[test]
    fn acknowledged_write_is_visible_until_the_consumer_applies_a_newer_one() {
        let view = View::new(vec![0]);
        apply(&view, vec![put(0, 0, "k", "old")]);
        view.acknowledge(b"k", Some(Bytes::from_static(b"mine")), 0, 5);
        assert_eq!(value(&view, "k").as_deref(), Some("mine"));
        // Records before our write do not hide it.
        apply(&view, vec![put(0, 3, "k", "other")]);
        assert_eq!(value(&view, "k").as_deref(), Some("mine"));
        // Our own record arrives: same value, now from the map.
        apply(&view, vec![put(0, 5, "k", "mine")]);
        assert_eq!(value(&view, "k").as_deref(), Some("mine"));
        // A later record from anywhere wins.
        apply(&view, vec![put(0, 6, "k", "newer")]);
        assert_eq!(value(&view, "k").as_deref(), Some("newer"));
    }

    #[test]
    fn acknowledgement_of_an_applied_offset_is_ignored() {
        let view = View::new(vec![0]);
        apply(&view, vec![put(0, 0, "k", "a"), put(0, 1, "k", "b")]);
        view.acknowledge(b"k", Some(Bytes::from_static(b"a")), 0, 0);
        assert_eq!(value(&view, "k").as_deref(), Some("b"));
    }

    #[test]
    fn acknowledged_delete_hides_the_key_in_get_scan_and_len() {
        let view = View::new(vec![0]);
        apply(&view, vec![put(0, 0, "a", "1"), put(0, 1, "b", "2")]);
        view.acknowledge(b"a", None, 0, 7);
        view.acknowledge(b"c", Some(Bytes::from_static(b"3")), 0, 8);
        assert_eq!(value(&view, "a"), None);
        let keys: Vec<_> = view
            .scan(b"", None, 10, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![Bytes::from_static(b"b"), Bytes::from_static(b"c")]
        );
        assert_eq!(view.len(), 2);
    }

    #[test]
    fn scan_honours_prefix_start_after_and_limit() {
        let view = View::new(vec![0]);
        let events = ["a1", "b1", "b2", "b3", "c1"]
            .iter()
            .enumerate()
            .map(|(i, k)| put(0, i as i64, k, "v"))
            .collect();
        apply(&view, events);
        let page = |after: Option<&[u8]>, limit| -> Vec<Bytes> {
            view.scan(b"b", after, limit, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(page(None, 2), vec![&b"b1"[..], &b"b2"[..]]);
        assert_eq!(page(Some(b"b2"), 2), vec![&b"b3"[..]]);
        assert_eq!(page(Some(b"a"), 1), vec![&b"b1"[..]]);
        // A byte budget cuts the page short, but never to nothing.
        assert_eq!(view.scan(b"b", None, 10, 5).unwrap().len(), 2);
        assert_eq!(view.scan(b"b", None, 10, 1).unwrap().len(), 1);
    }

    #[test]
    fn scan_cursor_returns_every_key_that_stays_despite_concurrent_changes() {
        let view = View::new(vec![0]);
        let keys: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
        put_each(&view, &keys);
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = 0;
        let mut offset = 100;
        let mut calls = 0;
        loop {
            let (page, next) = view.scan_from(cursor, 7).unwrap();
            seen.extend(page.iter().map(|k| String::from_utf8(k.to_vec()).unwrap()));
            // Between calls: overwrite a key already seen and one not yet
            // seen, delete one, add one, acknowledge one.
            let changes = vec![
                put(0, offset, &keys[calls % 100], "changed"),
                put(0, offset + 1, &keys[99 - calls % 100], "changed"),
                del(0, offset + 2, &format!("temp{}", calls.saturating_sub(1))),
                put(0, offset + 3, &format!("temp{calls}"), "new"),
            ];
            offset += 4;
            apply(&view, changes);
            view.acknowledge(
                keys[(calls * 3) % 100].as_bytes(),
                Some(Bytes::from_static(b"a")),
                0,
                10_000 + calls as i64,
            );
            calls += 1;
            if next == 0 {
                break;
            }
            cursor = next;
            assert!(calls < 1000, "the scan must end");
        }
        for key in &keys {
            assert!(seen.contains(key), "{key} was skipped");
        }
        assert_eq!(view.len(), 101);
    }

    #[test]
    fn duplicate_delivery_does_not_roll_back() {
        let view = View::new(vec![0]);
        apply(&view, vec![put(0, 0, "k", "1"), put(0, 1, "k", "2")]);
        apply(&view, vec![put(0, 0, "k", "1")]);
        assert_eq!(value(&view, "k").as_deref(), Some("2"));
    }

    #[test]
    fn bootstrap_completes_on_targets_or_end_of_partition() {
        let view = View::new(vec![2, 5, 0]);
        assert!(!view.progress().bootstrap.is_done());
        apply(&view, vec![put(0, 1, "a", "1")]);
        assert!(!view.progress().bootstrap.is_done());
        apply(&view, vec![Event::EndOfPartition(1)]);
        assert!(view.progress().bootstrap.is_done());
    }

    #[tokio::test]
    async fn waiting_for_positions_returns_once_applied() {
        let view = std::sync::Arc::new(View::new(vec![0]));
        let waiter = {
            let view = view.clone();
            tokio::spawn(async move { view.wait_for_positions(&[2], Duration::from_secs(5)).await })
        };
        apply(&view, vec![put(0, 0, "a", "1")]);
        apply(&view, vec![put(0, 1, "a", "2")]);
        assert!(waiter.await.unwrap());
        assert!(
            !view
                .wait_for_positions(&[3], Duration::from_millis(10))
                .await
        );
    }

    fn disk_view(dir: &tempfile::TempDir, targets: Vec<i64>) -> (View, Option<Checkpoint>) {
        let (table, checkpoint) = Table::open_disk(&dir.path().join("t.redb")).unwrap();
        let positions = match &checkpoint {
            Some(c) => c.positions.clone(),
            None => {
                table
                    .reset(&Checkpoint {
                        topic: "t".into(),
                        topic_id: None,
                        positions: vec![0; targets.len()],
                        saved_at: None,
                    })
                    .unwrap();
                vec![0; targets.len()]
            }
        };
        (View::with_table(table, positions, targets), checkpoint)
    }

    #[test]
    fn disk_view_reads_like_the_memory_view() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, _) = disk_view(&dir, vec![0]);
        let memory = View::new(vec![0]);
        let events = || {
            vec![
                put(0, 0, "a1", "1"),
                put(0, 1, "b1", "2"),
                put(0, 2, "b2", "3"),
                put(0, 3, "a1", "4"),
                del(0, 4, "b1"),
                put(0, 5, "c1", "5"),
                put(0, 4, "b1", "duplicate delivery, ignored"),
            ]
        };
        for view in [&disk, &memory] {
            apply(view, events());
            view.acknowledge(b"b2", None, 0, 9);
            view.acknowledge(b"b3", Some(Bytes::from_static(b"6")), 0, 10);
        }
        for key in ["a1", "b1", "b2", "b3", "c1", "zz"] {
            assert_eq!(
                disk.get(key.as_bytes()).unwrap(),
                memory.get(key.as_bytes()).unwrap(),
                "{key}"
            );
        }
        assert_eq!(
            disk.scan(b"", None, 100, usize::MAX).unwrap(),
            memory.scan(b"", None, 100, usize::MAX).unwrap()
        );
        assert_eq!(disk.keys(b"b").unwrap(), memory.keys(b"b").unwrap());
        assert_eq!(disk.len(), 3);
        assert_eq!(memory.len(), 3);
        let all = |view: &View| {
            let (mut keys, mut cursor) = (Vec::new(), 0);
            loop {
                let (page, next) = view.scan_from(cursor, 1).unwrap();
                keys.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            keys.sort();
            keys
        };
        assert_eq!(all(&disk), all(&memory));
        assert_eq!(all(&disk).len(), 3);
    }

    #[test]
    fn disk_view_reopens_at_its_checkpoint_with_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (view, checkpoint) = disk_view(&dir, vec![0, 0]);
            assert!(checkpoint.is_none());
            apply(
                &view,
                vec![
                    put(0, 0, "a", "1"),
                    put(1, 0, "b", "2"),
                    put(1, 1, "c", "3"),
                ],
            );
            apply(&view, vec![del(1, 2, "c"), put(0, 1, "a", "4")]);
            view.sync().unwrap();
        }
        let (view, checkpoint) = disk_view(&dir, vec![2, 3]);
        let checkpoint = checkpoint.expect("a checkpoint");
        assert_eq!(checkpoint.positions, vec![2, 3]);
        assert_eq!(checkpoint.topic, "t");
        assert!(checkpoint.saved_at.is_some());
        assert!(
            view.is_bootstrapped(),
            "nothing to read past the checkpoint"
        );
        assert_eq!(value(&view, "a").as_deref(), Some("4"));
        assert_eq!(value(&view, "b").as_deref(), Some("2"));
        assert_eq!(value(&view, "c"), None);
        assert_eq!(view.len(), 2);
    }

    #[test]
    fn memory_overhead_per_key_is_small() {
        let view = View::new(vec![0]);
        let n = 200_000;
        let value = [b'v'; 100];
        for chunk in (0..n).collect::<Vec<i64>>().chunks(View::MAX_BATCH) {
            let events = chunk
                .iter()
                .map(|i| {
                    let key = format!(
                        "key-{:012}",
                        (*i as u64).wrapping_mul(2_654_435_761) % 1_000_000_007
                    );
                    Event::Record(Record::put(0, *i, key.as_bytes(), &value))
                })
                .collect();
            apply(&view, events);
        }
        assert_eq!(view.len(), n as usize);
        // Beyond each entry's single key ‖ value allocation: the slot, the
        // hash index and the sorted index.
        let per_key = view.memory_overhead_bytes() as f64 / n as f64;
        assert!(per_key < 60.0, "{per_key:.1} bytes of overhead per key");
    }

    // Regression: a key readable through the overlay when a SCAN began was
    // applied into a recycled slot below the cursor and never returned.
    #[test]
    fn scan_returns_a_key_applied_mid_scan_that_was_readable_all_along() {
        let view = View::new(vec![0]);
        let keys: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
        put_each(&view, &keys);
        apply(&view, vec![del(0, 20, "k03")]); // frees slot 3
        view.acknowledge(b"new", Some(Bytes::from_static(b"n")), 0, 21);
        let (mut seen, mut cursor) = (Vec::new(), 0);
        let (page, next) = view.scan_from(cursor, 10).unwrap();
        seen.extend(page);
        cursor = next;
        apply(&view, vec![put(0, 21, "new", "n")]);
        while cursor != 0 {
            let (page, next) = view.scan_from(cursor, 10).unwrap();
            seen.extend(page);
            cursor = next;
        }
        assert!(seen.contains(&Bytes::from_static(b"new")), "{seen:?}");
        assert_eq!(seen.len(), 20);
    }

    #[test]
    fn checkpoint_time_is_when_the_view_was_last_caught_up_not_when_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let reopen = |dir: &tempfile::TempDir| {
            let (_, checkpoint) = Table::open_disk(&dir.path().join("t.redb")).unwrap();
            checkpoint.unwrap().saved_at.unwrap()
        };
        let reset_at;
        {
            let (view, _) = disk_view(&dir, vec![0]);
            reset_at = std::time::SystemTime::now();
            std::thread::sleep(Duration::from_millis(20));
            // Records, but never the partition's end: nothing newer is known applied.
            apply(&view, vec![put(0, 0, "a", "1")]);
            view.sync().unwrap();
        }
        assert!(
            reopen(&dir) <= reset_at,
            "a view behind the log keeps its older time"
        );
        let after_end;
        {
            let (view, _) = disk_view(&dir, vec![0]);
            apply(&view, vec![put(0, 1, "b", "2"), Event::EndOfPartition(0)]);
            after_end = std::time::SystemTime::now();
            std::thread::sleep(Duration::from_millis(20));
            view.sync().unwrap();
        }
        assert!(reopen(&dir) >= after_end, "at the end, the time is now");
    }
}
