//! The materialized view: an ordered map of the topic's live keys, the
//! acknowledged-but-not-yet-consumed writes of this instance, and the
//! per-partition applied offsets, with a way to wait for an offset.
//!
//! Invariants, all kept under one lock so a reader always sees them together:
//! - `positions[p]` is the offset of the next record to apply from partition
//!   `p`; every record of `p` below it is reflected in `map`.
//! - An entry of `acked` is newer than anything `map` holds for that key: it is
//!   dropped as soon as the consumer applies its offset (or a later one for the
//!   same key), and it is never inserted for an offset already applied.
//!   Reads consult `acked` first, so a write is visible from the moment it was
//!   acknowledged (read-your-writes) without waiting for the consumer.
//! - `order` holds every visible key exactly once, under the sequence number
//!   its visible version got when this view took it in. A key that changes
//!   gets a new number, larger than any before, which is what makes a
//!   numeric, stateless scan cursor safe (see [`View::scan_from`]).

use std::{
    collections::BTreeMap,
    ops::Bound,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;

/// A live value and where it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub partition: i32,
    pub offset: i64,
}

/// One record as the consumer hands it to the view.
#[derive(Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Box<[u8]>,
    /// `None` is a tombstone.
    pub value: Option<Box<[u8]>>,
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

/// A key as the view stores it: up to 24 bytes inline, longer ones on the
/// heap, so short keys cost no allocation of their own and comparisons read
/// bytes already in cache.
type Key = smallvec::SmallVec<[u8; 24]>;

#[derive(Debug)]
struct Entry {
    value: Box<[u8]>,
    offset: i64,
    seq: u64,
    partition: i32,
}

#[derive(Debug)]
struct Acked {
    /// `None` is an acknowledged delete.
    value: Option<Bytes>,
    partition: i32,
    offset: i64,
    seq: u64,
}

#[derive(Debug)]
struct Inner {
    /// Point lookups: a hash map, because reads are the hot path (an ordered
    /// map's lookup was 28% of a pipelined GET's CPU, most of it comparisons).
    map: hashbrown::HashMap<Key, Entry>,
    /// The same keys in byte order, for prefix and range scans.
    sorted: std::collections::BTreeSet<Key>,
    acked: BTreeMap<Box<[u8]>, Acked>,
    positions: Vec<i64>,
    /// Visible keys by the sequence number of their visible version.
    order: BTreeMap<u64, Box<[u8]>>,
    /// The next sequence number; starts at 1 so that 0 can mean "from the start".
    next_seq: u64,
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
    pub records_applied: u64,
    pub bootstrap: Bootstrap,
}

/// The shared materialized view.
///
/// A `parking_lot::RwLock` rather than a concurrent map: reads take a shared
/// lock for a map lookup and a value copy (nanoseconds), the consumer takes the
/// exclusive lock once per batch of at most [`View::MAX_BATCH`] records, so no
/// reader waits long, and one lock keeps `map`, `acked` and `positions`
/// consistent with each other. It is never held across an `.await`.
#[derive(Debug)]
pub struct View {
    inner: RwLock<Inner>,
    progress: watch::Sender<Progress>,
    closed: AtomicBool,
    /// Mirrors `progress.bootstrap.is_done()` for the read path, which checks
    /// it on every request and must not clone the progress to do so.
    bootstrapped: AtomicBool,
}

impl View {
    /// The consumer applies at most this many records per lock acquisition.
    pub const MAX_BATCH: usize = 1024;

    /// An empty view whose bootstrap ends at `targets` (one per partition).
    pub fn new(targets: Vec<i64>) -> Self {
        let partitions = targets.len();
        let reached: Vec<bool> = targets.iter().map(|end| *end <= 0).collect();
        let bootstrapped = AtomicBool::new(reached.iter().all(|r| *r));
        let (progress, _) = watch::channel(Progress {
            positions: vec![0; partitions],
            records_applied: 0,
            bootstrap: Bootstrap { targets, reached },
        });
        Self {
            inner: RwLock::new(Inner {
                map: hashbrown::HashMap::new(),
                sorted: std::collections::BTreeSet::new(),
                acked: BTreeMap::new(),
                positions: vec![0; partitions],
                order: BTreeMap::new(),
                next_seq: 1,
            }),
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
    pub fn get(&self, key: &[u8]) -> Option<Versioned> {
        let inner = self.inner.read();
        if let Some(acked) = inner.acked.get(key) {
            return acked.value.as_ref().map(|value| Versioned {
                value: value.clone(),
                partition: acked.partition,
                offset: acked.offset,
            });
        }
        inner.map.get(key).map(Entry::versioned)
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
    ) -> Vec<(Bytes, Versioned)> {
        let lower: Bound<&[u8]> = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let inner = self.inner.read();
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut bytes = 0;
        for (key, live) in inner.live(prefix, lower) {
            if out.len() >= limit || bytes >= max_bytes {
                break;
            }
            bytes += key.len() + live.value.len();
            out.push((
                Bytes::copy_from_slice(key),
                Versioned {
                    value: Bytes::copy_from_slice(live.value),
                    partition: live.partition,
                    offset: live.offset,
                },
            ));
        }
        out
    }

    /// Every live key beginning with `prefix`, in byte order, without
    /// copying values.
    pub fn keys(&self, prefix: &[u8]) -> Vec<Bytes> {
        let inner = self.inner.read();
        inner
            .live(prefix, Bound::Included(prefix))
            .map(|(key, _)| Bytes::copy_from_slice(key))
            .collect()
    }

    /// Number of live keys (acknowledged writes not yet consumed included).
    pub fn len(&self) -> usize {
        self.inner.read().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let before = inner.visible_seq(key);
        let seq = inner.take_seq();
        inner.acked.insert(
            key.into(),
            Acked {
                value,
                partition,
                offset,
                seq,
            },
        );
        inner.reindex(key, before);
    }

    /// Up to `count` visible keys from sequence number `cursor` on, and the
    /// cursor for the rest (0 when there is none).
    ///
    /// A key present from the first call to the last is returned at least
    /// once: unchanged, it keeps its number and the cursor passes it exactly
    /// once; changed, it gets a number beyond every cursor handed out so far.
    /// Keys written or deleted meanwhile may or may not be returned, as in
    /// Redis. Numbers are this view's own: a cursor means nothing to another
    /// instance or after a restart.
    pub fn scan_from(&self, cursor: u64, count: usize) -> (Vec<Bytes>, u64) {
        let inner = self.inner.read();
        let mut keys = Vec::with_capacity(count.min(1024));
        let mut entries = inner.order.range(cursor..);
        for (_, key) in entries.by_ref().take(count) {
            keys.push(Bytes::copy_from_slice(key));
        }
        let next = entries.next().map_or(0, |(seq, _)| *seq);
        (keys, next)
    }

    /// Applies the consumer's events in order, then publishes the new positions.
    pub fn apply(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut applied = 0u64;
        let mut ends = Vec::new();
        let positions = {
            let mut inner = self.inner.write();
            for event in events {
                match event {
                    Event::Record(record) => {
                        applied += 1;
                        inner.apply_record(record);
                    }
                    Event::Skipped { partition, offset } => {
                        inner.advance(partition, offset);
                    }
                    Event::EndOfPartition(partition) => ends.push(partition),
                }
            }
            inner.positions.clone()
        };
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

/// A live value borrowed from the view.
struct Live<'a> {
    value: &'a [u8],
    partition: i32,
    offset: i64,
}

impl Inner {
    /// Live entries beginning with `prefix`, from `lower` on, in key order:
    /// the consumed map merged with acknowledged writes, which win on equal
    /// keys (an acknowledged delete hides the key).
    fn live<'a>(
        &'a self,
        prefix: &'a [u8],
        lower: Bound<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a [u8], Live<'a>)> + 'a {
        let mut consumed = self
            .sorted
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(move |k| k.starts_with(prefix))
            .map(|k| (&k[..], &self.map[&k[..]]))
            .peekable();
        let mut acked = self
            .acked
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .peekable();
        std::iter::from_fn(move || {
            loop {
                let take_acked = match (consumed.peek(), acked.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some((ck, _)), Some((ak, _))) => ak[..] <= **ck,
                };
                if !take_acked {
                    let (key, entry) = consumed.next().expect("peeked");
                    let live = Live {
                        value: &entry.value,
                        partition: entry.partition,
                        offset: entry.offset,
                    };
                    return Some((key, live));
                }
                let (key, write) = acked.next().expect("peeked");
                if consumed.peek().is_some_and(|(ck, _)| **ck == key[..]) {
                    consumed.next();
                }
                if let Some(value) = &write.value {
                    let live = Live {
                        value,
                        partition: write.partition,
                        offset: write.offset,
                    };
                    return Some((&key[..], live));
                }
            }
        })
    }

    fn apply_record(&mut self, record: Record) {
        let Record {
            partition,
            offset,
            key,
            value,
        } = record;
        if !self.advance(partition, offset) {
            return;
        }
        let before = self.visible_seq(&key);
        if self.acked.get(&key).is_some_and(|w| w.offset <= offset) {
            self.acked.remove(&key);
        }
        match value {
            Some(value) => {
                let seq = self.take_seq();
                let entry = Entry {
                    value,
                    offset,
                    seq,
                    partition,
                };
                if self.map.insert(Key::from_slice(&key), entry).is_none() {
                    self.sorted.insert(Key::from_slice(&key));
                }
            }
            None => {
                if self.map.remove(&key[..]).is_some() {
                    self.sorted.remove(&key[..]);
                }
            }
        }
        self.reindex(&key, before);
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The sequence number of `key`'s visible version, if it is live.
    fn visible_seq(&self, key: &[u8]) -> Option<u64> {
        match self.acked.get(key) {
            Some(write) => write.value.as_ref().map(|_| write.seq),
            None => self.map.get(key).map(|entry| entry.seq),
        }
    }

    /// Moves `key` in `order` from `before` to its current visible version.
    fn reindex(&mut self, key: &[u8], before: Option<u64>) {
        let after = self.visible_seq(key);
        if before == after {
            return;
        }
        if let Some(seq) = before {
            self.order.remove(&seq);
        }
        if let Some(seq) = after {
            self.order.insert(seq, key.into());
        }
    }

    /// Moves `partition`'s position past `offset`; `false` if it was already
    /// applied (a duplicate delivery after a reconnect) or unknown.
    fn advance(&mut self, partition: i32, offset: i64) -> bool {
        match self.positions.get_mut(partition as usize) {
            Some(position) if offset >= *position => {
                *position = offset + 1;
                true
            }
            _ => false,
        }
    }
}

impl Entry {
    fn versioned(&self) -> Versioned {
        Versioned {
            value: Bytes::copy_from_slice(&self.value),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(p: i32, o: i64, k: &str, v: &str) -> Event {
        Event::Record(Record {
            partition: p,
            offset: o,
            key: k.as_bytes().into(),
            value: Some(v.as_bytes().into()),
        })
    }

    fn del(p: i32, o: i64, k: &str) -> Event {
        Event::Record(Record {
            partition: p,
            offset: o,
            key: k.as_bytes().into(),
            value: None,
        })
    }

    fn value(view: &View, k: &str) -> Option<String> {
        view.get(k.as_bytes())
            .map(|v| String::from_utf8(v.value.to_vec()).unwrap())
    }

    #[test]
    fn later_records_win_and_tombstones_delete() {
        let view = View::new(vec![3]);
        view.apply(vec![
            put(0, 0, "a", "1"),
            put(0, 1, "a", "2"),
            del(0, 2, "a"),
        ]);
        assert_eq!(value(&view, "a"), None);
        view.apply(vec![put(0, 3, "a", "3")]);
        assert_eq!(value(&view, "a").as_deref(), Some("3"));
        assert!(view.progress().bootstrap.is_done());
    }

    #[test]
    fn acknowledged_write_is_visible_until_the_consumer_applies_a_newer_one() {
        let view = View::new(vec![0]);
        view.apply(vec![put(0, 0, "k", "old")]);
        view.acknowledge(b"k", Some(Bytes::from_static(b"mine")), 0, 5);
        assert_eq!(value(&view, "k").as_deref(), Some("mine"));
        // Records before our write do not hide it.
        view.apply(vec![put(0, 3, "k", "other")]);
        assert_eq!(value(&view, "k").as_deref(), Some("mine"));
        // Our own record arrives: same value, now from the map.
        view.apply(vec![put(0, 5, "k", "mine")]);
        assert_eq!(value(&view, "k").as_deref(), Some("mine"));
        // A later record from anywhere wins.
        view.apply(vec![put(0, 6, "k", "newer")]);
        assert_eq!(value(&view, "k").as_deref(), Some("newer"));
    }

    #[test]
    fn acknowledgement_of_an_applied_offset_is_ignored() {
        let view = View::new(vec![0]);
        view.apply(vec![put(0, 0, "k", "a"), put(0, 1, "k", "b")]);
        view.acknowledge(b"k", Some(Bytes::from_static(b"a")), 0, 0);
        assert_eq!(value(&view, "k").as_deref(), Some("b"));
    }

    #[test]
    fn acknowledged_delete_hides_the_key_in_get_scan_and_len() {
        let view = View::new(vec![0]);
        view.apply(vec![put(0, 0, "a", "1"), put(0, 1, "b", "2")]);
        view.acknowledge(b"a", None, 0, 7);
        view.acknowledge(b"c", Some(Bytes::from_static(b"3")), 0, 8);
        assert_eq!(value(&view, "a"), None);
        let keys: Vec<_> = view
            .scan(b"", None, 10, usize::MAX)
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
        view.apply(events);
        let page = |after: Option<&[u8]>, limit| -> Vec<Bytes> {
            view.scan(b"b", after, limit, usize::MAX)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(page(None, 2), vec![&b"b1"[..], &b"b2"[..]]);
        assert_eq!(page(Some(b"b2"), 2), vec![&b"b3"[..]]);
        assert_eq!(page(Some(b"a"), 1), vec![&b"b1"[..]]);
        // A byte budget cuts the page short, but never to nothing.
        assert_eq!(view.scan(b"b", None, 10, 5).len(), 2);
        assert_eq!(view.scan(b"b", None, 10, 1).len(), 1);
    }

    #[test]
    fn scan_cursor_returns_every_key_that_stays_despite_concurrent_changes() {
        let view = View::new(vec![0]);
        let keys: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
        view.apply(
            keys.iter()
                .enumerate()
                .map(|(i, k)| put(0, i as i64, k, "v"))
                .collect(),
        );
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = 0;
        let mut offset = 100;
        let mut calls = 0;
        loop {
            let (page, next) = view.scan_from(cursor, 7);
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
            view.apply(changes);
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
        view.apply(vec![put(0, 0, "k", "1"), put(0, 1, "k", "2")]);
        view.apply(vec![put(0, 0, "k", "1")]);
        assert_eq!(value(&view, "k").as_deref(), Some("2"));
    }

    #[test]
    fn bootstrap_completes_on_targets_or_end_of_partition() {
        let view = View::new(vec![2, 5, 0]);
        assert!(!view.progress().bootstrap.is_done());
        view.apply(vec![put(0, 1, "a", "1")]);
        assert!(!view.progress().bootstrap.is_done());
        view.apply(vec![Event::EndOfPartition(1)]);
        assert!(view.progress().bootstrap.is_done());
    }

    #[tokio::test]
    async fn waiting_for_positions_returns_once_applied() {
        let view = std::sync::Arc::new(View::new(vec![0]));
        let waiter = {
            let view = view.clone();
            tokio::spawn(async move { view.wait_for_positions(&[2], Duration::from_secs(5)).await })
        };
        view.apply(vec![put(0, 0, "a", "1")]);
        view.apply(vec![put(0, 1, "a", "2")]);
        assert!(waiter.await.unwrap());
        assert!(
            !view
                .wait_for_positions(&[3], Duration::from_millis(10))
                .await
        );
    }
}
