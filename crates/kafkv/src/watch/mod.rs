//! Change streams: [`Watch`] follows what the consumer applies, from now,
//! from a resume [`Token`], or from a snapshot, filtered by key prefix. The
//! HTTP (`/v1/watch`, Server-Sent Events) and Redis (keyspace notifications)
//! front ends adapt it.
//!
//! Guarantees:
//! - **Source**: events come from records the consumer applies (never from
//!   this instance's acknowledged-but-unapplied writes), so every instance
//!   yields the same events, in log order within each partition.
//! - **Exactly once after the start point**: every applied record after the
//!   start is delivered once. Each event's token resumes right after it, on
//!   this instance or another. A record that changed several keys
//!   (`RENAME`, `MSETNX`, `EXEC`) is an event per key, all at its offset;
//!   the tokens of all but the last resume at the record itself, so resuming
//!   from one repeats that record's earlier events instead of missing its
//!   later ones. A token within the recent window (see
//!   `state/changes.rs`) replays from memory; an older one reads the topic
//!   with a consumer of its own (`history.rs`), where compaction may have
//!   left only the latest value of a key changed since: intermediate values
//!   can be missing, the final state never is.
//! - **Expiry**: a token below a partition's log start, or older than the
//!   topic's `delete.retention.ms` (tombstones since may be gone), is refused
//!   with [`WatchError::Expired`]: start again from a snapshot.
//! - **Snapshot**: every live key under the prefix from one consistent view
//!   at positions P, then `SnapshotEnd` with P's token, then every change
//!   after P: no gap, no overlap. P is at least the topic's end offsets when
//!   the watch was asked for, so the snapshot has every write acknowledged
//!   before (`Store::watch` catches up first). A key already expired by
//!   this machine's clock is left out, as every read leaves it out; its
//!   SWEEP, when applied after P, is still an `expired` event.
//! - **Slow watchers**: a watch that falls more than the change feed's
//!   capacity behind ends with `Lagged` and the last token it delivered. It
//!   never slows the consumer, writes or other watches.
//! - **Progress**: with nothing to deliver for `progress_every`, a
//!   `Progress` event carries the current token.
//! - **Operation**: a `Put` or `Delete` names what made it ([`ChangeOp`]:
//!   `set`, `del`, `incrby`, `rename_to`, …, as Redis names keyspace
//!   events), with the key's resulting value. Read back from the topic, a
//!   plain record or a repair is a `set` or `del`; an operation record there
//!   cannot be evaluated without the view, so the watch ends `Lagged`.
//! - **Keys that expire** (docs/expiry.md): a `Put` carries the key's expiry, if it
//!   has one. `EXPIRE` and `PERSIST` are `Put`s named `expire` and
//!   `persist`; a SWEEP that deleted its key is a `Delete` named `expired`,
//!   at the SWEEP's offset on every instance. Read back from the topic, a
//!   SWEEP is taken as a delete, as any consumer of the topic takes it: one
//!   that lost to a rewrite is followed by the repair restating the value.

mod history;
pub mod token;

use std::{collections::VecDeque, sync::Arc, time::Duration};

pub use crate::collection::Type;
use bytes::Bytes;
use rdkafka::error::KafkaError;
use tokio::{
    sync::{broadcast::error::RecvError, mpsc},
    time::Instant,
};

pub use self::token::{Token, TokenError};
/// What made a change, as a `Put` or `Delete` reports it.
pub use crate::state::ChangeOp;
use crate::{
    config::StoreConfig,
    state::{Change, ChangeBatch, ChangeReceiver, StateError, View},
};

/// Where a watch starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Start {
    /// With the changes applied after the call.
    #[default]
    Now,
    /// Right after the event that carried this token.
    After(String),
    /// With every live key under the prefix, then the changes after them.
    Snapshot,
}

/// What to watch and from where.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Only keys that begin with these bytes; empty: every key.
    pub prefix: Bytes,
    /// Whether `Put` events carry the value.
    pub values: bool,
    pub start: Start,
    /// How long a watch with nothing to deliver waits before a `Progress` event.
    pub progress_every: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            prefix: Bytes::new(),
            values: true,
            start: Start::Now,
            progress_every: Duration::from_secs(10),
        }
    }
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was set. Snapshot entries are puts too, without a token (a
    /// snapshot cannot be resumed halfway), timestamp or operation.
    Put {
        key: Bytes,
        /// `None` when the watch was opened without values. A collection's
        /// is its encoding ([`crate::collection`]).
        value: Option<Bytes>,
        /// The value's type.
        ty: Type,
        /// What set it (`set`, `incrby`, `append`, `rename_to`, …); `None`
        /// for a snapshot entry.
        op: Option<ChangeOp>,
        /// When the key expires (ms since the epoch); `None`: never.
        expires_at: Option<i64>,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        token: Option<Token>,
    },
    /// The key was deleted (a tombstone, the source of a rename, or a
    /// SWEEP once it expired).
    Delete {
        key: Bytes,
        /// What deleted it: `del`, `rename_from` or `expired`.
        op: ChangeOp,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        token: Token,
    },
    /// The snapshot is complete; changes after it follow.
    SnapshotEnd { token: Token },
    /// Nothing under the prefix changed for a while; the position moved on.
    Progress { token: Token },
    /// The last event: the watcher fell too far behind. Resume with the token.
    Lagged { token: Token },
}

impl WatchEvent {
    /// The event's name on the wire (`event:` in SSE).
    pub fn kind(&self) -> &'static str {
        match self {
            WatchEvent::Put { .. } => "put",
            WatchEvent::Delete { .. } => "delete",
            WatchEvent::SnapshotEnd { .. } => "snapshot-end",
            WatchEvent::Progress { .. } => "progress",
            WatchEvent::Lagged { .. } => "lagged",
        }
    }

    /// The record a put or delete reports (`value` is `None` for a delete,
    /// and for a put when the watch was opened without values); `None` for
    /// the other events.
    pub fn record(&self) -> Option<EventRecord<'_>> {
        match self {
            WatchEvent::Put {
                key,
                value,
                ty,
                op,
                expires_at,
                partition,
                offset,
                timestamp,
                ..
            } => Some(EventRecord {
                key,
                value: value.as_ref(),
                ty: *ty,
                op: *op,
                expires_at: *expires_at,
                partition: *partition,
                offset: *offset,
                timestamp: *timestamp,
            }),
            WatchEvent::Delete {
                key,
                op,
                partition,
                offset,
                timestamp,
                ..
            } => Some(EventRecord {
                key,
                value: None,
                ty: Type::String,
                op: Some(*op),
                expires_at: None,
                partition: *partition,
                offset: *offset,
                timestamp: *timestamp,
            }),
            WatchEvent::SnapshotEnd { .. }
            | WatchEvent::Progress { .. }
            | WatchEvent::Lagged { .. } => None,
        }
    }

    /// The token that resumes right after this event, if it has one.
    pub fn token(&self) -> Option<&Token> {
        match self {
            WatchEvent::Put { token, .. } => token.as_ref(),
            WatchEvent::Delete { token, .. }
            | WatchEvent::SnapshotEnd { token }
            | WatchEvent::Progress { token }
            | WatchEvent::Lagged { token } => Some(token),
        }
    }
}

/// The record behind a put or delete event ([`WatchEvent::record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRecord<'a> {
    pub key: &'a Bytes,
    pub value: Option<&'a Bytes>,
    /// A put's value's type (a string for a delete).
    pub ty: Type,
    /// What made the change (its Redis keyspace-notification event name is
    /// [`ChangeOp::name`]); `None` for a snapshot entry.
    pub op: Option<ChangeOp>,
    /// A put's expiry (ms since the epoch); `None`: never, or a delete.
    pub expires_at: Option<i64>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token is too old to resume from.
    #[error("the watch token has expired: {0}; start again with start=snapshot")]
    Expired(String),
    #[error("the store is still bootstrapping; watch once it is ready")]
    NotReady,
    /// A snapshot could not catch up with the topic first.
    #[error("the snapshot could not catch up with the topic: {0}")]
    CatchUp(#[source] crate::store::ReadError),
    /// The topic could not be read for an older token.
    #[error("could not read the topic to resume the watch: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a watch needs of the store.
#[derive(Clone)]
pub(crate) struct WatchContext {
    pub view: Arc<View>,
    pub config: StoreConfig,
    pub fingerprint: u64,
    pub delete_retention: Duration,
    pub offsets: crate::log::offsets::Offsets,
}

enum Source {
    Live(ChangeReceiver),
    /// Reading the topic up to `target`, then live again.
    Log {
        changes: mpsc::Receiver<Result<Change, history::HistoryError>>,
        target: Vec<i64>,
    },
    Ended,
}

/// A change stream; [`Watch::next`] gives its events.
pub struct Watch {
    context: WatchContext,
    prefix: Bytes,
    values: bool,
    progress_every: Duration,
    /// Per partition, the next offset not yet delivered (or skipped).
    cursor: Vec<i64>,
    pending: VecDeque<WatchEvent>,
    source: Source,
    last_event: Instant,
}

impl Watch {
    pub(crate) async fn open(
        context: WatchContext,
        options: WatchOptions,
    ) -> Result<Watch, WatchError> {
        if !context.view.is_bootstrapped() {
            return Err(WatchError::NotReady);
        }
        let mut watch = Watch {
            prefix: options.prefix,
            values: options.values,
            progress_every: options.progress_every.max(Duration::from_millis(1)),
            cursor: Vec::new(),
            pending: VecDeque::new(),
            source: Source::Ended,
            last_event: Instant::now(),
            context,
        };
        match options.start {
            Start::Now => {
                // Switches the recent window on, so this watch's tokens can
                // be resumed from memory.
                let (changes, positions, _) = watch.context.view.subscribe_with_recent();
                watch.cursor = positions;
                watch.source = Source::Live(changes);
            }
            Start::Snapshot => {
                // Subscribed first: every batch the snapshot does not
                // reflect is received, and those it does are skipped by the
                // cursor (the snapshot's positions).
                let (changes, _, _) = watch.context.view.subscribe_with_recent();
                let snapshot = watch.context.view.applied_snapshot(&watch.prefix)?;
                let now = crate::state::now_ms();
                for (key, entry) in snapshot.entries {
                    // Absent to every read already; its SWEEP follows.
                    if entry.is_expired_at(now) {
                        continue;
                    }
                    watch.pending.push_back(WatchEvent::Put {
                        key,
                        value: watch.values.then_some(entry.value),
                        ty: entry.ty,
                        op: None,
                        expires_at: entry.expires_at,
                        partition: entry.partition,
                        offset: entry.offset,
                        timestamp: None,
                        token: None,
                    });
                }
                watch.cursor = snapshot.positions;
                watch.pending.push_back(WatchEvent::SnapshotEnd {
                    token: watch.token(),
                });
                watch.source = Source::Live(changes);
            }
            Start::After(text) => {
                let partitions = watch.context.view.progress().positions.len();
                let token = Token::decode(&text, watch.context.fingerprint, partitions)?;
                watch.cursor = token.positions.clone();
                if !watch.resume_from_memory() {
                    watch.check_not_expired(&token).await?;
                    watch.read_log()?;
                }
            }
        }
        Ok(watch)
    }

    /// The next event; `None` once the watch ended (after `Lagged`, or when
    /// the store closed).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last_event = Instant::now();
                return Some(event);
            }
            let progress_at = self.last_event + self.progress_every;
            match &mut self.source {
                Source::Ended => return None,
                Source::Live(changes) => {
                    tokio::select! {
                        received = changes.recv() => match received {
                            Ok(batch) => self.apply_batch(&batch),
                            Err(RecvError::Lagged(_)) => return self.end_lagged(),
                            Err(RecvError::Closed) => self.source = Source::Ended,
                        },
                        () = tokio::time::sleep_until(progress_at) => return self.progress(),
                    }
                }
                Source::Log { changes, target } => {
                    tokio::select! {
                        received = changes.recv() => match received {
                            Some(Ok(change)) => self.apply_change(&change, false),
                            Some(Err(error)) => {
                                tracing::warn!(%error, "a watch could not read the topic; it ends");
                                return self.end_lagged();
                            }
                            None => {
                                let target = std::mem::take(target);
                                self.advance_to(&target);
                                if !self.resume_from_memory() && self.read_log().is_err() {
                                    return self.end_lagged();
                                }
                            }
                        },
                        () = tokio::time::sleep_until(progress_at) => return self.progress(),
                    }
                }
            }
        }
    }

    /// A `Progress` event: nothing under the prefix for `progress_every`.
    fn progress(&mut self) -> Option<WatchEvent> {
        self.last_event = Instant::now();
        Some(WatchEvent::Progress {
            token: self.token(),
        })
    }

    /// Ends the watch; its last event is `Lagged`, with the token to resume
    /// from.
    fn end_lagged(&mut self) -> Option<WatchEvent> {
        self.source = Source::Ended;
        Some(WatchEvent::Lagged {
            token: self.token(),
        })
    }

    /// Whether the watch is reading the topic to catch up from an older
    /// token, rather than following what the consumer applies.
    pub fn is_reading_log(&self) -> bool {
        matches!(self.source, Source::Log { .. })
    }

    /// The token of the current position.
    pub fn token(&self) -> Token {
        Token::new(self.context.fingerprint, self.cursor.clone())
    }

    /// Goes live if the recent window still holds every change from the
    /// cursor on, queueing those changes; `false` if it does not.
    fn resume_from_memory(&mut self) -> bool {
        let (changes, _, recent) = self.context.view.subscribe_with_recent();
        let covered = recent
            .floor
            .iter()
            .zip(&self.cursor)
            .all(|(floor, cursor)| cursor >= floor);
        if !covered {
            return false;
        }
        for batch in &recent.batches {
            self.apply_batch(batch);
        }
        self.source = Source::Live(changes);
        true
    }

    /// Reads the topic from the cursor up to the view's positions now.
    fn read_log(&mut self) -> Result<(), KafkaError> {
        let target = self.context.view.progress().positions;
        let changes =
            history::read_range(&self.context.config, self.cursor.clone(), target.clone())?;
        self.source = Source::Log { changes, target };
        Ok(())
    }

    async fn check_not_expired(&self, token: &Token) -> Result<(), WatchError> {
        let age_ms = crate::state::now_ms().saturating_sub(token.minted_ms);
        let retention = self.context.delete_retention;
        if age_ms > retention.as_millis() as i64 {
            return Err(WatchError::Expired(format!(
                "it is {}s old, older than the topic's delete.retention.ms ({}s), so deletes \
                 since may have been compacted away",
                age_ms / 1000,
                retention.as_secs()
            )));
        }
        let watermarks = self
            .context
            .offsets
            .watermarks(self.context.config.write_timeout)
            .await?;
        for (p, ((low, _), position)) in watermarks.iter().zip(&token.positions).enumerate() {
            if position < low {
                return Err(WatchError::Expired(format!(
                    "partition {p} now starts at offset {low}, after the token's {position}"
                )));
            }
        }
        Ok(())
    }

    fn apply_batch(&mut self, batch: &ChangeBatch) {
        let mut changes = batch.changes.iter().peekable();
        while let Some(change) = changes.next() {
            // A record that changed several keys (`RENAME`, `MSETNX`, a
            // transaction) is a change per key, all at its offset.
            let more = changes.peek().is_some_and(|next| {
                (next.partition, next.offset) == (change.partition, change.offset)
            });
            self.apply_change(change, more);
        }
        self.advance_to(&batch.positions);
    }

    /// Moves the cursor to at least `positions` (past records that carried
    /// no change for a watch).
    fn advance_to(&mut self, positions: &[i64]) {
        for (cursor, position) in self.cursor.iter_mut().zip(positions) {
            *cursor = (*cursor).max(*position);
        }
    }

    /// Queues the event for `change` if it is after the cursor and under
    /// the prefix. `more`: the record made more changes after this one (it
    /// changed several keys), so the cursor stays at the record until its
    /// last: a token from before then resumes at the record, repeating its
    /// first changes rather than missing its others.
    fn apply_change(&mut self, change: &Change, more: bool) {
        let Some(cursor) = self.cursor.get_mut(change.partition as usize) else {
            return;
        };
        if change.offset < *cursor {
            // Delivered already, or before the start point.
            return;
        }
        *cursor = if more {
            change.offset
        } else {
            change.offset + 1
        };
        if !change.key.starts_with(&self.prefix) {
            return;
        }
        let token = self.token();
        let event = match &change.value {
            Some(value) => WatchEvent::Put {
                key: change.key.clone(),
                value: self.values.then(|| value.clone()),
                ty: change.ty,
                op: Some(change.op),
                expires_at: change.expires_at,
                partition: change.partition,
                offset: change.offset,
                timestamp: change.timestamp,
                token: Some(token),
            },
            None => WatchEvent::Delete {
                key: change.key.clone(),
                op: change.op,
                partition: change.partition,
                offset: change.offset,
                timestamp: change.timestamp,
                token,
            },
        };
        self.pending.push_back(event);
    }
}
