//! The materialized view: the topic's live keys (in a [`Table`], memory or
//! disk), this instance's acknowledged-but-not-yet-consumed writes (the
//! [`overlay`]), the per-partition positions ([`progress`]) and the feed of
//! applied changes ([`changes`]).
//!
//! - `table/`: where entries live; the memory and the disk backend.
//! - `overlay.rs`: read-your-writes before the consumer catches up.
//! - `progress.rs`: positions, bootstrap, waiting for an offset.
//! - `changes.rs`: the change hook.
//! - `scan.rs`: ordered scans and the `SCAN` cursor over table and overlay.
//! - this file: [`View`], which holds them together, and [`View::apply`],
//!   the one place that decides what a record does to a key.
//!
//! Invariants:
//! - `positions[p]` is the offset of the next record to apply from partition
//!   `p`; every record of `p` below it is reflected in the table. With the
//!   disk backend the same positions are the checkpoint, committed in the
//!   same transaction as the records.
//! - Only the consumer thread applies records, so it can read `positions`,
//!   commit a batch, and only then publish the new positions.

pub(crate) mod changes;
mod overlay;
pub(crate) mod progress;
mod scan;
pub(crate) mod table;
#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;

use changes::ChangeFeed;
pub use changes::{
    Change, ChangeBatch, ChangeReceiver, DEFAULT_CHANGE_CAPACITY, DEFAULT_RECENT_BYTES,
    RecentChanges,
};
use overlay::{Acked, Overlay};
use progress::Tracker;
pub use progress::{Bootstrap, Progress};
pub(crate) use table::Table;
pub use table::{StateError, Versioned, disk::Checkpoint};

use crate::record::Record;

/// What the consumer reports, in log order per partition.
#[derive(Debug)]
pub enum Event {
    Record(Record),
    /// A record kafkv does not apply (no key, or written by a newer kafkv):
    /// its offset still counts as applied.
    Skipped {
        partition: i32,
        offset: i64,
    },
    /// The consumer reached the partition's end as of its last fetch.
    EndOfPartition(i32),
}

#[derive(Debug)]
struct Inner {
    overlay: Overlay,
    positions: Vec<i64>,
}

/// Live entries under a prefix, in key order, and the positions they reflect.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub entries: Vec<(Bytes, Versioned)>,
    pub positions: Vec<i64>,
}

/// The shared materialized view.
///
/// A `parking_lot::RwLock` rather than a concurrent map: reads take a shared
/// lock for a lookup and a value copy (nanoseconds), the consumer takes the
/// exclusive lock once per batch of at most [`View::MAX_BATCH`] records, so no
/// reader waits long, and one lock keeps the table's in-memory entries, the
/// overlay and `positions` consistent with each other. It is never held
/// across an `.await`. A table with transactions of its own (disk) commits a
/// batch before the lock is taken (see [`Table`]).
#[derive(Debug)]
pub struct View {
    inner: RwLock<Inner>,
    table: Box<dyn Table>,
    tracker: Tracker,
    changes: ChangeFeed,
}

impl View {
    /// The consumer applies at most this many records per lock acquisition.
    pub const MAX_BATCH: usize = 1024;

    /// A view over `table`, which already holds every record below
    /// `positions`; its bootstrap ends at `targets`.
    pub fn new(table: Box<dyn Table>, positions: Vec<i64>, targets: Vec<i64>) -> Self {
        Self {
            inner: RwLock::new(Inner {
                overlay: Overlay::default(),
                positions: positions.clone(),
            }),
            table,
            tracker: Tracker::new(positions, targets),
            changes: ChangeFeed::new(
                changes::DEFAULT_CHANGE_CAPACITY,
                changes::DEFAULT_RECENT_BYTES,
            ),
        }
    }

    /// The same view with a change feed of `capacity` batches per subscriber
    /// and a recent window of `recent_bytes` (see `changes.rs`).
    pub fn with_change_limits(mut self, capacity: usize, recent_bytes: usize) -> Self {
        self.changes = ChangeFeed::new(capacity, recent_bytes);
        self
    }

    /// An empty view in memory whose bootstrap ends at `targets` (one per partition).
    #[cfg(test)]
    pub fn in_memory(targets: Vec<i64>) -> Self {
        let positions = vec![0; targets.len()];
        Self::new(
            Box::<table::memory::MemoryTable>::default(),
            positions,
            targets,
        )
    }

    /// Whether the start-up read finished (cheap: one atomic load).
    pub fn is_bootstrapped(&self) -> bool {
        self.tracker.is_bootstrapped()
    }

    /// The current value of `key`, acknowledged writes of this instance included.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError> {
        let inner = self.inner.read();
        match inner.overlay.get(key) {
            Some(acked) => Ok(acked.versioned()),
            None => self.table.get(key),
        }
    }

    /// Number of live keys (acknowledged writes not yet consumed included).
    pub fn len(&self) -> usize {
        let inner = self.inner.read();
        let mut len = self.table.len() as isize;
        for (key, write) in inner.overlay.iter() {
            let in_table = self.table.contains(key).unwrap_or(false);
            len += write.value.is_some() as isize - in_table as isize;
        }
        len.max(0) as usize
    }

    /// Heap bytes the table holds beyond its entries' own key and value
    /// allocations (0 for the disk backend).
    #[cfg(test)]
    pub fn memory_overhead_bytes(&self) -> usize {
        self.table.overhead_bytes()
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
        inner.overlay.insert(
            key,
            Acked {
                value,
                partition,
                offset,
            },
        );
    }

    /// Applies the consumer's events in order, publishes the applied changes
    /// to change subscribers, then the new positions. On success `events` is
    /// left empty; on a table error nothing was applied and the same events
    /// can be retried.
    pub fn apply(&self, events: &mut Vec<Event>) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        // Only this (the consumer's) thread moves positions.
        let mut positions = self.inner.read().positions.clone();
        let mut ends = Vec::new();
        // Per partition: whether the batch left it at its end or at a record.
        let mut at_end = vec![None; positions.len()];
        // Indexes of the records not applied before (not a redelivery).
        let mut fresh = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let (partition, end) = match event {
                Event::Record(record) => {
                    if advance(&mut positions, record.partition, record.offset) {
                        fresh.push(i);
                    }
                    (record.partition, false)
                }
                Event::Skipped { partition, offset } => {
                    advance(&mut positions, *partition, *offset);
                    (*partition, false)
                }
                Event::EndOfPartition(partition) => {
                    ends.push(*partition);
                    (*partition, true)
                }
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
        self.table.commit(&records, &positions, &at_end)?;

        let mut inner = self.inner.write();
        // Decided under the lock, so a subscription (taken under it too)
        // receives exactly the batches applied after its positions.
        let watched = self.changes.is_watched();
        let mut changes = Vec::with_capacity(if watched { fresh.len() } else { 0 });
        let mut applied = Vec::with_capacity(fresh.len());
        let mut visible = Vec::with_capacity(fresh.len());
        let mut fresh = fresh.into_iter().peekable();
        for (i, event) in events.drain(..).enumerate() {
            if fresh.next_if_eq(&i).is_none() {
                continue;
            }
            let Event::Record(record) = event else {
                unreachable!("fresh holds records")
            };
            if watched {
                changes.push(Change::from(&record));
            }
            visible.push(inner.overlay.contains(record.key()));
            inner.overlay.forget(&record);
            applied.push(record);
        }
        let count = applied.len() as u64;
        self.table.install(applied, &visible);
        inner.positions.clone_from(&positions);
        if !changes.is_empty() {
            self.changes.publish(ChangeBatch {
                changes,
                positions: positions.clone(),
            });
        }
        drop(inner);
        self.tracker.advance(positions, count, &ends);
        Ok(())
    }

    /// A subscription to the changes applied from now on, and the positions
    /// it starts after: it receives every batch applied after them, and none
    /// before.
    pub fn subscribe_changes(&self) -> (ChangeReceiver, Vec<i64>) {
        let inner = self.inner.read();
        (self.changes.subscribe(), inner.positions.clone())
    }

    /// Like [`View::subscribe_changes`], with the recent window (switched on
    /// if it was off) as of the same instant: its batches end exactly where
    /// the subscription begins.
    pub fn subscribe_with_recent(&self) -> (ChangeReceiver, Vec<i64>, RecentChanges) {
        let inner = self.inner.read();
        let recent = self.changes.recent(&inner.positions);
        (self.changes.subscribe(), inner.positions.clone(), recent)
    }

    /// Every live key under `prefix` the consumer has applied (this
    /// instance's unapplied acknowledged writes excluded), in key order, with
    /// the positions it reflects: a snapshot to continue from with changes
    /// after those positions. Holds the view's read lock while it copies.
    pub fn applied_snapshot(&self, prefix: &[u8]) -> Result<Snapshot, StateError> {
        let inner = self.inner.read();
        let mut entries = Vec::new();
        let positions = self
            .table
            .visit_at(std::ops::Bound::Included(prefix), &mut |live| {
                if !live.key.starts_with(prefix) {
                    return false;
                }
                entries.push(live.to_owned_entry());
                true
            })?;
        // The disk table may hold a batch committed but not yet installed:
        // its own positions, read with the entries, are then the right ones.
        Ok(Snapshot {
            entries,
            positions: positions.unwrap_or_else(|| inner.positions.clone()),
        })
    }

    /// Makes the disk checkpoint durable (a no-op in memory).
    pub fn sync(&self) -> Result<(), StateError> {
        self.table.sync()
    }

    pub fn progress(&self) -> Progress {
        self.tracker.progress()
    }

    /// Waits until every partition's position reached `targets[p]`
    /// (i.e. every record below it is applied), or `timeout` passes.
    /// Returns `false` on timeout or when the view is closed.
    pub async fn wait_for_positions(&self, targets: &[i64], timeout: Duration) -> bool {
        self.tracker.wait_for_positions(targets, timeout).await
    }

    /// Waits until the start-up read finished.
    pub async fn wait_bootstrapped(&self) -> bool {
        self.tracker.wait_bootstrapped().await
    }

    /// Wakes every waiter; they return `false`.
    pub fn close(&self) {
        self.tracker.close();
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
