//! The change hook: every batch the consumer applies is published, once and
//! in log order, as a [`ChangeBatch`] to whoever subscribed (watch streams,
//! keyspace notifications). This is the one place both backends report what
//! a record did to a key.
//!
//! Publishing never waits: the feed is a bounded broadcast ring, and a
//! subscriber that falls more than its capacity behind is told it lagged
//! (`RecvError::Lagged`) when it next receives, instead of slowing the
//! consumer, the other subscribers or writes. Batches are only built while
//! someone is subscribed or the recent window is on, so an instance nobody
//! ever watched copies nothing.
//!
//! The **recent window** keeps the latest batches, bounded by bytes, so that
//! a watch resuming from a recent token replays them from memory instead of
//! reading the topic. It is switched on by the first watch that asks for it
//! and stays on.

use std::{collections::VecDeque, sync::Arc};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::record::Record;

/// What one applied record did to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Bytes,
    /// The new value; `None`: the key was deleted (a tombstone).
    pub value: Option<Bytes>,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp in milliseconds since the epoch, where the
    /// broker gave one.
    pub timestamp: Option<i64>,
}

impl From<&Record> for Change {
    fn from(record: &Record) -> Self {
        Change {
            key: Bytes::copy_from_slice(record.key()),
            value: record.value().map(Bytes::copy_from_slice),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
        }
    }
}

/// The records of one applied batch, in the order they were applied (log
/// order within each partition), and the positions right after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    pub changes: Vec<Change>,
    /// The next offset to apply, per partition, once this batch is applied:
    /// where a reader resumes to see exactly what follows it.
    pub positions: Vec<i64>,
}

/// A subscription: receives every batch applied after it was taken.
pub type ChangeReceiver = broadcast::Receiver<Arc<ChangeBatch>>;

/// Batches a subscriber may fall behind before it is told it lagged.
pub const DEFAULT_CHANGE_CAPACITY: usize = 1024;

/// Bytes of recent changes kept for resuming watches from memory.
pub const DEFAULT_RECENT_BYTES: usize = 16 << 20;

impl ChangeBatch {
    /// Bytes of keys and values it holds, for the recent window's bound.
    fn bytes(&self) -> usize {
        self.changes
            .iter()
            .map(|c| c.key.len() + c.value.as_ref().map_or(0, Bytes::len) + 64)
            .sum()
    }
}

/// The recent window as a subscriber receives it: the batches it holds, and
/// the positions they start from (every change at or after `floor[p]` in
/// partition `p`, up to the view's positions, is in `batches`).
#[derive(Debug, Clone, Default)]
pub struct RecentChanges {
    pub floor: Vec<i64>,
    pub batches: Vec<Arc<ChangeBatch>>,
}

#[derive(Debug, Default)]
struct Recent {
    /// `None` until a watch switches the window on.
    floor: Option<Vec<i64>>,
    batches: VecDeque<Arc<ChangeBatch>>,
    bytes: usize,
}

/// The publishing side, owned by the view.
#[derive(Debug)]
pub(super) struct ChangeFeed {
    sender: broadcast::Sender<Arc<ChangeBatch>>,
    recent: Mutex<Recent>,
    recent_max_bytes: usize,
}

impl ChangeFeed {
    pub fn new(capacity: usize, recent_max_bytes: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            recent: Mutex::new(Recent::default()),
            recent_max_bytes,
        }
    }

    /// Whether a batch published now would be kept or received.
    pub fn is_watched(&self) -> bool {
        self.sender.receiver_count() > 0 || self.recent.lock().floor.is_some()
    }

    pub fn subscribe(&self) -> ChangeReceiver {
        self.sender.subscribe()
    }

    /// The recent window, switched on (from `positions`, the view's now)
    /// if it was off. Called under the view's lock, as `publish` is.
    pub fn recent(&self, positions: &[i64]) -> RecentChanges {
        let mut recent = self.recent.lock();
        if self.recent_max_bytes == 0 {
            return RecentChanges {
                floor: positions.to_vec(),
                batches: Vec::new(),
            };
        }
        let floor = recent
            .floor
            .get_or_insert_with(|| positions.to_vec())
            .clone();
        RecentChanges {
            floor,
            batches: recent.batches.iter().cloned().collect(),
        }
    }

    /// Publishes without waiting; a batch nobody receives is dropped. The
    /// recent window keeps it, dropping its oldest batches to stay in bounds.
    pub fn publish(&self, batch: ChangeBatch) {
        let batch = Arc::new(batch);
        {
            let mut recent = self.recent.lock();
            if recent.floor.is_some() {
                recent.bytes += batch.bytes();
                recent.batches.push_back(batch.clone());
                while recent.bytes > self.recent_max_bytes {
                    let Some(oldest) = recent.batches.pop_front() else {
                        break;
                    };
                    recent.bytes -= oldest.bytes();
                    recent.floor = Some(oldest.positions.clone());
                }
            }
        }
        let _ = self.sender.send(batch);
    }
}
