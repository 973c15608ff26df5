//! Where the view keeps its live entries: the [`Table`] trait, and its two
//! implementations, [`memory`] (this process's heap) and [`disk`] (a redb
//! file checkpointed with the offsets it reflects).
//!
//! A table holds only what the consumer applied; the overlay of this
//! instance's acknowledged writes, the positions and the change feed belong
//! to the view around it (`state/mod.rs`).
//!
//! Applying a batch is two steps, so that a backend with transactions of its
//! own never makes readers wait for its commit:
//! 1. [`Table::commit`], called by the consumer thread *without* the view's
//!    lock: a backend that persists writes the records and the positions
//!    after them in one transaction. Readers may see the records from then on.
//! 2. [`Table::install`], called under the view's write lock: a backend that
//!    lives in memory takes the records over, atomically with the view's
//!    overlay and positions.
//!
//! Each backend does its work in one step and nothing in the other.

pub(crate) mod disk;
pub(crate) mod memory;
mod sorted;

use std::{borrow::Cow, fmt, ops::Bound, path::PathBuf};

use bytes::Bytes;

use crate::{collection::Type, record::Record};

/// The view's entries could not be read or written (`--state disk`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error(
        "the disk state {0} is open in another process (another kafkv with the same --data-dir \
         and --topic?); stop that one or give this one its own --data-dir"
    )]
    InUse(PathBuf),
    #[error(
        "the disk state {path} failed: {source}; kafkv can rebuild it from the topic if you delete the file"
    )]
    Disk {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
}

/// A live value and where it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub partition: i32,
    pub offset: i64,
    /// When the key expires (ms since the epoch); `None`: never.
    pub expires_at: Option<i64>,
    pub ty: Type,
}

impl Versioned {
    /// Whether the key holds a string (what every string command needs).
    pub fn is_string(&self) -> bool {
        self.ty == Type::String
    }

    /// Whether the entry has expired by `now` (ms since the epoch).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A key whose expiry has passed, as the sweeper needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub key: Bytes,
    pub partition: i32,
    pub expires_at: i64,
    /// Where the next [`Table::due`] call resumes after this entry.
    pub cursor: (i64, u64),
}

/// A live entry as a scan sees it, borrowed from the table where it can be.
pub(crate) struct Live<'a> {
    pub key: Cow<'a, [u8]>,
    pub value: Cow<'a, [u8]>,
    pub partition: i32,
    pub offset: i64,
    pub expires_at: Option<i64>,
    pub ty: Type,
}

impl Live<'_> {
    /// The entry copied out of the table: what scans and snapshots return.
    pub fn to_owned_entry(&self) -> (Bytes, Versioned) {
        (
            Bytes::copy_from_slice(&self.key),
            Versioned {
                value: Bytes::copy_from_slice(&self.value),
                partition: self.partition,
                offset: self.offset,
                expires_at: self.expires_at,
                ty: self.ty,
            },
        )
    }

    /// Whether the entry has expired by `now` (ms since the epoch).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A backend of the view. Only the consumer thread calls [`commit`](Table::commit),
/// [`install`](Table::install) and [`sync`](Table::sync); readers call the rest
/// concurrently.
pub(crate) trait Table: Send + Sync + fmt::Debug {
    /// The live entry for `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError>;

    /// Whether `key` is live.
    fn contains(&self, key: &[u8]) -> Result<bool, StateError> {
        Ok(self.get(key)?.is_some())
    }

    /// Number of live keys.
    fn len(&self) -> usize;

    /// Hands live entries in key order from `lower` on to `visit`, until it
    /// returns `false` or the entries end.
    fn visit(
        &self,
        lower: Bound<&[u8]>,
        visit: &mut dyn FnMut(Live<'_>) -> bool,
    ) -> Result<(), StateError>;

    /// [`Table::visit`], and the positions the visited entries reflect when
    /// the table keeps its own (`None`: the view's positions, read under its
    /// lock, are the ones).
    fn visit_at(
        &self,
        lower: Bound<&[u8]>,
        visit: &mut dyn FnMut(Live<'_>) -> bool,
    ) -> Result<Option<Vec<i64>>, StateError> {
        self.visit(lower, visit).map(|()| None)
    }

    /// Up to `count` live keys at or after the `SCAN` cursor `cursor`, and the
    /// cursor of the key after them (`None` at the end). A key keeps its
    /// cursor for as long as it is live. Keys expired by `now` are left out
    /// of the page (they still count towards `count`, as in Redis).
    fn cursor_page(
        &self,
        cursor: u64,
        count: usize,
        now: i64,
    ) -> Result<(Vec<Bytes>, Option<u64>), StateError>;

    /// A cursor above every cursor a live key holds now (0 when empty): the
    /// range `RANDOMKEY` picks from.
    fn cursor_bound(&self) -> Result<u64, StateError>;

    /// The live key holding exactly `cursor`, if one does and it has not
    /// expired by `now`.
    fn key_at(&self, cursor: u64, now: i64) -> Result<Option<Bytes>, StateError>;

    /// How many entries have an expiry, and how many of those have expired
    /// by `now` (still in the table until their SWEEP is applied).
    fn volatile_counts(&self, now: i64) -> Result<(usize, usize), StateError>;

    /// Up to `limit` entries expired by `upto`, earliest first, after the
    /// cursor of the last one a previous call returned. From the start
    /// (`None`), when more than `limit` are due, a backend may return
    /// `limit` of them that are not the earliest of all (the memory table
    /// stops its walk of an unordered slab there); paging with a cursor
    /// walks every one in order.
    fn due(
        &self,
        upto: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<Due>, StateError>;

    /// Step 1 of applying `records` (new to this table, in log order per
    /// partition): persist them with `positions` (the next offset per
    /// partition after them) as the checkpoint, in one transaction.
    /// `at_end[p]` says whether the batch left partition `p` at its end
    /// (`Some(true)`), at a record (`Some(false)`) or did not touch it. On an
    /// error nothing was applied and the same batch may be retried.
    fn commit(
        &self,
        records: &[&Record],
        positions: &[i64],
        at_end: &[Option<bool>],
    ) -> Result<(), StateError>;

    /// Step 2, under the view's write lock: take `records` over. `visible[i]`
    /// says whether record `i`'s key was already readable through the
    /// overlay: a new key that was must not take a cursor a running `SCAN`
    /// has passed.
    fn install(&self, records: Vec<Record>, visible: &[bool]);

    /// Makes everything committed durable (nothing to do in memory).
    fn sync(&self) -> Result<(), StateError>;

    /// Heap bytes the table holds beyond its entries' own key and value
    /// allocations (0 where entries are not in memory).
    #[cfg(test)]
    fn overhead_bytes(&self) -> usize {
        0
    }
}
