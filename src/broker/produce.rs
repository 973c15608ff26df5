//! kafkv's own produce path for the embedded broker: the rows tansu 0.6's
//! `produce_in_tx` (tansu-storage `lite.rs`) writes for a batch, written on
//! kafkv's connection with statements prepared once, several produces per
//! SQLite transaction.
//!
//! **Why.** A profile of the broker under RESP `SET` (docs/design.md (l))
//! put 39% of its CPU in `sqlite3_prepare_v2`: tansu compiles each of the
//! 7 + n·(1 + headers) statements of an n-record batch afresh every time, and
//! commits every batch in its own transaction after resolving the partition
//! by name in every statement. Here the statements are compiled when the
//! broker starts, the partition is resolved once per transaction, and the
//! produces that arrive while one transaction commits share the next one.
//!
//! **The same rows as tansu, but for headers.** For each batch (steps 1 and
//! 2 checked, and its records decoded, before anything of it is written):
//! 1. Idempotence, for a batch with a producer id and base sequence (as
//!    tansu's `idempotent_message_check`): the producer's newest epoch
//!    decides `ProducerFenced` / `InvalidProducerEpoch`; the sequence stored
//!    for (epoch, partition), 0 when none, decides `DuplicateSequenceNumber` /
//!    `OutOfOrderSequenceNumber`; an accepted batch adds its record count to
//!    that sequence. An unknown producer id is `UnknownProducerId`.
//! 2. The partition's watermark; none is `UnknownTopicOrPartition`.
//! 3. Record *i* of the batch at `high + i`, with the batch's attributes, its
//!    base timestamp plus the record's delta, and no producer id or epoch
//!    (tansu stores those for transactional produces only). Its headers go
//!    in the same row ([`super::row_headers`]), not in tansu's `header`
//!    table: a row there and its index entry cost two more pages per
//!    transaction.
//! 4. The watermark's high moved past the batch.
//!
//! A failed batch fails alone; the others in the transaction commit. A
//! refused one wrote nothing; one that failed while being written makes the
//! writer roll back and write the group again with a savepoint per batch
//! ([`Statements::commit`] says why not always). A test produces the same
//! calls through this path and through tansu's and compares every row (a
//! record's headers wherever each path keeps them) and every answer
//! (`tests::the_same_rows_and_answers_as_tansu`).
//!
//! Transactional produces (a `transactional.id`) are not handled here: they
//! go to tansu, which also records the offsets its transaction commit and
//! abort read back. kafkv's own producers are idempotent, not transactional.
//!
//! **Invariants.** The writer holds the storage gate exclusively from
//! `BEGIN` until the transaction is committed, fsynced (`--broker-sync
//! commit`, [`super::wal_sync`]) and published to the tail and read caches,
//! so no tansu call runs on the database meanwhile (its connections do not
//! wait for locks) and no fetch sees a record before it is durable: the
//! embedded broker's high watermark, as Kafka's, covers only what an
//! acknowledgement covers. A produce is answered after that.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use libsql::{Statement, Value};
use tansu_sans_io::{
    ErrorCode,
    record::{deflated, inflated},
};
use tansu_storage::{Error, OffsetStage, Result, Topition};
use tokio::sync::{RwLock, mpsc, oneshot};

use super::{
    CLUSTER_ID,
    checkpoint::Checkpointer,
    database::{Database, TOPITION_ID, execute, first_row, run},
    long_poll::LongPoll,
    read_cache::ReadCache,
    row_headers,
    tail::Tails,
    wal_sync::Durability,
};

/// Produces per transaction at most: a bound on how long the gate is held.
const MAX_GROUP: usize = 256;

/// Sends produces to the writer task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Producer {
    requests: mpsc::UnboundedSender<Pending>,
    counts: Arc<Counts>,
}

/// What the writer has done so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Produces sent to the writer.
    pub sent: AtomicU64,
    /// Transactions the writer has run.
    pub transactions: AtomicU64,
}

#[derive(Debug)]
struct Pending {
    topition: Topition,
    batch: deflated::Batch,
    answer: oneshot::Sender<Result<i64>>,
}

/// Where a committed batch becomes visible to fetches, and what it waits
/// for first.
pub struct Published {
    pub checkpoints: Checkpointer,
    pub tails: Arc<Tails>,
    pub read_cache: Arc<ReadCache>,
    pub long_poll: Arc<LongPoll>,
    pub durability: Durability,
}

impl Producer {
    /// Prepares the statements on `database` (whose schema tansu has
    /// created) and starts the writer. It stops once every `Producer` is
    /// dropped.
    pub async fn start(
        database: Arc<Database>,
        gate: Arc<RwLock<()>>,
        published: Published,
    ) -> std::result::Result<Self, libsql::Error> {
        let statements = Statements::prepare(&database).await?;
        let (requests, pending) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        tokio::spawn(write(statements, gate, published, pending, counts.clone()));
        Ok(Self { requests, counts })
    }

    #[cfg(test)]
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Appends `batch` to `topition`; its base offset once committed and
    /// visible to fetches.
    pub async fn produce(&self, topition: &Topition, batch: deflated::Batch) -> Result<i64> {
        let (answer, answered) = oneshot::channel();
        self.requests
            .send(Pending {
                topition: topition.clone(),
                batch,
                answer,
            })
            .map_err(|_| Error::UnableToSend)?;
        self.counts.sent.fetch_add(1, Relaxed);
        // Both errors are the ones tansu's own storage task gives once it
        // has stopped, so the broker's health sees them the same way.
        answered.await.map_err(|_| Error::OneshotRecv)?
    }
}

/// The writer: one transaction at a time, for every produce that arrived
/// before it began (up to [`MAX_GROUP`]).
async fn write(
    statements: Statements,
    gate: Arc<RwLock<()>>,
    published: Published,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    counts: Arc<Counts>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = pending.recv().await {
        group.push(first);
        let exclusive = gate.write().await;
        // Those that arrived while tansu's calls finished join too.
        while group.len() < MAX_GROUP
            && let Ok(more) = pending.try_recv()
        {
            group.push(more);
        }
        let mut appended = statements.commit(&group).await;
        published.checkpoints.committed();
        // Durable before anyone sees it: no fetch answers a record a power
        // loss could take back, as Kafka serves only records below the high
        // watermark. Under the gate all along, so no tansu call reads the
        // commit from SQLite before it is synced, and compaction (which
        // forgets the tail cache under the gate too) cannot come between
        // the commit and the cache.
        if appended.iter().any(Result::is_ok)
            && let Err(error) = published.durability.synced().await
        {
            appended = all_failed(group.len(), &error.to_string());
        }
        let answers = publish(&published, &group, appended);
        if !statements.is_idle() {
            published.durability.health.fail(
                "the embedded broker's produce connection is stuck in a transaction it could \
                 neither commit nor roll back"
                    .into(),
            );
        }
        drop(exclusive);
        counts.transactions.fetch_add(1, Relaxed);
        metrics::histogram!("kafkv_broker_produces_per_transaction").record(group.len() as f64);
        for (produce, answer) in group.drain(..).zip(answers) {
            // A caller that stopped waiting has nothing to be told.
            let _ = produce.answer.send(answer);
        }
    }
}

/// Makes a committed transaction visible to fetches: its batches in the
/// tail cache, each partition's new offset stage, and the held fetches
/// woken. These are what tansu's storage now holds, so fetches answered
/// from memory stay exactly what storage would return. Returns each
/// produce's answer.
fn publish(
    published: &Published,
    group: &[Pending],
    appended: Vec<Result<Appended>>,
) -> Vec<Result<i64>> {
    let mut any = false;
    let answers = group
        .iter()
        .zip(appended)
        .map(|(produce, appended)| {
            let appended = appended?;
            any = true;
            // In log order, so a partition's last stage set is its newest.
            published
                .read_cache
                .set_stage(&produce.topition, appended.watermark.stage());
            published.tails.produced(
                &produce.topition,
                false,
                appended.base_offset,
                appended.batch,
            );
            Ok(appended.base_offset)
        })
        .collect();
    if any {
        published.long_poll.produced();
    }
    answers
}

/// A partition's watermark after a transaction.
#[derive(Debug, Clone, Copy)]
struct Watermark {
    low: i64,
    high: i64,
}

impl Watermark {
    /// The offset stage tansu's `offset_stage` reads from this watermark:
    /// the last stable offset is the high watermark (tansu 0.6 reads the
    /// high column for both).
    fn stage(self) -> OffsetStage {
        // OffsetStage's fields are private and it has no constructor; its
        // serde form is its only public way in.
        serde_json::from_value(serde_json::json!({
            "last_stable": self.high,
            "high_watermark": self.high,
            "log_start": self.low,
        }))
        .expect("OffsetStage deserializes from its own fields")
    }
}

/// One produce's outcome in a committed transaction.
struct Appended {
    base_offset: i64,
    watermark: Watermark,
    /// Its records as stored, for the tail cache.
    batch: inflated::Batch,
}

/// Every produce of a group of `produces` failed because the transaction did.
fn failed_all(produces: usize, error: libsql::Error) -> Vec<Result<Appended>> {
    all_failed(
        produces,
        &format!("embedded broker produce transaction: {error}"),
    )
}

/// The transaction is gone (SQLite rolled it back after a full disk or an
/// I/O error) or stuck (a ROLLBACK failed; the writer's health check sees
/// it): every batch of the group fails.
fn rolled_back(produces: usize) -> Vec<Result<Appended>> {
    all_failed(
        produces,
        "embedded broker produce transaction rolled back after an error",
    )
}

/// Every produce of a group of `produces` failed for `reason`.
fn all_failed(produces: usize, reason: &str) -> Vec<Result<Appended>> {
    (0..produces)
        .map(|_| Err(Error::Message(reason.to_owned())))
        .collect()
}

/// The statements of one produce, compiled once on kafkv's connection.
struct Statements {
    /// The connection they were prepared on, to see whether a transaction
    /// is still open after an error.
    connection: libsql::Connection,
    begin: Statement,
    commit: Statement,
    rollback: Statement,
    savepoint: Statement,
    release: Statement,
    rollback_to_savepoint: Statement,
    topition: Statement,
    newest_epoch: Statement,
    sequence: Statement,
    advance_sequence: Statement,
    watermark: Statement,
    insert_record: Statement,
    move_watermark: Statement,
}

impl Statements {
    async fn prepare(database: &Database) -> std::result::Result<Self, libsql::Error> {
        let connection = database.connection();
        let prepare = async |sql: &str| connection.prepare(sql).await;
        Ok(Self {
            connection: connection.clone(),
            begin: prepare("BEGIN IMMEDIATE").await?,
            commit: prepare("COMMIT").await?,
            rollback: prepare("ROLLBACK").await?,
            savepoint: prepare("SAVEPOINT kafkv_batch").await?,
            release: prepare("RELEASE kafkv_batch").await?,
            rollback_to_savepoint: prepare("ROLLBACK TO kafkv_batch").await?,
            topition: prepare(TOPITION_ID).await?,
            newest_epoch: prepare(
                "SELECT pe.epoch FROM cluster c JOIN producer p ON p.cluster = c.id \
                 JOIN producer_epoch pe ON pe.producer = p.id \
                 WHERE c.name = ?1 AND p.id = ?2 ORDER BY pe.epoch DESC LIMIT 1",
            )
            .await?,
            sequence: prepare(
                "SELECT pe.id, coalesce(pd.sequence, 0) FROM producer_epoch pe \
                 LEFT JOIN producer_detail pd ON pd.producer_epoch = pe.id AND pd.topition = ?3 \
                 WHERE pe.producer = ?1 AND pe.epoch = ?2",
            )
            .await?,
            advance_sequence: prepare(
                "INSERT INTO producer_detail (producer_epoch, topition, sequence) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (producer_epoch, topition) DO UPDATE SET \
                 sequence = producer_detail.sequence + ?3, last_updated = excluded.last_updated",
            )
            .await?,
            watermark: prepare("SELECT low, high FROM watermark WHERE topition = ?1").await?,
            insert_record: prepare(
                "INSERT INTO record (topition, offset_id, attributes, producer_id, \
                 producer_epoch, timestamp, k, v, kafkv_headers) \
                 VALUES (?1, ?2, ?3, NULL, NULL, ?4, ?5, ?6, ?7)",
            )
            .await?,
            move_watermark: prepare(
                "UPDATE watermark SET low = ?2, high = ?3, last_updated = current_timestamp \
                 WHERE topition = ?1",
            )
            .await?,
        })
    }

    /// One transaction for `group` (two when the first is rolled back, as
    /// below): an outcome per produce, in order. When the transaction itself
    /// fails, every produce fails with it.
    ///
    /// Each produce is checked before anything of it is written
    /// ([`Statements::check`]), so a refused batch leaves nothing behind
    /// without a savepoint of its own. Savepoints are not free: once a
    /// transaction has written a page, every savepoint after it copies that
    /// page to the statement journal before changing it again, and in a
    /// group of SWEEPs that journal took 14% of the broker's CPU. Only a
    /// failure *while* a batch is written (an I/O error, a full disk, a
    /// constraint) leaves part of it behind; then the whole transaction is
    /// rolled back and the group is written again with a savepoint per
    /// produce, so that batch still fails alone.
    async fn commit(&self, group: &[Pending]) -> Vec<Result<Appended>> {
        match self.commit_checked(group).await {
            Some(appended) => appended,
            None => self.commit_in_savepoints(group).await,
        }
    }

    /// [`Statements::commit`] without savepoints; `None` when a batch failed
    /// part-way through its writes and the transaction was rolled back.
    async fn commit_checked(&self, group: &[Pending]) -> Option<Vec<Result<Appended>>> {
        if let Err(error) = run(&self.begin, ()).await {
            return Some(failed_all(group.len(), error));
        }
        let mut topitions = HashMap::new();
        let mut appended = Vec::with_capacity(group.len());
        for produce in group {
            let outcome = match self.check(&mut topitions, produce).await {
                Ok(checked) => self.write(checked).await,
                Err(refused) => Err(Failure::Refused(refused)),
            };
            if outcome.is_err() && self.is_idle() {
                return Some(rolled_back(group.len()));
            }
            match outcome {
                Ok(outcome) => appended.push(Ok(outcome)),
                Err(Failure::Refused(error)) => appended.push(Err(error)),
                Err(Failure::Partial(_)) => {
                    let _ = run(&self.rollback, ()).await;
                    return if self.is_idle() {
                        None
                    } else {
                        Some(rolled_back(group.len()))
                    };
                }
            }
        }
        Some(self.finish(group.len(), appended).await)
    }

    /// [`Statements::commit`] with a savepoint per produce: the careful way,
    /// after a batch failed while being written.
    async fn commit_in_savepoints(&self, group: &[Pending]) -> Vec<Result<Appended>> {
        if let Err(error) = run(&self.begin, ()).await {
            return failed_all(group.len(), error);
        }
        let mut topitions = HashMap::new();
        let mut appended = Vec::with_capacity(group.len());
        for produce in group {
            let outcome = match self.append_in_savepoint(&mut topitions, produce).await {
                Ok(outcome) => outcome,
                // The savepoint itself failed: what this transaction holds
                // is unknown, so none of it stays.
                Err(error) => {
                    let _ = run(&self.rollback, ()).await;
                    return failed_all(group.len(), error);
                }
            };
            if outcome.is_err() && self.is_idle() {
                return rolled_back(group.len());
            }
            appended.push(outcome);
        }
        self.finish(group.len(), appended).await
    }

    /// Commits the open transaction holding `appended`.
    async fn finish(
        &self,
        produces: usize,
        appended: Vec<Result<Appended>>,
    ) -> Vec<Result<Appended>> {
        if let Err(error) = run(&self.commit, ()).await {
            // Nothing of this transaction stays; a failed COMMIT may leave
            // it open.
            let _ = run(&self.rollback, ()).await;
            return failed_all(produces, error);
        }
        appended
    }

    /// Whether the connection is outside any transaction, as it must be
    /// between groups (a failed COMMIT and ROLLBACK could leave one open).
    fn is_idle(&self) -> bool {
        self.connection.is_autocommit()
    }

    /// One produce in a savepoint of its own. The outer error: the
    /// savepoint could not be taken, rolled back to or released.
    async fn append_in_savepoint(
        &self,
        topitions: &mut HashMap<Topition, Option<i64>>,
        produce: &Pending,
    ) -> std::result::Result<Result<Appended>, libsql::Error> {
        run(&self.savepoint, ()).await?;
        let appended = match self.check(topitions, produce).await {
            Ok(checked) => self.write(checked).await.map_err(Failure::into_error),
            Err(refused) => Err(refused),
        };
        if appended.is_err() && !self.is_idle() {
            run(&self.rollback_to_savepoint, ()).await?;
        }
        if !self.is_idle() {
            run(&self.release, ()).await?;
        }
        Ok(appended)
    }

    /// Everything a produce is checked for before anything of it is
    /// written: its partition, its records, its producer's epoch and
    /// sequence (step 1 of the module docs), the partition's watermark. Only
    /// reads.
    async fn check(
        &self,
        topitions: &mut HashMap<Topition, Option<i64>>,
        produce: &Pending,
    ) -> Result<Checked> {
        let unknown = || Error::Api(ErrorCode::UnknownTopicOrPartition);
        let topition = match topitions.get(&produce.topition) {
            Some(known) => *known,
            None => {
                let id = first_row(
                    &self.topition,
                    vec![
                        Value::from(CLUSTER_ID),
                        Value::from(produce.topition.topic()),
                        Value::from(produce.topition.partition()),
                    ],
                    |row| row.get::<i64>(0),
                )
                .await
                .map_err(sql_error)?;
                topitions.insert(produce.topition.clone(), id);
                id
            }
        }
        .ok_or_else(unknown)?;
        let batch = &produce.batch;
        let sequence = if batch.is_idempotent() {
            Some(self.check_sequence(topition, batch).await?)
        } else {
            None
        };
        let (low, high) = first_row(&self.watermark, vec![Value::from(topition)], |row| {
            Ok((row.get::<Option<i64>>(0)?, row.get::<Option<i64>>(1)?))
        })
        .await
        .map_err(sql_error)?
        .ok_or_else(unknown)?;
        let inflated = inflated::Batch::try_from(batch.clone())?;
        Ok(Checked {
            topition,
            sequence,
            inflated,
            low,
            high,
        })
    }

    /// Writes a checked produce: its sequence, its records and headers, and
    /// the watermark past them.
    async fn write(&self, checked: Checked) -> std::result::Result<Appended, Failure> {
        let partial = |error: libsql::Error| Failure::Partial(sql_error(error));
        let Checked {
            topition,
            sequence,
            inflated,
            low,
            high,
        } = checked;
        if let Some(advance) = sequence {
            execute(
                &self.advance_sequence,
                vec![
                    Value::from(advance.producer_epoch),
                    Value::from(topition),
                    Value::from(advance.increment),
                ],
            )
            .await
            .map_err(partial)?;
        }
        let base = high.unwrap_or_default();
        for (place, record) in inflated.records.iter().enumerate() {
            let offset = base
                + i64::try_from(place).map_err(|error| Failure::Partial(Error::from(error)))?;
            execute(
                &self.insert_record,
                vec![
                    Value::from(topition),
                    Value::from(offset),
                    Value::from(inflated.attributes),
                    Value::from(inflated.base_timestamp + record.timestamp_delta),
                    blob(record.key.as_deref()),
                    blob(record.value.as_deref()),
                    // Moved in as it is: `blob` would copy it again.
                    row_headers::encode(&record.headers).map_or(Value::Null, Value::Blob),
                ],
            )
            .await
            .map_err(partial)?;
        }
        let last_offset_delta = i64::from(inflated.last_offset_delta);
        let watermark = Watermark {
            low: low.unwrap_or_default(),
            high: high.map_or(last_offset_delta + 1, |high| high + last_offset_delta + 1),
        };
        execute(
            &self.move_watermark,
            vec![
                Value::from(topition),
                Value::from(watermark.low),
                Value::from(watermark.high),
            ],
        )
        .await
        .map_err(partial)?;
        Ok(Appended {
            base_offset: base,
            watermark,
            batch: inflated,
        })
    }

    /// Step 1 of the module docs: checks `batch` against its producer's
    /// epoch and sequence on this partition; how to advance the sequence.
    async fn check_sequence(&self, topition: i64, batch: &deflated::Batch) -> Result<Advance> {
        let newest = first_row(
            &self.newest_epoch,
            vec![Value::from(CLUSTER_ID), Value::from(batch.producer_id)],
            |row| row.get::<i64>(0),
        )
        .await
        .map_err(sql_error)?
        .ok_or(Error::Api(ErrorCode::UnknownProducerId))?;
        let stored = first_row(
            &self.sequence,
            vec![
                Value::from(batch.producer_id),
                Value::from(batch.producer_epoch),
                Value::from(topition),
            ],
            |row| Ok((row.get::<i64>(0)?, row.get::<i64>(1)?)),
        )
        .await
        .map_err(sql_error)?;
        let increment = sequence_check(newest, stored.map(|(_, sequence)| sequence), batch)?;
        let Some((producer_epoch, _)) = stored else {
            // sequence_check refuses a batch whose epoch has no row.
            return Err(Error::Api(ErrorCode::InvalidProducerEpoch));
        };
        Ok(Advance {
            producer_epoch,
            increment,
        })
    }
}

/// A produce that passed [`Statements::check`]: what its writes need.
struct Checked {
    topition: i64,
    /// Set for an idempotent batch.
    sequence: Option<Advance>,
    inflated: inflated::Batch,
    low: Option<i64>,
    high: Option<i64>,
}

/// How an accepted idempotent batch moves its producer's sequence.
struct Advance {
    /// The `producer_epoch` row's id.
    producer_epoch: i64,
    increment: i64,
}

/// Why a checked produce was not written.
enum Failure {
    /// Refused before any of it was written.
    Refused(Error),
    /// Failed part-way: the transaction holds some of its rows.
    Partial(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Refused(error) | Failure::Partial(error) => error,
        }
    }
}

/// How much `batch` advances its producer's sequence, or why it is refused:
/// tansu's `idempotent_sequence_check`, given the producer's newest epoch
/// and the sequence stored for the batch's epoch on this partition (`None`
/// when that epoch has no row).
fn sequence_check(newest_epoch: i64, stored: Option<i64>, batch: &deflated::Batch) -> Result<i64> {
    use std::cmp::Ordering;
    match newest_epoch.cmp(&i64::from(batch.producer_epoch)) {
        Ordering::Greater => Err(Error::Api(ErrorCode::ProducerFenced)),
        Ordering::Less => Err(Error::Api(ErrorCode::InvalidProducerEpoch)),
        Ordering::Equal => {
            let stored = stored.ok_or(Error::Api(ErrorCode::InvalidProducerEpoch))?;
            match stored.cmp(&i64::from(batch.base_sequence)) {
                Ordering::Equal => Ok(i64::from(batch.last_offset_delta) + 1),
                Ordering::Greater => Err(Error::Api(ErrorCode::DuplicateSequenceNumber)),
                Ordering::Less => Err(Error::Api(ErrorCode::OutOfOrderSequenceNumber)),
            }
        }
    }
}

fn blob(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |bytes| Value::Blob(bytes.to_vec()))
}

fn sql_error(error: libsql::Error) -> Error {
    Error::Message(format!("embedded broker produce: {error}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tansu_sans_io::{IsolationLevel, record::Record};
    use tansu_storage::Storage as _;

    use super::*;
    use crate::broker::{
        BrokerPaths,
        storage::KafkvStorage,
        testing::{create_compacted_topic, offsets_in, open, open_synced, with_records},
        wal_sync::WalSync,
    };

    const TOPIC: &str = "produce";

    /// `count` records, some tombstones, some with headers; the attributes
    /// (none, gzip, log append time) vary.
    fn batch(
        rng: &mut fastrand::Rng,
        producer: Option<(i64, i16, i32)>,
        count: usize,
    ) -> deflated::Batch {
        let attributes = [0, 1, 8][rng.usize(0..3)];
        let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
        let builder = inflated::Batch::builder()
            .base_timestamp(1_700_000_000_000 + rng.i64(0..1000))
            .attributes(attributes)
            .producer_id(producer_id)
            .producer_epoch(producer_epoch)
            .base_sequence(base_sequence);
        with_records(rng, builder, count, 50, 20)
    }

    /// A batch that cannot be inflated: it says gzip, its records are not.
    fn corrupt(mut batch: deflated::Batch) -> deflated::Batch {
        batch.attributes = 1;
        batch
    }

    /// A produce's answer as a client would see it.
    fn answer(produced: Result<i64>) -> String {
        match produced {
            Ok(offset) => format!("offset {offset}"),
            Err(Error::Api(code)) => format!("{code:?}"),
            Err(_) => "a storage error".into(),
        }
    }

    /// The rows a produce writes, in a comparable form.
    async fn rows(path: &Path) -> Vec<String> {
        let database = libsql::Builder::new_local(path)
            .build()
            .await
            .expect("opens");
        let connection = database.connect().expect("connects");
        let mut dump = Vec::new();
        for query in [
            "SELECT 'record', topition, offset_id, attributes, producer_id, producer_epoch, \
             timestamp, k, v FROM record ORDER BY topition, offset_id",
            "SELECT 'header', topition, offset_id, k, v FROM header ORDER BY rowid",
            // kafkv's path keeps them in the record's row: one line per
            // header, as the `header` rows above.
            "SELECT 'in-row headers', topition, offset_id, kafkv_headers FROM record \
             WHERE kafkv_headers IS NOT NULL ORDER BY topition, offset_id",
            "SELECT 'watermark', topition, low, high FROM watermark ORDER BY topition",
            "SELECT 'producer_detail', producer_epoch, topition, sequence FROM producer_detail \
             ORDER BY id",
            "SELECT 'producer_epoch', producer, epoch FROM producer_epoch ORDER BY id",
        ] {
            let mut found = connection.query(query, ()).await.expect("a query");
            while let Some(row) = found.next().await.expect("a row") {
                if let Ok(libsql::Value::Blob(encoded)) = row.get_value(3)
                    && row
                        .get::<String>(0)
                        .is_ok_and(|kind| kind == "in-row headers")
                {
                    let (topition, offset) = (row.get_value(1), row.get_value(2));
                    let (topition, offset) = (topition.expect("a value"), offset.expect("a value"));
                    for header in row_headers::decode(&encoded).expect("well formed") {
                        let blob = |part: Option<bytes::Bytes>| {
                            part.map_or(libsql::Value::Null, |b| libsql::Value::Blob(b.to_vec()))
                        };
                        dump.push(format!(
                            "Text(\"header\") {topition:?} {offset:?} {:?} {:?}",
                            blob(header.key),
                            blob(header.value)
                        ));
                    }
                    continue;
                }
                let columns = (0..row.column_count())
                    .map(|i| format!("{:?}", row.get_value(i).expect("a value")))
                    .collect::<Vec<_>>();
                dump.push(columns.join(" "));
            }
        }
        dump
    }

    /// One producer as a test client sees it.
    struct Client {
        id: i64,
        epoch: i16,
        next: i32,
    }

    async fn init_producer(storage: &KafkvStorage) -> Client {
        let response = storage
            .init_producer(None, 60_000, Some(-1), Some(-1))
            .await
            .expect("a producer id");
        Client {
            id: response.id,
            epoch: response.epoch,
            next: 0,
        }
    }

    /// Produces `batches` (two records each) to partition 0 of [`TOPIC`] so
    /// that the writer finds them all queued when it next takes the gate
    /// (held here while they are sent), and checks what a group with one bad
    /// batch must give: one transaction, the batch at `failing` refused
    /// (`why` says what it was), every other stored at contiguous offsets.
    async fn assert_one_group_where_only_one_fails(
        storage: &KafkvStorage,
        batches: Vec<deflated::Batch>,
        failing: usize,
        why: &str,
    ) {
        let producer = storage.producer().expect("kafkv's produce path").clone();
        let topition = Topition::new(TOPIC, 0);
        let before = producer.counts().transactions.load(Relaxed);
        let produces_count = batches.len();
        let sent = producer.counts().sent.load(Relaxed) + produces_count as u64;
        let mut produces = tokio::task::JoinSet::new();
        storage
            .exclusive(async |_| {
                for (n, batch) in batches.into_iter().enumerate() {
                    let (producer, topition) = (producer.clone(), topition.clone());
                    produces.spawn(async move { (n, producer.produce(&topition, batch).await) });
                }
                while producer.counts().sent.load(Relaxed) < sent {
                    tokio::task::yield_now().await;
                }
            })
            .await;
        let mut offsets = Vec::new();
        for (n, produced) in produces.join_all().await {
            if n == failing {
                assert!(produced.is_err(), "{why} was stored");
            } else {
                offsets.push(produced.expect("stored"));
            }
        }
        assert_eq!(producer.counts().transactions.load(Relaxed) - before, 1);
        offsets.sort_unstable();
        let expected = (0..produces_count as i64 - 1)
            .map(|n| n * 2)
            .collect::<Vec<_>>();
        assert_eq!(offsets, expected, "each batch got its own offsets, no gap");
    }

    /// The same produces, valid and not, go through kafkv's path and
    /// through tansu's: every answer and every row they leave must be the
    /// same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_rows_and_answers_as_tansu() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (ours_path, theirs_path) = (dir.path().join("ours.db"), dir.path().join("theirs.db"));
        let ours = open(&ours_path, BrokerPaths::Kafkv).await;
        let theirs = open(&theirs_path, BrokerPaths::KafkvFetch).await;
        assert!(ours.producer().is_some() && theirs.producer().is_none());
        let mut clients = Vec::new();
        for storage in [&ours, &theirs] {
            create_compacted_topic(storage, TOPIC).await;
            clients.push([init_producer(storage).await, init_producer(storage).await]);
        }
        let [ours_clients, theirs_clients] = &clients[..] else {
            unreachable!()
        };
        assert_eq!(
            ours_clients.iter().map(|c| c.id).collect::<Vec<_>>(),
            theirs_clients.iter().map(|c| c.id).collect::<Vec<_>>(),
            "fresh databases hand out the same producer ids"
        );
        let mut clients = clients.swap_remove(0);
        let mut rng = fastrand::Rng::with_seed(19);
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for step in 0..400 {
            let client = &mut clients[rng.usize(0..2)];
            let count = rng.usize(1..5);
            let mut topition = Topition::new(TOPIC, 0);
            let (produced, sequence_used) = match rng.u8(0..11) {
                // In order: accepted.
                0..=3 => (
                    batch(
                        &mut rng,
                        Some((client.id, client.epoch, client.next)),
                        count,
                    ),
                    true,
                ),
                // Sent again: a duplicate.
                4 => (
                    batch(
                        &mut rng,
                        Some((client.id, client.epoch, client.next - 1)),
                        count,
                    ),
                    false,
                ),
                // A gap: out of order.
                5 => (
                    batch(
                        &mut rng,
                        Some((client.id, client.epoch, client.next + 3)),
                        count,
                    ),
                    false,
                ),
                // The client bumps its epoch (KIP-360) and starts again at 0.
                6 => {
                    client.epoch += 1;
                    client.next = 0;
                    (
                        batch(&mut rng, Some((client.id, client.epoch, 0)), count),
                        true,
                    )
                }
                // An older epoch: fenced.
                7 if client.epoch > 0 => (
                    batch(
                        &mut rng,
                        Some((client.id, client.epoch - 1, client.next)),
                        count,
                    ),
                    false,
                ),
                // A producer id the broker never issued.
                8 => (batch(&mut rng, Some((424_242, 0, 0)), count), false),
                // Records that cannot be read, in sequence: nothing of
                // them may stay, the sequence included.
                9 => (
                    corrupt(batch(
                        &mut rng,
                        Some((client.id, client.epoch, client.next)),
                        count,
                    )),
                    false,
                ),
                // A partition that does not exist.
                10 => {
                    topition = Topition::new(TOPIC, 3);
                    (batch(&mut rng, None, count), false)
                }
                // Not idempotent.
                _ => (batch(&mut rng, None, count), false),
            };
            let mine = answer(ours.produce(None, &topition, produced.clone()).await);
            let tansu = answer(theirs.produce(None, &topition, produced).await);
            assert_eq!(mine, tansu, "step {step}");
            // The stage kafkv's writer published is the one tansu reads.
            let stage = Topition::new(TOPIC, 0);
            assert_eq!(
                ours.offset_stage(&stage).await.expect("a stage"),
                theirs.offset_stage(&stage).await.expect("a stage"),
                "step {step}"
            );
            if sequence_used && mine.starts_with("offset") {
                client.next += count as i32;
            }
            *kinds
                .entry(mine.split(' ').next().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        // Every kind of answer was exercised.
        for kind in [
            "offset",
            "DuplicateSequenceNumber",
            "OutOfOrderSequenceNumber",
            "ProducerFenced",
            "UnknownProducerId",
            "UnknownTopicOrPartition",
            "a",
        ] {
            assert!(kinds.contains_key(kind), "no {kind} answer in {kinds:?}");
        }
        let (mine, tansu) = (rows(&ours_path).await, rows(&theirs_path).await);
        assert!(mine.len() > 400, "{} rows", mine.len());
        assert_eq!(mine, tansu);
        // And what a consumer reads back is the same: here from the batches
        // kafkv's writer cached, there from tansu's rows.
        let topition = Topition::new(TOPIC, 0);
        let high = ours
            .offset_stage(&topition)
            .await
            .expect("a stage")
            .high_watermark();
        let decoded = |batches: Vec<deflated::Batch>| {
            batches
                .iter()
                .map(|batch| {
                    let records = Vec::<Record>::try_from(batch).expect("decodes");
                    (batch.base_offset, records)
                })
                .collect::<Vec<_>>()
        };
        let mut from_tail = 0;
        for offset in (0..high).step_by(7) {
            let budget = 1 << 20;
            let isolation = IsolationLevel::ReadUncommitted;
            let stage = ours.offset_stage(&topition).await.expect("a stage");
            let cached = ours
                .tails()
                .read(&topition, offset, budget, isolation, &stage)
                .is_some();
            let mine = ours.fetch(&topition, offset, 0, budget, isolation).await;
            let tansu = theirs
                .fetch_from_storage(&topition, offset, 0, budget, isolation)
                .await;
            assert_eq!(
                decoded(mine.expect("a fetch")),
                decoded(tansu.expect("a fetch")),
                "from offset {offset}"
            );
            from_tail += usize::from(cached);
        }
        assert!(from_tail > 0, "no fetch was answered from the tail cache");
    }

    /// Produces that arrive while the writer waits share one transaction,
    /// and one bad batch among them fails alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_produces_share_a_transaction_and_fail_alone() {
        const PRODUCES: u64 = 64;
        let dir = tempfile::tempdir().expect("a temp dir");
        let storage = open(&dir.path().join("broker.db"), BrokerPaths::Kafkv).await;
        create_compacted_topic(&storage, TOPIC).await;
        let topition = Topition::new(TOPIC, 0);
        let mut rng = fastrand::Rng::with_seed(7);
        let batches = (0..PRODUCES)
            .map(|n| {
                let batch = batch(&mut rng, None, 2);
                if n == PRODUCES / 2 {
                    corrupt(batch)
                } else {
                    batch
                }
            })
            .collect();
        assert_one_group_where_only_one_fails(
            &storage,
            batches,
            PRODUCES as usize / 2,
            "a corrupt batch",
        )
        .await;
        let stage = storage.offset_stage(&topition).await.expect("a stage");
        assert_eq!(stage.high_watermark(), 2 * (PRODUCES as i64 - 1));
    }

    /// A batch that fails while it is being written (here a trigger
    /// refuses its second record, after its first is in) fails alone:
    /// the produces before and after it in the same group are stored at
    /// contiguous offsets, and nothing of it stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_fails_part_way_through_its_writes_fails_alone() {
        const PRODUCES: u64 = 16;
        const POISONED: u64 = PRODUCES / 2;
        // Timestamps no other batch here has.
        const POISON_TIME: i64 = 42;
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("broker.db");
        let storage = open(&path, BrokerPaths::Kafkv).await;
        create_compacted_topic(&storage, TOPIC).await;
        let database = libsql::Builder::new_local(&path)
            .build()
            .await
            .expect("opens");
        let connection = database.connect().expect("connects");
        connection
            .execute(
                &format!(
                    "CREATE TRIGGER poison BEFORE INSERT ON record \
                     WHEN NEW.timestamp BETWEEN {POISON_TIME} AND {POISON_TIME} + 10 \
                     AND EXISTS (SELECT 1 FROM record \
                       WHERE timestamp BETWEEN {POISON_TIME} AND {POISON_TIME} + 10) \
                     BEGIN SELECT RAISE(ABORT, 'injected'); END"
                ),
                (),
            )
            .await
            .expect("a trigger");
        let topition = Topition::new(TOPIC, 0);
        let mut rng = fastrand::Rng::with_seed(11);
        let batches = (0..PRODUCES)
            .map(|n| {
                let base_timestamp = if n == POISONED {
                    POISON_TIME
                } else {
                    1_700_000_000_000
                };
                let builder = inflated::Batch::builder()
                    .base_timestamp(base_timestamp)
                    .producer_id(-1)
                    .producer_epoch(-1)
                    .base_sequence(-1);
                with_records(&mut rng, builder, 2, 50, 20)
            })
            .collect();
        assert_one_group_where_only_one_fails(
            &storage,
            batches,
            POISONED as usize,
            "the poisoned batch",
        )
        .await;
        let mut rows = connection
            .query(
                "SELECT count(*), count(*) FILTER (WHERE timestamp < 1000) FROM record",
                (),
            )
            .await
            .expect("a count");
        let row = rows.next().await.expect("a row").expect("a row");
        let (stored, poisoned) = (
            row.get::<i64>(0).expect("a count"),
            row.get::<i64>(1).expect("a count"),
        );
        assert_eq!((stored, poisoned), (2 * (PRODUCES as i64 - 1), 0));
        let stage = storage.offset_stage(&topition).await.expect("a stage");
        assert_eq!(stage.high_watermark(), 2 * (PRODUCES as i64 - 1));
    }

    /// A batch becomes visible to fetches only once the fsync its
    /// acknowledgement waits for succeeded: here every fsync fails (the
    /// files it syncs do not exist), so the produce fails, the broker stops
    /// serving, and neither the offset stage nor the tail cache shows it.
    /// With a working fsync the same produce is published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_published_only_after_its_fsync() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let topition = Topition::new(TOPIC, 0);
        let budget = 1 << 20;
        let isolation = IsolationLevel::ReadUncommitted;
        let mut rng = fastrand::Rng::with_seed(3);
        for works in [false, true] {
            let path = dir.path().join(format!("broker-{works}.db"));
            let synced = if works {
                path.clone()
            } else {
                dir.path().join("missing").join("broker.db")
            };
            let sync = WalSync::new(&synced);
            let storage = open_synced(&path, BrokerPaths::Kafkv, Some(sync)).await;
            create_compacted_topic(&storage, TOPIC).await;
            let before = storage.offset_stage(&topition).await.expect("a stage");
            let produced = storage
                .produce(None, &topition, batch(&mut rng, None, 3))
                .await;
            let stage = storage.offset_stage(&topition).await.expect("a stage");
            let cached = storage
                .tails()
                .read(&topition, 0, budget, isolation, &stage)
                .is_some_and(|read| !offsets_in(&read.expect("cached")).is_empty());
            if works {
                assert_eq!(produced.expect("stored"), 0);
                assert_eq!(stage.high_watermark(), 3);
                assert!(cached, "published to the tail cache");
                assert!(storage.health().is_serving());
            } else {
                assert!(produced.is_err(), "acknowledged without an fsync");
                assert_eq!(stage, before, "the stage moved before the fsync");
                assert!(!cached, "cached before the fsync");
                assert!(!storage.health().is_serving(), "the broker kept serving");
            }
        }
    }
}
