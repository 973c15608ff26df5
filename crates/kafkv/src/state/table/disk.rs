//! The disk backend (`--state disk`): the view in a redb database under the
//! data dir, with the per-partition applied offsets (the checkpoint) written
//! in the same transaction as the records they cover, so whatever a crash
//! leaves behind is a state and the offsets that produced it.
//!
//! Tables:
//! - `kv`: key → seq (u64) ‖ partition (i32) ‖ offset (i64) ‖ value, integers
//!   little-endian. `seq` is the key's place in `order`.
//! - `order`: seq → key. A key keeps its seq while it is live (overwrites
//!   update in place); a new key gets the next one. This is the `SCAN`
//!   cursor's index, as slot ids are in the memory backend.
//! - `meta`: `positions` (i64 per partition), `saved_at` (ms since the
//!   epoch), `topic`, `topic_id`, `next_seq`, `format`.
//!
//! Durability: a commit is fsynced (redb `Durability::Immediate`) at most
//! every [`DURABLE_EVERY`] and on close; the commits in between are
//! `Durability::None`, which a process crash may roll back, always to an
//! earlier durable commit, whose offsets are then replayed from Kafka.
//! Quick-repair is on so that reopening after a crash does not walk the
//! whole file.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use parking_lot::Mutex;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::{Live, StateError, Table, Versioned};
use crate::record::Record;

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const ORDER: TableDefinition<u64, &[u8]> = TableDefinition::new("order");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The on-disk layout this code reads and writes; another value means the
/// file was written by an incompatible kafkv and is rebuilt.
const FORMAT: u64 = 1;
const HEADER: usize = 20;

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

/// A live entry read from disk.
#[derive(Debug)]
struct StoredEntry {
    partition: i32,
    offset: i64,
    value: Vec<u8>,
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
    /// Opens (or creates) the database at `path`, and reads its checkpoint.
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
        let checkpoint = table.read_checkpoint()?;
        if let Some(saved_at) = checkpoint.as_ref().and_then(|c| c.saved_at) {
            *table.caught_up_before.lock() = saved_at;
        }
        Ok((table, checkpoint))
    }

    fn visit_in(
        &self,
        txn: &redb::ReadTransaction,
        lower: std::ops::Bound<&[u8]>,
        visit: &mut dyn FnMut(Live<'_>) -> bool,
    ) -> Result<(), StateError> {
        let kv = txn.open_table(KV).map_err(|e| self.err(e))?;
        let range = kv
            .range::<&[u8]>((lower, std::ops::Bound::Unbounded))
            .map_err(|e| self.err(e))?;
        for item in range {
            let (key, value) = item.map_err(|e| self.err(e))?;
            let entry = decode(value.value());
            let live = Live {
                key: key.value().to_vec().into(),
                value: entry.value.into(),
                partition: entry.partition,
                offset: entry.offset,
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
        let u64_of =
            |bytes: Option<Vec<u8>>| bytes.and_then(|b| b.try_into().ok().map(u64::from_le_bytes));
        if u64_of(get("format")?) != Some(FORMAT) {
            return Ok(None);
        }
        let (Some(topic), Some(positions)) = (get("topic")?, get("positions")?) else {
            return Ok(None);
        };
        self.next_seq
            .store(u64_of(get("next_seq")?).unwrap_or(1), Ordering::Relaxed);
        let kv = txn.open_table(KV).map_err(|e| self.err(e))?;
        self.live
            .store(kv.len().map_err(|e| self.err(e))?, Ordering::Relaxed);
        Ok(Some(Checkpoint {
            topic: String::from_utf8_lossy(&topic).into_owned(),
            topic_id: get("topic_id")?.map(|id| String::from_utf8_lossy(&id).into_owned()),
            saved_at: u64_of(get("saved_at")?).map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
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
            let mut encoded = Vec::new();
            for record in records {
                let existing = kv
                    .get(record.key())
                    .map_err(|e| self.err(e))?
                    .map(|v| seq_of(v.value()));
                match (record.value(), existing) {
                    (Some(value), existing) => {
                        let seq = existing.unwrap_or_else(|| {
                            next_seq += 1;
                            next_seq - 1
                        });
                        encoded.clear();
                        encoded.extend_from_slice(&seq.to_le_bytes());
                        encoded.extend_from_slice(&record.partition.to_le_bytes());
                        encoded.extend_from_slice(&record.offset.to_le_bytes());
                        encoded.extend_from_slice(value);
                        kv.insert(record.key(), &encoded[..])
                            .map_err(|e| self.err(e))?;
                        if existing.is_none() {
                            order.insert(seq, record.key()).map_err(|e| self.err(e))?;
                            live += 1;
                        }
                    }
                    (None, Some(seq)) => {
                        kv.remove(record.key()).map_err(|e| self.err(e))?;
                        order.remove(seq).map_err(|e| self.err(e))?;
                        live -= 1;
                    }
                    (None, None) => {}
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
}

impl Table for DiskTable {
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let kv = txn.open_table(KV).map_err(|e| self.err(e))?;
        Ok(kv
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| decode(v.value()))
            .map(|entry| Versioned {
                value: entry.value.into(),
                partition: entry.partition,
                offset: entry.offset,
            }))
    }

    fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed) as usize
    }

    fn visit(
        &self,
        lower: std::ops::Bound<&[u8]>,
        visit: &mut dyn FnMut(Live<'_>) -> bool,
    ) -> Result<(), StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        self.visit_in(&txn, lower, visit)
    }

    /// The positions come from the same read transaction as the entries:
    /// each commit writes both.
    fn visit_at(
        &self,
        lower: std::ops::Bound<&[u8]>,
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

    fn key_at(&self, cursor: u64) -> Result<Option<Bytes>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let order = txn.open_table(ORDER).map_err(|e| self.err(e))?;
        let key = order.get(cursor).map_err(|e| self.err(e))?;
        Ok(key.map(|key| Bytes::copy_from_slice(key.value())))
    }

    /// The cursor is the key's sequence number (`order`).
    fn cursor_page(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<Bytes>, Option<u64>), StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let order = txn.open_table(ORDER).map_err(|e| self.err(e))?;
        let mut keys = Vec::with_capacity(count.min(1024));
        let mut range = order.range(cursor..).map_err(|e| self.err(e))?;
        for item in range.by_ref().take(count) {
            let (_, key) = item.map_err(|e| self.err(e))?;
            keys.push(Bytes::copy_from_slice(key.value()));
        }
        let next = match range.next() {
            Some(item) => Some(item.map_err(|e| self.err(e))?.0.value()),
            None => None,
        };
        Ok((keys, next))
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

fn seq_of(encoded: &[u8]) -> u64 {
    u64::from_le_bytes(encoded[..8].try_into().expect("header"))
}

fn decode(encoded: &[u8]) -> StoredEntry {
    StoredEntry {
        partition: i32::from_le_bytes(encoded[8..12].try_into().expect("header")),
        offset: i64::from_le_bytes(encoded[12..HEADER].try_into().expect("header")),
        value: encoded[HEADER..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(partition: i32, offset: i64, key: &str, value: &str) -> Record {
        Record::put(partition, offset, key.as_bytes(), value.as_bytes())
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
                    offset: 0
                })
            );
            commit(
                &table,
                &[Record::tombstone(0, 2, b"c"), put(0, 3, "a", "4")],
                &[4, 1],
            );
            assert_eq!(keys(&table), ["a", "b"]);
            assert_eq!(table.len(), 2);
            cursors = table.cursor_page(0, 10).unwrap();
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
        assert_eq!(table.cursor_page(0, 10).unwrap(), cursors);
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
        assert_eq!(table.cursor_page(0, 10).unwrap(), (Vec::new(), None));
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
}
