//! kafkv's own connection to the embedded broker's SQLite database, beside
//! tansu's: the key and header indexes, the in-row headers column
//! ([`super::row_headers`]), producer-epoch rows, produced
//! batches ([`super::produce`]) and compaction ([`super::maintenance`]).
//! Callers hold the storage gate exclusively
//! ([`super::storage::KafkvStorage::exclusive`]) while they use it; the
//! checkpoint task's connection ([`Database::connect`]) needs no gate, since
//! a passive checkpoint waits for no lock and takes none a writer waits for.

use std::path::Path;

use libsql::{Connection, Statement, Value, params::Params};

use super::BrokerError;

/// The index that makes compaction linear instead of quadratic: both tansu's
/// `GROUP BY (topition, k)` and kafkv's "is there a newer record for this
/// key" probe walk it.
const KEY_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS kafkv_record_key ON record (topition, k, offset_id)";

/// tansu's `header` table has no index, so its per-record header lookup on
/// every fetch (and the cascade that deletes a compacted record's headers)
/// scans every header row of the database. With operation and repair records
/// every record carries headers and that scan dominated the broker's CPU:
/// INCR at 50 clients went from 368 to 5,049 per second with this index
/// (`kafkv-bench --only rmw`).
const HEADER_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS kafkv_header_record ON header (topition, offset_id)";

/// The column of `record` that holds the headers kafkv's produce path
/// writes ([`super::row_headers`]). Adding a nullable column to a SQLite
/// table rewrites nothing; tansu's statements name their columns, so they
/// neither see it nor mind it.
const HEADERS_COLUMN: &str = "ALTER TABLE record ADD COLUMN kafkv_headers BLOB";

/// A partition's row id (`topition.id`), by cluster, topic and partition:
/// what kafkv's statements key records and headers by.
pub const TOPITION_ID: &str = "SELECT tp.id FROM cluster c JOIN topic t ON t.cluster = c.id \
     JOIN topition tp ON tp.topic = t.id \
     WHERE c.name = ?1 AND t.name = ?2 AND tp.partition = ?3";

/// The WAL size, in pages, at which the produce connection checkpoints
/// itself: ten times SQLite's default. Under steady produces the WAL reaches
/// it (the checkpoint task's copies race the commits, so the WAL is seldom
/// started over: [`super::checkpoint`]), and the writer then copies only
/// what the task has not.
pub const BACKSTOP_PAGES: u32 = 10_000;

pub struct Database {
    connection: Connection,
    /// Kept open for the connection's lifetime, and for more connections.
    database: libsql::Database,
}

impl Database {
    /// Opens the database tansu has created (its schema must exist) and adds
    /// kafkv's indexes.
    pub async fn open(path: &Path) -> Result<Self, BrokerError> {
        let error = |e: libsql::Error| BrokerError::Index {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let database = libsql::Builder::new_local(path)
            .build()
            .await
            .map_err(error)?;
        let connection = database.connect().map_err(error)?;
        // tansu's storage task may hold a write lock briefly; wait for it
        // rather than fail. Cascades remove a deleted record's headers.
        // Commits are not fsynced here, as on tansu's connections: whether
        // an acknowledged produce waits for an fsync is `--broker-sync`'s
        // (super::wal_sync), which syncs the WAL after the commit. At
        // SQLite's default (FULL) every produce transaction would fsync.
        // The checkpoint task copies the WAL back into the database file
        // off the produce path (super::checkpoint). A page cache of 64 MiB
        // instead of SQLite's 2 MiB keeps the index pages a produce walks
        // (the key index is random by key) in memory: during a bulk expiry
        // reading them back took 9.5% of the broker's CPU, 1% after.
        let backstop = format!("PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}");
        for pragma in [
            "PRAGMA busy_timeout = 10000",
            "PRAGMA foreign_keys = ON",
            "PRAGMA synchronous = NORMAL",
            &backstop,
            "PRAGMA cache_size = -65536",
        ] {
            let mut rows = connection.query(pragma, ()).await.map_err(error)?;
            while rows.next().await.map_err(error)?.is_some() {}
        }
        for index in [KEY_INDEX, HEADER_INDEX] {
            connection.execute(index, ()).await.map_err(error)?;
        }
        let mut columns = connection
            .query(
                "SELECT 1 FROM pragma_table_info('record') WHERE name = 'kafkv_headers'",
                (),
            )
            .await
            .map_err(error)?;
        // Stepped to its end: a statement left mid-way would keep this
        // connection's read transaction open.
        let mut has_headers_column = false;
        while columns.next().await.map_err(error)?.is_some() {
            has_headers_column = true;
        }
        drop(columns);
        if !has_headers_column {
            connection
                .execute(HEADERS_COLUMN, ())
                .await
                .map_err(error)?;
        }
        Ok(Self {
            connection,
            database,
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Another connection to the same database, for work beside this one's
    /// (the checkpoint task).
    pub fn connect(&self) -> Result<Connection, libsql::Error> {
        self.database.connect()
    }

    /// Makes `epoch` known for `producer` if it is newer than the highest
    /// recorded. Returns the highest epoch now recorded, or `None` when the
    /// producer id is unknown (tansu answers that case itself).
    pub async fn accept_producer_epoch(
        &self,
        producer: i64,
        epoch: i16,
    ) -> Result<Option<i16>, libsql::Error> {
        let mut rows = self
            .connection
            .query(
                "SELECT max(epoch) FROM producer_epoch WHERE producer = ?1",
                [producer],
            )
            .await?;
        let highest = match rows.next().await? {
            Some(row) => row.get::<Option<i64>>(0)?,
            None => None,
        };
        let Some(highest) = highest else {
            return Ok(None);
        };
        let highest = i16::try_from(highest).unwrap_or(i16::MAX);
        if highest >= epoch {
            return Ok(Some(highest));
        }
        self.connection
            .execute(
                "INSERT INTO producer_epoch (producer, epoch) VALUES (?1, ?2)",
                [producer, i64::from(epoch)],
            )
            .await?;
        Ok(Some(epoch))
    }
}

// Running prepared statements. Every use resets the statement first: libsql
// binds without resetting, and SQLite ignores a bind on a statement that has
// run (libsql drops that error).

/// Runs a statement that returns nothing of interest.
pub async fn run(
    statement: &Statement,
    params: impl libsql::params::IntoParams,
) -> libsql::Result<()> {
    statement.reset();
    statement.run(params).await
}

pub async fn execute(statement: &Statement, params: Vec<Value>) -> libsql::Result<usize> {
    statement.reset();
    statement.execute(Params::Positional(params)).await
}

/// The first row's `read`, or `None` without rows. The row is read before
/// the statement is reset, because a row reads its statement's columns.
pub async fn first_row<T>(
    statement: &Statement,
    params: Vec<Value>,
    read: impl FnOnce(&libsql::Row) -> libsql::Result<T>,
) -> libsql::Result<Option<T>> {
    statement.reset();
    let first = async {
        let mut rows = statement.query(Params::Positional(params)).await?;
        match rows.next().await? {
            Some(row) => Ok(Some(read(&row)?)),
            None => Ok(None),
        }
    }
    .await;
    // On every path: a statement left stepping keeps its read snapshot.
    statement.reset();
    first
}
