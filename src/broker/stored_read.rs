//! kafkv's read of a partition's stored records: what tansu 0.6's fetch
//! reads from SQLite, read with statements prepared once, in time
//! proportional to what it returns.
//!
//! A fetch the tail cache ([`super::tail`]) cannot answer — a bootstrap, a
//! consumer catching up — reads storage. tansu's fetch (`lite.rs`, `fetch`)
//! costs a fresh instance's bootstrap three ways:
//! - `record_fetch.sql` computes its byte budget with a window sum over every
//!   record from the fetch offset to the partition's end and only then drops
//!   the rows past the budget, so each fetch walks the rest of the partition
//!   and a bootstrap is quadratic in the partition's length;
//! - it compiles that query, and `header_fetch.sql` once per record, on
//!   every fetch (a profile of a bootstrap over records with headers was
//!   mostly `sqlite3_prepare_v2`);
//! - its first record's headers are read at the fetch offset, not at the
//!   record's, so a fetch from inside a compaction gap lost them
//!   ([`super::storage::KafkvStorage::fetch_from_tansu`] asks again).
//!
//! Here the records are read in offset order and the read stops where the
//! budget does; their headers come from one range read of the header index,
//! both statements prepared when the broker starts. The answer is built by
//! the tail cache's batch builder, which follows tansu's rules (one batch
//! per run of equal attributes and producer, the same budget on keys and
//! values). A test compares every answer with tansu's over random produces,
//! compactions and fetches (`broker::stored_read::tests`).
//!
//! **Invariant**: a read sees one committed state of the database: both
//! statements run in one read transaction, so a compaction or produce
//! committed between them cannot give a record headers it does not have.

use std::collections::VecDeque;

use bytes::Bytes;
use libsql::{Connection, Statement, Value, params::Params};
use tansu_sans_io::{
    IsolationLevel,
    record::{Header, deflated},
};
use tansu_storage::{Error, OffsetStage, Result, Topition};
use tokio::sync::Mutex;

use super::{
    CLUSTER_ID,
    database::{TOPITION_ID, first_row, run},
    row_headers,
    tail::{Stored, batches_of, fetch_end, octets},
};

/// A connection of its own with the read statements; one read at a time
/// uses them.
pub struct StoredRead {
    statements: Mutex<Statements>,
}

struct Statements {
    begin: Statement,
    end: Statement,
    topition: Statement,
    records: Statement,
    headers: Statement,
}

impl StoredRead {
    pub async fn prepare(connection: Connection) -> std::result::Result<Self, libsql::Error> {
        let prepare = async |sql: &str| connection.prepare(sql).await;
        let statements = Statements {
            begin: prepare("BEGIN").await?,
            end: prepare("COMMIT").await?,
            topition: prepare(TOPITION_ID).await?,
            // The primary key (topition, offset_id) orders the rows.
            records: prepare(
                "SELECT offset_id, attributes, timestamp, k, v, producer_id, producer_epoch, \
                 kafkv_headers \
                 FROM record WHERE topition = ?1 AND offset_id >= ?2 AND offset_id < ?3 \
                 ORDER BY offset_id",
            )
            .await?,
            // The headers tansu's produce path wrote (kafkv's keeps them in
            // the row). kafkv's header index (topition, offset_id) holds
            // the rowid too, so a record's headers come in the order they
            // were written, as tansu's per-record lookup returns them.
            headers: prepare(
                "SELECT offset_id, k, v FROM header \
                 WHERE topition = ?1 AND offset_id >= ?2 AND offset_id <= ?3 \
                 ORDER BY offset_id, rowid",
            )
            .await?,
        };
        Ok(Self {
            statements: Mutex::new(statements),
        })
    }

    /// The batches tansu's fetch returns for `offset` and `max_bytes` (it
    /// ignores `min_bytes`), given the partition's `stage`, with the headers
    /// kept in each record's row as well as those in the `header` table.
    pub async fn read(
        &self,
        topition: &Topition,
        offset: i64,
        max_bytes: u32,
        isolation: IsolationLevel,
        stage: &OffsetStage,
    ) -> Result<Vec<deflated::Batch>> {
        let end = fetch_end(stage, isolation);
        let statements = self.statements.lock().await;
        run(&statements.begin, ()).await.map_err(sql_error)?;
        let rows = statements.rows(topition, offset, end, max_bytes).await;
        // A statement stopped before its last row keeps its snapshot (and
        // the read transaction) open past COMMIT, and the next read would
        // see that old state: reset both first (`first_row` resets its own).
        statements.records.reset();
        statements.headers.reset();
        let ended = run(&statements.end, ()).await.map_err(sql_error);
        let rows = rows?;
        ended?;
        let rows: Vec<(i64, &Stored)> = rows.iter().map(|(at, row)| (*at, row)).collect();
        batches_of(&rows)
    }
}

impl Statements {
    /// The records from `offset` below `end`, while the running sum of key
    /// and value bytes, each row's own included, stays below `max_bytes`
    /// (`record_fetch.sql`'s rule), with their headers.
    async fn rows(
        &self,
        topition: &Topition,
        offset: i64,
        end: i64,
        max_bytes: u32,
    ) -> Result<Vec<(i64, Stored)>> {
        let id = first_row(
            &self.topition,
            vec![
                Value::from(CLUSTER_ID),
                Value::from(topition.topic()),
                Value::from(topition.partition()),
            ],
            |row| row.get::<i64>(0),
        )
        .await
        .map_err(sql_error)?;
        let Some(id) = id else {
            return Ok(Vec::new());
        };

        self.records.reset();
        let mut read = Vec::new();
        let mut budget_used = 0i64;
        {
            let mut rows = self
                .records
                .query(Params::Positional(vec![
                    Value::from(id),
                    Value::from(offset),
                    Value::from(end),
                ]))
                .await
                .map_err(sql_error)?;
            while let Some(row) = rows.next().await.map_err(sql_error)? {
                let key = bytes(row.get::<Option<Vec<u8>>>(3).map_err(sql_error)?);
                let value = bytes(row.get::<Option<Vec<u8>>>(4).map_err(sql_error)?);
                budget_used += (octets(&key) + octets(&value)) as i64;
                if budget_used >= i64::from(max_bytes) {
                    break;
                }
                // Both produce paths store milliseconds as an integer. One
                // before the epoch (a client's -1, "no timestamp", which
                // kafkv's path keeps as sent) is returned as stored, as
                // Kafka does; tansu's fetch fails the whole fetch on it.
                let Value::Integer(timestamp) = row.get_value(2).map_err(sql_error)? else {
                    return Err(Error::Message(format!(
                        "embedded broker fetch: {topition:?} offset {} has a timestamp that is \
                         not an integer, which no produce path writes",
                        row.get::<i64>(0).unwrap_or(-1)
                    )));
                };
                let attributes = row.get::<Option<i32>>(1).map_err(sql_error)?.unwrap_or(0);
                // As tansu's fetch reads them: no producer is (-1, -1).
                let producer = (
                    row.get::<Option<i64>>(5).map_err(sql_error)?.unwrap_or(-1),
                    row.get::<Option<i32>>(6).map_err(sql_error)?.unwrap_or(-1) as i16,
                );
                let headers = match row.get::<Option<Vec<u8>>>(7).map_err(sql_error)? {
                    Some(encoded) => row_headers::decode(&encoded).ok_or_else(|| {
                        Error::Message(format!(
                            "embedded broker fetch: the headers stored with {topition:?} \
                             offset {} are not in kafkv's format",
                            row.get::<i64>(0).unwrap_or(-1)
                        ))
                    })?,
                    None => Vec::new(),
                };
                read.push((
                    row.get::<i64>(0).map_err(sql_error)?,
                    Stored {
                        attributes: attributes as i16,
                        producer: (producer != (-1, -1)).then_some(producer),
                        timestamp,
                        key,
                        value,
                        headers,
                    },
                ));
            }
        }
        let (Some((first, _)), Some((last, _))) = (read.first(), read.last()) else {
            return Ok(read);
        };

        self.headers.reset();
        let mut rows = self
            .headers
            .query(Params::Positional(vec![
                Value::from(id),
                Value::from(*first),
                Value::from(*last),
            ]))
            .await
            .map_err(sql_error)?;
        // Both sequences are in offset order: walk them together.
        let mut records: VecDeque<&mut (i64, Stored)> = read.iter_mut().collect();
        while let Some(row) = rows.next().await.map_err(sql_error)? {
            let at = row.get::<i64>(0).map_err(sql_error)?;
            while records.front().is_some_and(|entry| entry.0 < at) {
                records.pop_front();
            }
            let Some(entry) = records.front_mut() else {
                break;
            };
            if entry.0 == at {
                entry.1.headers.push(Header {
                    key: bytes(row.get::<Option<Vec<u8>>>(1).map_err(sql_error)?),
                    value: bytes(row.get::<Option<Vec<u8>>>(2).map_err(sql_error)?),
                });
            }
        }
        drop(rows);
        Ok(read)
    }
}

fn bytes(stored: Option<Vec<u8>>) -> Option<Bytes> {
    stored.map(Bytes::from)
}

fn sql_error(error: libsql::Error) -> Error {
    Error::Message(format!("embedded broker fetch: {error}"))
}

#[cfg(test)]
mod tests {
    use tansu_sans_io::record::Record;

    use super::*;
    use tansu_storage::Storage as _;

    use crate::broker::{
        BrokerPaths,
        storage::KafkvStorage,
        testing::{
            Fetch, a_minute_ago, at_fetch_time, create_compacted_topic, execute_behind,
            mixed_batch, open, random_fetches,
        },
    };

    /// Every record's headers, in offset order.
    fn headers_of<'a>(batches: impl IntoIterator<Item = &'a deflated::Batch>) -> Vec<Vec<Header>> {
        batches
            .into_iter()
            .flat_map(|batch| Vec::<Record>::try_from(batch).expect("decodes"))
            .map(|record| record.headers)
            .collect()
    }

    /// A database from before the headers column (its records' headers in
    /// tansu's `header` table) gets the column when the broker opens it,
    /// and a read returns the headers of the records written before and of
    /// those written after, each where its path put them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_from_before_the_headers_column_keeps_its_headers() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("broker.db");
        let topition = Topition::new(TOPIC, 0);
        let mut rng = fastrand::Rng::with_seed(3);
        let start = a_minute_ago();
        let mut produced = Vec::new();
        let mut produce = async |storage: &KafkvStorage, steps: std::ops::Range<i64>| {
            for step in steps {
                let batch = mixed_batch(&mut rng, 4, start + step);
                storage
                    .produce(None, &topition, batch.clone())
                    .await
                    .expect("produced");
                produced.push(batch);
            }
        };
        let before = open(&path, BrokerPaths::KafkvFetch).await;
        create_compacted_topic(&before, TOPIC).await;
        produce(&before, 0..5).await;
        execute_behind(&path, "ALTER TABLE record DROP COLUMN kafkv_headers").await;
        let after = open(&path, BrokerPaths::Kafkv).await;
        drop(before);
        produce(&after, 5..10).await;
        let read = after
            .fetch_from_storage(&topition, 0, 0, 5 << 20, IsolationLevel::ReadUncommitted)
            .await
            .expect("read");
        let expected = headers_of(&produced);
        assert!(
            expected
                .iter()
                .filter(|headers| !headers.is_empty())
                .count()
                > 10,
            "the batches carry headers"
        );
        assert_eq!(headers_of(&read), expected);
    }

    const TOPIC: &str = "stored";

    /// kafkv's read answers every fetch as tansu's fetch does (with kafkv's
    /// header fix), over random sequences of produces, compactions, restarts
    /// and fetches from every offset with large and small budgets, at both
    /// isolation levels: on a database kafkv's produce path wrote (headers
    /// in the record's row), against tansu's fetch on a twin database tansu's
    /// produce path wrote with the same history; and on that twin (headers
    /// in tansu's `header` table), against tansu's fetch there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_every_fetch_as_tansus_fetch_does() {
        let (mut with_records, mut with_headers) = (0usize, 0usize);
        let paths = [BrokerPaths::Kafkv, BrokerPaths::KafkvFetch];
        random_fetches(TOPIC, &paths, async |fetch: Fetch<'_>| {
            let [ours, tansus_produce] = fetch.storages else {
                unreachable!("two storages");
            };
            let topition = fetch.topition;
            let (offset, max_bytes, isolation) = (fetch.offset, fetch.max_bytes, fetch.isolation);
            let tansus = tansus_produce
                .fetch_from_tansu(topition, offset, 0, max_bytes, isolation)
                .await
                .expect("tansu's fetch");
            for (reader, storage) in [("in-row", ours), ("tansu's rows", tansus_produce)] {
                let read = storage
                    .fetch_from_storage(topition, offset, 0, max_bytes, isolation)
                    .await
                    .expect("kafkv's read");
                let records = |batches: &[deflated::Batch]| {
                    batches.iter().map(|b| b.record_count).sum::<u32>()
                };
                if records(&read) == 0 && records(&tansus) == 0 {
                    // Both the empty batch, stamped with the time it was built.
                    continue;
                }
                with_records += 1;
                if read.iter().any(|batch| {
                    Vec::<Record>::try_from(batch)
                        .expect("decodes")
                        .iter()
                        .any(|record| !record.headers.is_empty())
                }) {
                    with_headers += 1;
                }
                assert_eq!(
                    read.into_iter().map(at_fetch_time).collect::<Vec<_>>(),
                    tansus
                        .iter()
                        .cloned()
                        .map(at_fetch_time)
                        .collect::<Vec<_>>(),
                    "{reader}: {}",
                    fetch.context
                );
            }
        })
        .await;
        println!("{with_records} fetches with records, {with_headers} with headers");
        assert!(
            with_records > 200,
            "only {with_records} fetches with records"
        );
        assert!(
            with_headers > 100,
            "only {with_headers} fetches with headers"
        );
    }
}
