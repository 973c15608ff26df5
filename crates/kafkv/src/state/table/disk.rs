//! The disk backend (`--state disk`): the view in a redb database under the
//! data dir, with the per-partition applied offsets (the checkpoint) written
//! in the same transaction as the records they cover, so whatever a crash
//! leaves behind is a state and the offsets that produced it.
//!
//! Tables (format 3):
//! - `kv`: key → seq (u64) ‖ partition (i32) ‖ offset (i64) ‖ [expires_at
//!   (i64)] ‖ value, integers little-endian. `seq` is the key's place in
//!   `order`. `expires_at` (ms since the epoch) is there only when bit 31 of
//!   the stored partition is set: partitions are never negative, so the bit
//!   is free, and a key without an expiry costs nothing extra. Bits 28–30
//!   hold the value's type ([`Type::code`], 0 for a string), so partitions
//!   stay below 2^28.
//! - `order`: seq → key. A key keeps its seq while it is live (overwrites
//!   update in place); a new key gets the next one, and a seq is never
//!   reused until [`DiskTable::reset`]. This is the `SCAN` cursor's index, as
//!   slot ids are in the memory backend.
//! - `expiry`: expires_at ‖ seq → key, one row per key with an expiry, the
//!   row key 16 bytes compared as bytes: expires_at big-endian with its sign
//!   bit flipped (so byte order is numeric order, negatives first), then seq
//!   big-endian. Ordered by time for the sweeper ([`Table::due`]), and
//!   counted for `DBSIZE` ([`Table::volatile_counts`]). `(expires_at, seq)`
//!   is unique and stays the same while the key keeps that expiry: it is
//!   the sweeper's cursor.
//! - `meta`: `positions` (i64 per partition), `saved_at` (ms since the
//!   epoch), `topic`, `topic_id`, `next_seq`, `format`.
//!
//! Format 2 is format 3 with strings only (bits 28–30 clear), and format 1
//! is format 2 without expiries: no `expiry` table and no partition with
//! bit 31 set. Both read as format 3 unchanged; opening one upgrades it in
//! place ([`DiskTable::open`]). Any other format is rebuilt from the topic,
//! as an older kafkv rebuilds a format-3 file.
//!
//! Durability: a commit is fsynced (redb `Durability::Immediate`) at most
//! every [`DURABLE_EVERY`] and on close; the commits in between are
//! `Durability::None`, which a process crash may roll back, always to an
//! earlier durable commit, whose offsets are then replayed from Kafka.
//! Quick-repair is on so that reopening after a crash does not walk the
//! whole file.

use std::{
    ops::Bound,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use parking_lot::Mutex;
use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::{Due, Live, StateError, Table, Versioned};
use crate::{collection::Type, record::Record};

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const ORDER: TableDefinition<u64, &[u8]> = TableDefinition::new("order");
const EXPIRY: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("expiry");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// `kv` opened in a read transaction.
type KvTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// The on-disk layout this code reads and writes. [`FORMAT_1`] is upgraded
/// in place; any other value means the file was written by an incompatible
/// kafkv and is rebuilt.
const FORMAT: u64 = 3;
/// The layout before types, a subset of [`FORMAT`]'s.
const FORMAT_2: u64 = 2;
/// The layout before expiries, a subset of [`FORMAT_2`]'s.
const FORMAT_1: u64 = 1;
/// seq ‖ partition ‖ offset, before the optional expiry.
const HEADER: usize = 20;
/// Set in the stored partition when the entry carries an expiry.
const HAS_EXPIRY: u32 = 1 << 31;
/// The stored partition's bits below [`TYPE_SHIFT`] are the partition.
const TYPE_SHIFT: u32 = 28;
const PARTITION_MASK: u32 = (1 << TYPE_SHIFT) - 1;

/// Longest a batch stays only in the OS page cache before an fsync.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// What the last run left: where it stopped and which topic it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub topic: String,
    /// Kafka's topic id, where the cluster reports one.
    pub topic_id: Option<String>,
    /// The next offset to apply, per partition.
    pub positions: Vec<i64>,
    /// Every record written before this time is reflected in the positions
    /// (the consumer was at each partition's end then, or reading from the
    /// log start).
    pub saved_at: Option<SystemTime>,
}

/// A `kv` entry without its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    seq: u64,
    partition: i32,
    offset: i64,
    expires_at: Option<i64>,
    ty: Type,
}

/// The disk backend.
#[derive(Debug)]
pub(crate) struct DiskTable {
    db: Database,
    path: PathBuf,
    /// Only the consumer thread writes; these mirror `meta` for it.
    next_seq: AtomicU64,
    live: AtomicU64,
    last_durable: Mutex<Instant>,
    /// Per partition: whether the consumer is at its end, and since when
    /// everything written before is known to be applied.
    caught_up: Mutex<Vec<(bool, SystemTime)>>,
    /// `caught_up`'s starting time for a partition not seen at its end yet.
    caught_up_before: Mutex<SystemTime>,
}

fn db_error(path: &Path, error: impl Into<redb::Error>) -> StateError {
    StateError::Disk {
        path: path.to_owned(),
        source: Box::new(error.into()),
    }
}

impl DiskTable {
    /// Opens (or creates) the database at `path`, upgrades it from format 1
    /// if it is one, and reads its checkpoint.
    pub(crate) fn open(path: &Path) -> Result<(Self, Option<Checkpoint>), StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| db_error(path, e))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StateError::InUse(path.to_owned()),
            other => db_error(path, other),
        })?;
        let table = DiskTable {
            db,
            path: path.to_owned(),
            next_seq: AtomicU64::new(1),
            live: AtomicU64::new(0),
            last_durable: Mutex::new(Instant::now()),
            caught_up: Mutex::new(Vec::new()),
            caught_up_before: Mutex::new(UNIX_EPOCH),
        };
        table.upgrade()?;
        let checkpoint = table.read_checkpoint()?;
        if let Some(saved_at) = checkpoint.as_ref().and_then(|c| c.saved_at) {
            *table.caught_up_before.lock() = saved_at;
        }
        Ok((table, checkpoint))
    }

    /// Brings a format-1 or format-2 file to format 3 in place, in one
    /// durable commit: its `kv` entries already read as format 3 (strings,
    /// and without expiries in format 1), so only the (empty) `expiry`
    /// table of a format-1 file and the format change. Afterwards every file
    /// with a checkpoint has an `expiry` table for readers to open.
    fn upgrade(&self) -> Result<(), StateError> {
        let format_1;
        {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let meta = match txn.open_table(META) {
                Ok(meta) => meta,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(self.err(e)),
            };
            let format = meta.get("format").map_err(|e| self.err(e))?;
            format_1 = match format.and_then(|f| u64_of(f.value())) {
                Some(FORMAT_1) => true,
                Some(FORMAT_2) => false,
                _ => return Ok(()),
            };
        }
        let txn = self.begin(Durability::Immediate)?;
        if format_1 {
            // A format-1 file has no expiries, but may hold an `expiry` table
            // left over from a format-2 file that an older kafkv rebuilt (its
            // reset did not know the table): its rows name keys and seqs of
            // the old contents, so they go.
            txn.delete_table(EXPIRY).map_err(|e| self.err(e))?;
            txn.open_table(EXPIRY).map_err(|e| self.err(e))?;
        }
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert("format", &FORMAT.to_le_bytes()[..])
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn visit_in(
        &self,
        txn: &ReadTransaction,
        lower: Bound<&[u8]>,
        visit: &mut dyn FnMut(Live<'_>) -> bool,
    ) -> Result<(), StateError> {
        let kv = txn.open_table(KV).map_err(|e| self.err(e))?;
        let range = kv
            .range::<&[u8]>((lower, Bound::Unbounded))
            .map_err(|e| self.err(e))?;
        for item in range {
            let (key, value) = item.map_err(|e| self.err(e))?;
            let (header, value) = decode(value.value());
            let live = Live {
                key: key.value().to_vec().into(),
                value: value.to_vec().into(),
                partition: header.partition,
                offset: header.offset,
                expires_at: header.expires_at,
                ty: header.ty,
            };
            if !visit(live) {
                break;
            }
        }
        Ok(())
    }

    fn err(&self, error: impl Into<redb::Error>) -> StateError {
        db_error(&self.path, error)
    }

    fn read_checkpoint(&self) -> Result<Option<Checkpoint>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let get = |name: &str| -> Result<Option<Vec<u8>>, StateError> {
            Ok(meta
                .get(name)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec()))
        };
        // `open` upgraded format 1 already.
        if get("format")?.and_then(|b| u64_of(&b)) != Some(FORMAT) {
            return Ok(None);
        }
        let (Some(topic), Some(positions)) = (get("topic")?, get("positions")?) else {
            return Ok(None);
        };
        self.next_seq.store(
            get("next_seq")?.and_then(|b| u64_of(&b)).unwrap_or(1),
            Ordering::Relaxed,
        );
        let kv = txn.open_table(KV).map_err(|e| self.err(e))?;
        self.live
            .store(kv.len().map_err(|e| self.err(e))?, Ordering::Relaxed);
        Ok(Some(Checkpoint {
            topic: String::from_utf8_lossy(&topic).into_owned(),
            topic_id: get("topic_id")?.map(|id| String::from_utf8_lossy(&id).into_owned()),
            saved_at: get("saved_at")?
                .and_then(|b| u64_of(&b))
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            positions: positions
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        }))
    }

    /// Empties the view and starts a new checkpoint for `checkpoint`'s topic
    /// at its positions (all zero for a rebuild), in one durable commit.
    pub(crate) fn reset(&self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        let txn = self.begin(Durability::Immediate)?;
        txn.delete_table(KV).map_err(|e| self.err(e))?;
        txn.delete_table(ORDER).map_err(|e| self.err(e))?;
        txn.delete_table(EXPIRY).map_err(|e| self.err(e))?;
        txn.delete_table(META).map_err(|e| self.err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert("format", &FORMAT.to_le_bytes()[..])
                .map_err(|e| self.err(e))?;
            meta.insert("topic", checkpoint.topic.as_bytes())
                .map_err(|e| self.err(e))?;
            if let Some(id) = &checkpoint.topic_id {
                meta.insert("topic_id", id.as_bytes())
                    .map_err(|e| self.err(e))?;
            }
            meta.insert("next_seq", &1u64.to_le_bytes()[..])
                .map_err(|e| self.err(e))?;
            write_positions(&mut meta, &checkpoint.positions, SystemTime::now())
                .map_err(|e| self.err(e))?;
            txn.open_table(KV).map_err(|e| self.err(e))?;
            txn.open_table(ORDER).map_err(|e| self.err(e))?;
            txn.open_table(EXPIRY).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        self.next_seq.store(1, Ordering::Relaxed);
        self.live.store(0, Ordering::Relaxed);
        // Reading from the log start now: records written from here on are
        // read before compaction can drop their tombstones.
        *self.caught_up_before.lock() = SystemTime::now();
        self.caught_up.lock().clear();
        *self.last_durable.lock() = Instant::now();
        Ok(())
    }

    fn begin(&self, durability: Durability) -> Result<WriteTransaction, StateError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(durability).map_err(|e| self.err(e))?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    /// Writes `records` and `positions` as the checkpoint in one transaction
    /// (see [`Table::commit`]).
    ///
    /// Keeps `expiry` exactly the rows of `kv`'s entries with an expiry: a
    /// put with one (re)writes its row, a put without one or a tombstone
    /// removes the row the key's previous entry had.
    fn write_batch(
        &self,
        records: &[&Record],
        positions: &[i64],
        at_end: &[Option<bool>],
    ) -> Result<(), StateError> {
        let saved_at = self.caught_up_at(at_end);
        let durable = self.last_durable.lock().elapsed() >= DURABLE_EVERY;
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        let txn = self.begin(durability)?;
        let mut next_seq = self.next_seq.load(Ordering::Relaxed);
        let mut live = self.live.load(Ordering::Relaxed);
        {
            let mut kv = txn.open_table(KV).map_err(|e| self.err(e))?;
            let mut order = txn.open_table(ORDER).map_err(|e| self.err(e))?;
            let mut expiry = txn.open_table(EXPIRY).map_err(|e| self.err(e))?;
            let mut encoded = Vec::new();
            for record in records {
                let existing = kv
                    .get(record.key())
                    .map_err(|e| self.err(e))?
                    .map(|v| decode(v.value()).0);
                let old_row = existing.and_then(expiry_row);
                let new_row = match (record.value(), existing) {
                    (Some(value), existing) => {
                        let seq = existing.map_or_else(
                            || {
                                next_seq += 1;
                                next_seq - 1
                            },
                            |e| e.seq,
                        );
                        let header = Header {
                            seq,
                            partition: record.partition,
                            offset: record.offset,
                            expires_at: record.expires_at,
                            ty: record.ty,
                        };
                        encode(&mut encoded, &header, value);
                        kv.insert(record.key(), &encoded[..])
                            .map_err(|e| self.err(e))?;
                        if existing.is_none() {
                            order.insert(seq, record.key()).map_err(|e| self.err(e))?;
                            live += 1;
                        }
                        expiry_row(header)
                    }
                    (None, Some(existing)) => {
                        kv.remove(record.key()).map_err(|e| self.err(e))?;
                        order.remove(existing.seq).map_err(|e| self.err(e))?;
                        live -= 1;
                        None
                    }
                    (None, None) => None,
                };
                // An overwrite keeping the expiry keeps its row (same seq).
                if old_row != new_row {
                    if let Some(old) = old_row {
                        expiry.remove(&old).map_err(|e| self.err(e))?;
                    }
                    if let Some(new) = new_row {
                        expiry.insert(&new, record.key()).map_err(|e| self.err(e))?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert("next_seq", &next_seq.to_le_bytes()[..])
                .map_err(|e| self.err(e))?;
            write_positions(&mut meta, positions, saved_at).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        self.next_seq.store(next_seq, Ordering::Relaxed);
        self.live.store(live, Ordering::Relaxed);
        if durable {
            *self.last_durable.lock() = Instant::now();
        }
        Ok(())
    }

    /// The time before which every record is known to be applied: the
    /// earliest, over partitions, of when each was last seen at its end (now,
    /// for one still there). This, not the commit time, is what bounds how
    /// old the tombstones the next start must still find can be.
    fn caught_up_at(&self, at_end: &[Option<bool>]) -> SystemTime {
        let now = SystemTime::now();
        let before = *self.caught_up_before.lock();
        let mut caught_up = self.caught_up.lock();
        let partitions = at_end.len().max(caught_up.len());
        caught_up.resize(partitions, (false, before));
        for (p, state) in caught_up.iter_mut().enumerate() {
            if let Some(Some(end)) = at_end.get(p) {
                state.0 = *end;
            }
            if state.0 {
                state.1 = now;
            }
        }
        caught_up.iter().map(|(_, at)| *at).min().unwrap_or(before)
    }

    /// Makes every commit so far durable, with the checkpoint's time brought
    /// up to date (an idle consumer commits nothing, but stays caught up).
    fn sync_checkpoint(&self) -> Result<(), StateError> {
        let txn = self.begin(Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert("saved_at", &millis(self.caught_up_at(&[]))[..])
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        *self.last_durable.lock() = Instant::now();
        Ok(())
    }

    /// `kv`, for [`is_expired`], when some key has expired by `now` in
    /// `txn`; `None` when none has (the earliest expiry is later), so that a
    /// scan of a table without expired keys costs one lookup, not one per
    /// key.
    fn kv_if_any_expired(
        &self,
        txn: &ReadTransaction,
        now: i64,
    ) -> Result<Option<KvTable>, StateError> {
        let expiry = txn.open_table(EXPIRY).map_err(|e| self.err(e))?;
        let first = expiry.first().map_err(|e| self.err(e))?;
        if first.is_none_or(|(row, _)| row.value() > &expiry_key(now, u64::MAX)) {
            return Ok(None);
        }
        txn.open_table(KV).map(Some).map_err(|e| self.err(e))
    }

    /// Whether `key`'s entry in `kv` has expired by `now`.
    fn is_expired(&self, kv: &KvTable, key: &[u8], now: i64) -> Result<bool, StateError> {
        let entry = kv.get(key).map_err(|e| self.err(e))?;
        Ok(entry.is_some_and(|v| decode(v.value()).0.expires_at.is_some_and(|at| at <= now)))
    }
}

impl Table for DiskTable {
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let kv = txn.open_table(KV).map_err(|e| self.err(e))?;
        Ok(kv.get(key).map_err(|e| self.err(e))?.map(|v| {
            let (header, value) = decode(v.value());
            Versioned {
                value: Bytes::copy_from_slice(value),
                partition: header.partition,
                offset: header.offset,
                expires_at: header.expires_at,
                ty: header.ty,
            }
        }))
    }

    fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed) as usize
    }

    fn visit(
        &self,
        lower: Bound<&[u8]>,
        visit: &mut dyn FnMut(Live<'_>) -> bool,
    ) -> Result<(), StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        self.visit_in(&txn, lower, visit)
    }

    /// The positions come from the same read transaction as the entries:
    /// each commit writes both.
    fn visit_at(
        &self,
        lower: Bound<&[u8]>,
        visit: &mut dyn FnMut(Live<'_>) -> bool,
    ) -> Result<Option<Vec<i64>>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        self.visit_in(&txn, lower, visit)?;
        let meta = txn.open_table(META).map_err(|e| self.err(e))?;
        let positions = meta.get("positions").map_err(|e| self.err(e))?;
        Ok(positions.map(|bytes| {
            bytes
                .value()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect()
        }))
    }

    fn cursor_bound(&self) -> Result<u64, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let order = txn.open_table(ORDER).map_err(|e| self.err(e))?;
        let last = order.last().map_err(|e| self.err(e))?;
        Ok(last.map_or(0, |(sequence, _)| sequence.value() + 1))
    }

    fn key_at(&self, cursor: u64, now: i64) -> Result<Option<Bytes>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let order = txn.open_table(ORDER).map_err(|e| self.err(e))?;
        let Some(key) = order.get(cursor).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        if let Some(kv) = self.kv_if_any_expired(&txn, now)?
            && self.is_expired(&kv, key.value(), now)?
        {
            return Ok(None);
        }
        Ok(Some(Bytes::copy_from_slice(key.value())))
    }

    /// The cursor is the key's sequence number (`order`).
    fn cursor_page(
        &self,
        cursor: u64,
        count: usize,
        now: i64,
    ) -> Result<(Vec<Bytes>, Option<u64>), StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let order = txn.open_table(ORDER).map_err(|e| self.err(e))?;
        let expired = self.kv_if_any_expired(&txn, now)?;
        let mut keys = Vec::with_capacity(count.min(1024));
        let mut range = order.range(cursor..).map_err(|e| self.err(e))?;
        // An expired key takes its place in the page without showing.
        for item in range.by_ref().take(count) {
            let (_, key) = item.map_err(|e| self.err(e))?;
            if let Some(kv) = &expired
                && self.is_expired(kv, key.value(), now)?
            {
                continue;
            }
            keys.push(Bytes::copy_from_slice(key.value()));
        }
        let next = match range.next() {
            Some(item) => Some(item.map_err(|e| self.err(e))?.0.value()),
            None => None,
        };
        Ok((keys, next))
    }

    /// The total is `expiry`'s length (kept by redb, no walk); the expired
    /// ones are counted, as the rows before `now`'s end (few: the sweeper
    /// removes them).
    fn volatile_counts(&self, now: i64) -> Result<(usize, usize), StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let expiry = txn.open_table(EXPIRY).map_err(|e| self.err(e))?;
        let total = expiry.len().map_err(|e| self.err(e))?;
        let mut expired = 0;
        for item in expiry
            .range::<&[u8; 16]>(..=&expiry_key(now, u64::MAX))
            .map_err(|e| self.err(e))?
        {
            item.map_err(|e| self.err(e))?;
            expired += 1;
        }
        Ok((total as usize, expired))
    }

    /// The cursor is `(expires_at, seq)`, the `expiry` row itself.
    fn due(
        &self,
        upto: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<Due>, StateError> {
        let upper = expiry_key(upto, u64::MAX);
        let lower = match after {
            Some((at, seq)) => {
                let lower = expiry_key(at, seq);
                if lower >= upper {
                    return Ok(Vec::new());
                }
                Bound::Excluded(lower)
            }
            None => Bound::Unbounded,
        };
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let expiry = txn.open_table(EXPIRY).map_err(|e| self.err(e))?;
        let kv = txn.open_table(KV).map_err(|e| self.err(e))?;
        let range = expiry
            .range::<&[u8; 16]>((lower.as_ref(), Bound::Included(&upper)))
            .map_err(|e| self.err(e))?;
        let mut due = Vec::with_capacity(limit.min(1024));
        for item in range.take(limit) {
            let (row, key) = item.map_err(|e| self.err(e))?;
            let (expires_at, seq) = split_expiry_key(row.value());
            // Every row's key is in `kv` with that expiry (`write_batch`
            // writes both in one transaction); the entry gives the partition.
            let entry = kv.get(key.value()).map_err(|e| self.err(e))?;
            let Some(entry) = entry else {
                debug_assert!(false, "an expiry row without its kv entry");
                continue;
            };
            due.push(Due {
                key: Bytes::copy_from_slice(key.value()),
                partition: decode(entry.value()).0.partition,
                expires_at,
                cursor: (expires_at, seq),
            });
        }
        Ok(due)
    }

    fn commit(
        &self,
        records: &[&Record],
        positions: &[i64],
        at_end: &[Option<bool>],
    ) -> Result<(), StateError> {
        self.write_batch(records, positions, at_end)
    }

    /// Committed already.
    fn install(&self, _: Vec<Record>, _: &[bool]) {}

    fn sync(&self) -> Result<(), StateError> {
        self.sync_checkpoint()
    }
}

/// The checkpoint proper: positions, and the time before which every record
/// is reflected in them.
fn write_positions(
    meta: &mut redb::Table<&str, &[u8]>,
    positions: &[i64],
    saved_at: SystemTime,
) -> Result<(), redb::StorageError> {
    let bytes: Vec<u8> = positions.iter().flat_map(|p| p.to_le_bytes()).collect();
    meta.insert("positions", &bytes[..])?;
    meta.insert("saved_at", &millis(saved_at)[..])?;
    Ok(())
}

fn millis(time: SystemTime) -> [u8; 8] {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    ms.to_le_bytes()
}

/// A `meta` integer (little-endian u64).
fn u64_of(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_le_bytes)
}

/// `header` ‖ `value` as a `kv` entry, into `out`.
fn encode(out: &mut Vec<u8>, header: &Header, value: &[u8]) {
    assert!(
        (0..1 << TYPE_SHIFT).contains(&header.partition),
        "the disk state holds partitions below 2^{TYPE_SHIFT}, not {}",
        header.partition
    );
    let mut partition = header.partition as u32 | u32::from(header.ty.code()) << TYPE_SHIFT;
    if header.expires_at.is_some() {
        partition |= HAS_EXPIRY;
    }
    out.clear();
    out.extend_from_slice(&header.seq.to_le_bytes());
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(&header.offset.to_le_bytes());
    if let Some(at) = header.expires_at {
        out.extend_from_slice(&at.to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// A `kv` entry's header and value.
fn decode(encoded: &[u8]) -> (Header, &[u8]) {
    let partition = u32::from_le_bytes(encoded[8..12].try_into().expect("header"));
    let (expires_at, value_at) = if partition & HAS_EXPIRY != 0 {
        let at = i64::from_le_bytes(encoded[HEADER..HEADER + 8].try_into().expect("expiry"));
        (Some(at), HEADER + 8)
    } else {
        (None, HEADER)
    };
    let header = Header {
        seq: u64::from_le_bytes(encoded[..8].try_into().expect("header")),
        partition: (partition & PARTITION_MASK) as i32,
        offset: i64::from_le_bytes(encoded[12..HEADER].try_into().expect("header")),
        expires_at,
        ty: Type::from_code(((partition & !HAS_EXPIRY) >> TYPE_SHIFT) as u8)
            .expect("encode writes only type codes"),
    };
    (header, &encoded[value_at..])
}

/// The `expiry` row of an entry with `header`, if it has an expiry.
fn expiry_row(header: Header) -> Option<[u8; 16]> {
    header.expires_at.map(|at| expiry_key(at, header.seq))
}

/// `expires_at` ‖ `seq` as bytes whose order is the pairs' numeric order:
/// big-endian, with the sign bit flipped so that negative times (before the
/// epoch) sort first.
fn expiry_key(expires_at: i64, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&((expires_at as u64) ^ (1 << 63)).to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The inverse of [`expiry_key`].
fn split_expiry_key(key: &[u8; 16]) -> (i64, u64) {
    let at = u64::from_be_bytes(key[..8].try_into().expect("8 bytes")) ^ (1 << 63);
    let seq = u64::from_be_bytes(key[8..].try_into().expect("8 bytes"));
    (at as i64, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(partition: i32, offset: i64, key: &str, value: &str) -> Record {
        Record::put(partition, offset, key.as_bytes(), value.as_bytes())
    }

    fn put_expiring(partition: i32, offset: i64, key: &str, expires_at: i64) -> Record {
        put(partition, offset, key, "v").with_expiry(Some(expires_at))
    }

    fn checkpoint(positions: Vec<i64>) -> Checkpoint {
        Checkpoint {
            topic: "t".into(),
            topic_id: Some("id".into()),
            positions,
            saved_at: None,
        }
    }

    fn fresh(dir: &tempfile::TempDir) -> DiskTable {
        let (table, found) = DiskTable::open(&dir.path().join("t.redb")).unwrap();
        assert!(found.is_none(), "a new file has no checkpoint");
        table.reset(&checkpoint(vec![0, 0])).unwrap();
        table
    }

    fn commit(table: &DiskTable, records: &[Record], positions: &[i64]) {
        let records: Vec<&Record> = records.iter().collect();
        table
            .commit(&records, positions, &vec![Some(false); positions.len()])
            .unwrap();
    }

    fn keys(table: &DiskTable) -> Vec<String> {
        let mut keys = Vec::new();
        table
            .visit(std::ops::Bound::Unbounded, &mut |live| {
                keys.push(String::from_utf8(live.key.to_vec()).unwrap());
                true
            })
            .unwrap();
        keys
    }

    #[test]
    fn committed_records_are_readable_at_once_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cursors;
        {
            let table = fresh(&dir);
            commit(
                &table,
                &[
                    put(0, 0, "b", "1"),
                    put(1, 0, "a", "2"),
                    put(0, 1, "c", "3"),
                ],
                &[2, 1],
            );
            // Readers see a commit without an install.
            assert_eq!(
                table.get(b"a").unwrap(),
                Some(Versioned {
                    value: Bytes::from_static(b"2"),
                    partition: 1,
                    offset: 0,
                    expires_at: None,
                    ty: Type::String,
                })
            );
            commit(
                &table,
                &[Record::tombstone(0, 2, b"c"), put(0, 3, "a", "4")],
                &[4, 1],
            );
            assert_eq!(keys(&table), ["a", "b"]);
            assert_eq!(table.len(), 2);
            cursors = table.cursor_page(0, 10, 0).unwrap();
            table.sync().unwrap();
        }
        let (table, found) = DiskTable::open(&dir.path().join("t.redb")).unwrap();
        let found = found.expect("the checkpoint");
        assert_eq!(found.positions, vec![4, 1]);
        assert_eq!(found.topic_id.as_deref(), Some("id"));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(b"a").unwrap().unwrap().value, &b"4"[..]);
        assert!(!table.contains(b"c").unwrap());
        // Cursors are sequence numbers kept on disk: the same after a restart,
        // and an overwrite ("a") kept its place.
        assert_eq!(table.cursor_page(0, 10, 0).unwrap(), cursors);
        assert_eq!(
            cursors.0,
            vec![Bytes::from_static(b"b"), Bytes::from_static(b"a")]
        );
    }

    #[test]
    fn reset_empties_the_table_and_starts_a_new_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let table = fresh(&dir);
        commit(&table, &[put(0, 0, "a", "1")], &[1, 0]);
        table.reset(&checkpoint(vec![5, 7])).unwrap();
        assert_eq!(table.len(), 0);
        assert!(keys(&table).is_empty());
        assert_eq!(table.cursor_page(0, 10, 0).unwrap(), (Vec::new(), None));
        drop(table);
        let (_, found) = DiskTable::open(&dir.path().join("t.redb")).unwrap();
        assert_eq!(found.unwrap().positions, vec![5, 7]);
    }

    #[test]
    fn a_file_open_elsewhere_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let _table = fresh(&dir);
        let error = DiskTable::open(&dir.path().join("t.redb")).unwrap_err();
        assert!(matches!(error, StateError::InUse(_)), "{error}");
        assert!(error.to_string().contains("another process"), "{error}");
    }

    #[test]
    fn a_file_of_another_format_has_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let table = fresh(&dir);
            let txn = table.begin(Durability::Immediate).unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("format", &(FORMAT + 1).to_le_bytes()[..])
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let (_, found) = DiskTable::open(&path).unwrap();
        assert!(found.is_none(), "an unknown format is rebuilt, not trusted");
    }

    fn due_keys(due: &[Due]) -> Vec<(&str, i64)> {
        due.iter()
            .map(|d| (std::str::from_utf8(&d.key).unwrap(), d.expires_at))
            .collect()
    }

    /// The rows of `expiry`, decoded.
    fn expiry_rows(table: &DiskTable) -> Vec<(i64, u64, String)> {
        let txn = table.db.begin_read().unwrap();
        let expiry = txn.open_table(EXPIRY).unwrap();
        expiry
            .iter()
            .unwrap()
            .map(|item| {
                let (row, key) = item.unwrap();
                let (at, seq) = split_expiry_key(row.value());
                (at, seq, String::from_utf8(key.value().to_vec()).unwrap())
            })
            .collect()
    }

    fn stored_format(table: &DiskTable) -> Option<u64> {
        let txn = table.db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let format = meta.get("format").unwrap();
        format.and_then(|f| u64_of(f.value()))
    }

    #[test]
    fn expiry_keys_sort_as_numbers() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(
                expiry_key(pair[0], u64::MAX) < expiry_key(pair[1], 0),
                "{pair:?}"
            );
        }
        assert!(expiry_key(7, 1) < expiry_key(7, 2));
        for at in times {
            assert_eq!(split_expiry_key(&expiry_key(at, 42)), (at, 42));
        }
    }

    #[test]
    fn expiries_survive_a_reopen_and_are_due_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let table = fresh(&dir);
            commit(
                &table,
                &[
                    put_expiring(0, 0, "a", 300),
                    put_expiring(1, 0, "b", 100),
                    put(0, 1, "c", "v"),
                    put_expiring(0, 2, "d", 200),
                    put_expiring(1, 1, "e", 100),
                    put_expiring(0, 3, "f", -1),
                ],
                &[4, 2],
            );
            table.sync().unwrap();
        }
        let (table, found) = DiskTable::open(&dir.path().join("t.redb")).unwrap();
        assert!(found.is_some());
        assert_eq!(table.get(b"a").unwrap().unwrap().expires_at, Some(300));
        assert_eq!(table.get(b"c").unwrap().unwrap().expires_at, None);
        // The value follows the expiry in the entry, intact.
        assert_eq!(table.get(b"d").unwrap().unwrap().value, &b"v"[..]);
        let mut seen = Vec::new();
        table
            .visit(Bound::Unbounded, &mut |live| {
                seen.push((live.key.to_vec(), live.expires_at, live.partition));
                true
            })
            .unwrap();
        assert_eq!(
            seen,
            [
                (b"a".to_vec(), Some(300), 0),
                (b"b".to_vec(), Some(100), 1),
                (b"c".to_vec(), None, 0),
                (b"d".to_vec(), Some(200), 0),
                (b"e".to_vec(), Some(100), 1),
                (b"f".to_vec(), Some(-1), 0),
            ]
        );

        // Exactly the expired entries, by time and then by seq (b before e),
        // a time before the epoch first.
        let all = table.due(250, None, 10).unwrap();
        assert_eq!(
            due_keys(&all),
            [("f", -1), ("b", 100), ("e", 100), ("d", 200)]
        );
        assert_eq!(all[1].partition, 1);
        assert_eq!(all[3].partition, 0);
        assert!(table.due(-2, None, 10).unwrap().is_empty());
        assert_eq!(due_keys(&table.due(i64::MAX, None, 10).unwrap()).len(), 5);

        // Resuming from a cursor goes on strictly after it.
        let first = table.due(250, None, 2).unwrap();
        assert_eq!(due_keys(&first), [("f", -1), ("b", 100)]);
        let next = table.due(250, Some(first[1].cursor), 2).unwrap();
        assert_eq!(due_keys(&next), [("e", 100), ("d", 200)]);
        assert!(table.due(250, Some(next[1].cursor), 2).unwrap().is_empty());
        assert!(
            table
                .due(250, Some((i64::MAX, u64::MAX)), 2)
                .unwrap()
                .is_empty()
        );
        assert!(table.due(250, None, 0).unwrap().is_empty());

        assert_eq!(table.volatile_counts(-2).unwrap(), (5, 0));
        assert_eq!(table.volatile_counts(100).unwrap(), (5, 3));
        assert_eq!(table.volatile_counts(i64::MAX).unwrap(), (5, 5));
    }

    #[test]
    fn an_overwrite_without_an_expiry_and_a_delete_remove_the_expiry_row() {
        let dir = tempfile::tempdir().unwrap();
        let table = fresh(&dir);
        commit(
            &table,
            &[
                put_expiring(0, 0, "a", 100),
                put_expiring(0, 1, "b", 100),
                put_expiring(0, 2, "c", 100),
                put_expiring(0, 3, "d", 100),
            ],
            &[4, 0],
        );
        assert_eq!(table.volatile_counts(100).unwrap(), (4, 4));
        commit(
            &table,
            &[
                put(0, 4, "a", "plain"),
                Record::tombstone(0, 5, b"b"),
                put_expiring(0, 6, "c", 50),
                // The same expiry again: the row stays as it was.
                put_expiring(0, 7, "d", 100),
            ],
            &[8, 0],
        );
        let a = table.get(b"a").unwrap().unwrap();
        assert_eq!(
            (a.value, a.expires_at),
            (Bytes::from_static(b"plain"), None)
        );
        assert!(table.get(b"b").unwrap().is_none());
        // Seqs: a 1, b 2, c 3, d 4; c and d kept theirs.
        assert_eq!(
            expiry_rows(&table),
            [(50, 3, "c".to_owned()), (100, 4, "d".to_owned())]
        );
        assert_eq!(
            due_keys(&table.due(i64::MAX, None, 10).unwrap()),
            [("c", 50), ("d", 100)]
        );
        assert_eq!(table.volatile_counts(60).unwrap(), (2, 1));
        // A key deleted and written again gets a new seq, so a sweeper's old
        // cursor cannot skip its new row.
        commit(&table, &[put_expiring(0, 8, "b", 100)], &[9, 0]);
        assert_eq!(expiry_rows(&table)[2], (100, 5, "b".to_owned()));
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn scans_and_key_at_hide_expired_keys() {
        let dir = tempfile::tempdir().unwrap();
        let table = fresh(&dir);
        commit(
            &table,
            &[
                put_expiring(0, 0, "a", 100),
                put(0, 1, "b", "v"),
                put_expiring(0, 2, "c", 200),
            ],
            &[3, 0],
        );
        let keys_of = |page: &[Bytes]| page.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
        let (page, next) = table.cursor_page(0, 10, 50).unwrap();
        assert_eq!(
            (keys_of(&page), next),
            (vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], None)
        );
        // "a" (cursor 1) has expired but still counts towards the page.
        let (page, next) = table.cursor_page(0, 2, 150).unwrap();
        assert_eq!((keys_of(&page), next), (vec![b"b".to_vec()], Some(3)));
        let (page, next) = table.cursor_page(0, 10, 200).unwrap();
        assert_eq!((keys_of(&page), next), (vec![b"b".to_vec()], None));
        assert_eq!(table.key_at(1, 50).unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(table.key_at(1, 100).unwrap(), None);
        assert_eq!(table.key_at(2, 1000).unwrap().as_deref(), Some(&b"b"[..]));
        assert_eq!(table.key_at(3, 150).unwrap().as_deref(), Some(&b"c"[..]));
        // Expired keys stay in the table until their SWEEP is applied.
        assert_eq!(table.cursor_bound().unwrap(), 4);
        assert_eq!(table.len(), 3);
    }

    /// Rewrites `table`'s file as format 1 wrote it: the same entries (none
    /// with an expiry), no `expiry` table, `format` 1.
    fn make_format_1(table: &DiskTable) {
        let txn = table.begin(Durability::Immediate).unwrap();
        assert!(txn.delete_table(EXPIRY).unwrap());
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("format", &FORMAT_1.to_le_bytes()[..]).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_format_1_file_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let table = fresh(&dir);
            commit(&table, &[put(0, 0, "a", "1"), put(1, 0, "b", "2")], &[1, 1]);
            make_format_1(&table);
        }
        let (table, found) = DiskTable::open(&path).unwrap();
        assert_eq!(found.expect("kept, not rebuilt").positions, vec![1, 1]);
        assert_eq!(stored_format(&table), Some(FORMAT));
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.get(b"b").unwrap(),
            Some(Versioned {
                value: Bytes::from_static(b"2"),
                partition: 1,
                offset: 0,
                expires_at: None,
                ty: Type::String,
            })
        );
        assert_eq!(table.volatile_counts(i64::MAX).unwrap(), (0, 0));
        assert!(table.due(i64::MAX, None, 10).unwrap().is_empty());
        assert_eq!(table.cursor_page(0, 10, 0).unwrap().0.len(), 2);
        // Expiries work from the first commit on.
        commit(&table, &[put_expiring(0, 1, "a", 100)], &[2, 1]);
        assert_eq!(due_keys(&table.due(100, None, 10).unwrap()), [("a", 100)]);
        drop(table);
        let (table, found) = DiskTable::open(&path).unwrap();
        assert_eq!(found.unwrap().positions, vec![2, 1]);
        assert_eq!(table.get(b"a").unwrap().unwrap().expires_at, Some(100));
    }

    #[test]
    fn a_format_2_file_is_upgraded_in_place_and_types_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let table = fresh(&dir);
            // Format 2 is format 3 with strings only.
            commit(&table, &[put_expiring(0, 0, "a", 100)], &[1, 0]);
            let txn = table.begin(Durability::Immediate).unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("format", &FORMAT_2.to_le_bytes()[..]).unwrap();
            }
            txn.commit().unwrap();
        }
        let (table, found) = DiskTable::open(&path).unwrap();
        assert_eq!(found.expect("kept, not rebuilt").positions, vec![1, 0]);
        assert_eq!(stored_format(&table), Some(FORMAT));
        let a = table.get(b"a").unwrap().unwrap();
        assert_eq!((a.ty, a.expires_at), (Type::String, Some(100)));
        // Every type, with and without an expiry.
        let typed: Vec<Record> = Type::ALL
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                let key = format!("k{i}");
                let record = put(1, i as i64, &key, "v").with_type(*ty);
                record.with_expiry((i % 2 == 0).then_some(1_000 + i as i64))
            })
            .collect();
        commit(&table, &typed, &[1, 5]);
        drop(table);
        let (table, _) = DiskTable::open(&path).unwrap();
        for (i, ty) in Type::ALL.iter().enumerate() {
            let entry = table.get(format!("k{i}").as_bytes()).unwrap().unwrap();
            assert_eq!(
                (entry.ty, entry.partition, entry.expires_at),
                (*ty, 1, (i % 2 == 0).then_some(1_000 + i as i64)),
                "{ty:?}"
            );
        }
    }

    #[test]
    fn upgrading_drops_expiry_rows_an_older_kafkv_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let table = fresh(&dir);
            commit(&table, &[put_expiring(0, 0, "old", 100)], &[1, 0]);
            // What a format-1 kafkv's rebuild of this file leaves: its reset
            // replaces `kv`, `order` and `meta` but knows nothing of `expiry`.
            let stale = expiry_rows(&table);
            assert_eq!(stale.len(), 1);
            table.reset(&checkpoint(vec![0, 0])).unwrap();
            commit(&table, &[put(0, 0, "new", "v")], &[1, 0]);
            make_format_1(&table);
            let txn = table.begin(Durability::Immediate).unwrap();
            {
                let mut expiry = txn.open_table(EXPIRY).unwrap();
                let (at, seq, key) = &stale[0];
                expiry
                    .insert(&expiry_key(*at, *seq), key.as_bytes())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let (table, found) = DiskTable::open(&path).unwrap();
        assert!(found.is_some());
        assert!(expiry_rows(&table).is_empty());
        assert_eq!(table.volatile_counts(i64::MAX).unwrap(), (0, 0));
        assert_eq!(keys(&table), ["new"]);
    }
}
