//! The change hook: every batch the consumer applies is published, once and
//! in log order, as a [`ChangeBatch`] to whoever subscribed (watch streams,
//! keyspace notifications). This is the one place both backends report what
//! a record did to a key.
//!
//! Publishing never waits: the feed is a bounded broadcast ring, and a
//! subscriber that falls more than its capacity behind is told it lagged
//! (`RecvError::Lagged`) when it next receives, instead of slowing the
//! consumer, the other subscribers or writes. Batches are only built while
//! someone is subscribed, so an instance nobody watches copies nothing.

use std::sync::Arc;

use bytes::Bytes;
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

/// The publishing side, owned by the view.
#[derive(Debug)]
pub(super) struct ChangeFeed {
    sender: broadcast::Sender<Arc<ChangeBatch>>,
}

impl ChangeFeed {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// Whether anyone would receive a batch published now.
    pub fn is_watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn subscribe(&self) -> ChangeReceiver {
        self.sender.subscribe()
    }

    /// Publishes without waiting; a batch nobody receives is dropped.
    pub fn publish(&self, batch: ChangeBatch) {
        let _ = self.sender.send(Arc::new(batch));
    }
}
