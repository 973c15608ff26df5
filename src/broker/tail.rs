//! The tail cache: each partition's most recent records in memory, so a
//! fetch at or near a partition's end is answered without reading SQLite.
//!
//! Every kafkv instance tails its topic, so every produce is followed by one
//! fetch per tailing consumer, and tansu 0.6 answers each from SQLite: a
//! query for the records and one more per record for its headers. The
//! wrapper sees every produce, so it keeps the records it wrote here and
//! builds the fetch's answer from them.
//!
//! **Exactly what storage returns.** A cached record is what tansu stored
//! for it (`produce_in_tx` in tansu-storage's `lite.rs`): its offset is the
//! base offset plus its place in the batch, its time the batch's base
//! timestamp plus its delta, its attributes the batch's, its producer id and
//! epoch only for a transactional produce. [`Tails::read`] builds batches as
//! tansu's fetch does from the rows it reads (`record_fetch.sql`): the same
//! byte budget on keys and values, the same end (the high watermark, or the
//! last stable offset for `read_committed`), one batch per run of rows with
//! equal attributes, producer id and epoch, through the same batch builder.
//! A property test checks this against storage over produce, compaction,
//! restart and fetches from every offset (`broker::tests`).
//!
//! **Invariants.**
//! - Only records acknowledged by storage are cached (inserted after
//!   tansu's produce returned their offset).
//! - A read is answered only when the cache holds every offset from the
//!   fetch's to the end storage reports; otherwise storage answers.
//! - Whatever removes records from storage (compaction, a topic deleted)
//!   forgets the partitions first, under the same exclusive gate. A restart
//!   starts empty.
//! - Each partition keeps at most [`MAX_RECORDS`] records and
//!   [`MAX_BYTES`] bytes, dropping its oldest first.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use parking_lot::Mutex;
use tansu_sans_io::{
    IsolationLevel,
    record::{Header, Record, deflated, inflated},
};
use tansu_storage::{OffsetStage, Result, Topition};

/// Records kept per partition at most.
pub const MAX_RECORDS: usize = 16_384;

/// Bytes (keys, values and headers) kept per partition at most.
pub const MAX_BYTES: usize = 8 << 20;

/// One record as tansu stored it (the cache's, and
/// [`super::stored_read`]'s rows).
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub attributes: i16,
    /// Only for a transactional produce, as tansu stores them.
    pub producer: Option<(i64, i16)>,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl Stored {
    fn size(&self) -> usize {
        self.key_and_value()
            + self
                .headers
                .iter()
                .map(|header| octets(&header.key) + octets(&header.value))
                .sum::<usize>()
    }

    /// What `record_fetch.sql` counts against its budget.
    fn key_and_value(&self) -> usize {
        octets(&self.key) + octets(&self.value)
    }
}

/// The bytes of a key, value or header part; 0 for null.
pub(super) fn octets(bytes: &Option<Bytes>) -> usize {
    bytes.as_ref().map_or(0, Bytes::len)
}

#[derive(Debug, Default)]
struct Tail {
    records: BTreeMap<i64, Stored>,
    bytes: usize,
}

impl Tail {
    fn insert(&mut self, offset: i64, record: Stored) {
        self.bytes += record.size();
        if let Some(replaced) = self.records.insert(offset, record) {
            self.bytes -= replaced.size();
        }
        while self.records.len() > MAX_RECORDS || self.bytes > MAX_BYTES {
            let Some((_, oldest)) = self.records.pop_first() else {
                break;
            };
            self.bytes -= oldest.size();
        }
    }

    /// Whether every offset in `from..end` is here.
    fn covers(&self, from: i64, end: i64) -> bool {
        if from >= end {
            return true;
        }
        self.records.range(from..end).count() as i64 == end - from
    }
}

/// The tail cache of every partition.
#[derive(Debug, Default)]
pub struct Tails {
    partitions: Mutex<HashMap<Topition, Tail>>,
}

impl Tails {
    /// Caches `batch`, which storage just acknowledged at `base_offset`.
    pub fn produced(
        &self,
        topition: &Topition,
        transactional: bool,
        base_offset: i64,
        batch: inflated::Batch,
    ) {
        let producer = transactional.then_some((batch.producer_id, batch.producer_epoch));
        let mut partitions = self.partitions.lock();
        let tail = partitions.entry(topition.clone()).or_default();
        for (place, record) in batch.records.into_iter().enumerate() {
            tail.insert(
                base_offset + place as i64,
                Stored {
                    attributes: batch.attributes,
                    producer,
                    timestamp: batch.base_timestamp + record.timestamp_delta,
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                },
            );
        }
    }

    /// Forgets every partition: storage removed records (compaction).
    pub fn forget_all(&self) {
        self.partitions.lock().clear();
    }

    /// Forgets `topic`'s partitions (it was deleted).
    pub fn forget_topic(&self, topic: &str) {
        self.partitions
            .lock()
            .retain(|topition, _| topition.topic() != topic);
    }

    /// The batches tansu's storage fetch would return for `offset` and
    /// `max_bytes`, given where storage says the partition stands; `None`
    /// when the cache does not hold every record that fetch would read.
    pub fn read(
        &self,
        topition: &Topition,
        offset: i64,
        max_bytes: u32,
        isolation: IsolationLevel,
        stage: &OffsetStage,
    ) -> Option<Result<Vec<deflated::Batch>>> {
        let end = fetch_end(stage, isolation);
        let partitions = self.partitions.lock();
        let tail = partitions.get(topition)?;
        if !tail.covers(offset, end) {
            return None;
        }
        // `record_fetch.sql`: rows from `offset` below the end while the
        // running sum of key and value bytes, this row's included, stays
        // below the budget.
        let mut budget_used = 0i64;
        let rows: Vec<(i64, &Stored)> = tail
            .records
            .range(offset..end.max(offset))
            .take_while(|(_, record)| {
                budget_used += record.key_and_value() as i64;
                budget_used < i64::from(max_bytes)
            })
            .map(|(offset, record)| (*offset, record))
            .collect();
        Some(batches_of(&rows))
    }
}

/// Where a fetch at `isolation` stops reading, as tansu's does: the high
/// watermark, or the last stable offset for `read_committed`.
pub(super) fn fetch_end(stage: &OffsetStage, isolation: IsolationLevel) -> i64 {
    if isolation == IsolationLevel::ReadCommitted {
        stage.last_stable()
    } else {
        stage.high_watermark()
    }
}

/// Rows as tansu's fetch turns them into batches (`lite.rs`, `fetch`).
pub(super) fn batches_of(rows: &[(i64, &Stored)]) -> Result<Vec<deflated::Batch>> {
    let Some((first_offset, first)) = rows.first() else {
        return Ok(vec![inflated::Batch::builder().build()?.try_into()?]);
    };
    let header = |record: &Stored| (record.attributes, record.producer);
    let mut batches = Vec::new();
    let mut start = (*first_offset, *first);
    let mut builder = batch_builder(*first_offset, first);
    for (offset, record) in rows {
        if header(record) != header(start.1) {
            batches.push(builder.build()?.try_into()?);
            start = (*offset, *record);
            builder = batch_builder(*offset, record);
        }
        let offset_delta = i32::try_from(offset - start.0)?;
        builder = builder
            .record(headers_of(
                Record::builder()
                    .offset_delta(offset_delta)
                    .timestamp_delta(record.timestamp - start.1.timestamp)
                    .key(record.key.clone())
                    .value(record.value.clone()),
                &record.headers,
            ))
            .last_offset_delta(offset_delta);
    }
    batches.push(builder.build()?.try_into()?);
    Ok(batches)
}

fn batch_builder(offset: i64, first: &Stored) -> inflated::Builder {
    let (producer_id, producer_epoch) = first.producer.unwrap_or((-1, -1));
    inflated::Batch::builder()
        .base_offset(offset)
        .attributes(first.attributes)
        .base_timestamp(first.timestamp)
        .producer_id(producer_id)
        .producer_epoch(producer_epoch)
}

fn headers_of(
    mut record: tansu_sans_io::record::Builder,
    headers: &[Header],
) -> tansu_sans_io::record::Builder {
    for header in headers {
        let mut builder = Header::builder();
        if let Some(key) = &header.key {
            builder = builder.key(key.clone());
        }
        if let Some(value) = &header.value {
            builder = builder.value(value.clone());
        }
        record = record.header(builder);
    }
    record
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use tansu_storage::Storage as _;

    use super::*;
    use crate::broker::{
        BrokerPaths,
        testing::{
            Fetch, at_fetch_time, create_compacted_topic, mixed_batch, offsets_in, open,
            random_fetches,
        },
    };

    const TOPIC: &str = "tail";

    /// A fetch through kafkv's Fetch route from the start of a compacted
    /// partition holds each kept record once; tansu's own handler repeats
    /// the records after a gap in the same response.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fetch_across_compaction_gaps_holds_each_record_once() {
        use rama::{Context, Service as _};
        use tansu_sans_io::{
            FetchRequest, FetchResponse,
            fetch_request::{FetchPartition, FetchTopic},
        };
        use tansu_storage::FetchService;

        use crate::broker::long_poll::LongPollFetch;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let storage = open(&dir.path().join("broker.db"), BrokerPaths::Kafkv).await;
        create_compacted_topic(&storage, TOPIC).await;
        let topition = Topition::new(TOPIC, 0);
        let mut rng = fastrand::Rng::with_seed(7);
        for step in 0..20 {
            let batch = mixed_batch(&mut rng, 4, 1_700_000_000_000 + step);
            storage
                .produce(None, &topition, batch)
                .await
                .expect("produced");
        }
        storage
            .compact(SystemTime::now() + Duration::from_secs(1))
            .await
            .expect("compacted");
        let request = FetchRequest::default()
            .max_wait_ms(0)
            .min_bytes(1)
            .max_bytes(Some(5 << 20))
            .isolation_level(Some(0))
            .topics(Some(vec![
                FetchTopic::default()
                    .topic(Some(TOPIC.into()))
                    .partitions(Some(vec![
                        FetchPartition::default()
                            .partition(0)
                            .fetch_offset(0)
                            .partition_max_bytes(1 << 20),
                    ])),
            ]));
        let offsets = |response: &FetchResponse| {
            offsets_in(
                response
                    .responses
                    .iter()
                    .flatten()
                    .flat_map(|topic| topic.partitions.iter().flatten())
                    .flat_map(|partition| partition.records.iter().flat_map(|f| f.batches.iter())),
            )
        };
        let kept = offsets_in(
            &storage
                .fetch_from_storage(&topition, 0, 0, 5 << 20, IsolationLevel::ReadUncommitted)
                .await
                .expect("fetched"),
        );
        assert!(kept.len() < 80, "compaction left gaps: {kept:?}");
        let tansus = FetchService
            .serve(Context::with_state(storage.clone()), request.clone())
            .await
            .expect("tansu's answer");
        assert!(
            offsets(&tansus).len() > kept.len(),
            "tansu's handler no longer repeats records after a gap: {:?}",
            offsets(&tansus)
        );
        let ours = LongPollFetch {
            poll: storage.long_poll(),
        }
        .serve(Context::with_state(storage.clone()), request)
        .await
        .expect("kafkv's answer");
        assert_eq!(offsets(&ours), kept);
    }

    /// The tail cache answers every fetch it answers exactly as storage
    /// does, over random sequences of produces, compactions, restarts and
    /// fetches from every offset with large and small budgets.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tail_cache_answers_exactly_what_storage_returns() {
        let (mut from_tail, mut compared) = (0usize, 0usize);
        random_fetches(TOPIC, &[BrokerPaths::Kafkv], async |fetch: Fetch<'_>| {
            let storage = &fetch.storages[0];
            let Some(cached) = storage.tails().read(
                fetch.topition,
                fetch.offset,
                fetch.max_bytes,
                fetch.isolation,
                fetch.stage,
            ) else {
                return;
            };
            let cached = cached.expect("built");
            let stored = storage
                .fetch_from_storage(
                    fetch.topition,
                    fetch.offset,
                    0,
                    fetch.max_bytes,
                    fetch.isolation,
                )
                .await
                .expect("fetched");
            compared += 1;
            let context = fetch.context;
            if stored.iter().all(|batch| batch.record_count == 0) {
                assert!(
                    cached.iter().all(|batch| batch.record_count == 0),
                    "{context}: storage has nothing, the tail {cached:?}"
                );
                return;
            }
            from_tail += 1;
            assert_eq!(
                cached.into_iter().map(at_fetch_time).collect::<Vec<_>>(),
                stored.into_iter().map(at_fetch_time).collect::<Vec<_>>(),
                "{context}"
            );
        })
        .await;
        println!("{compared} fetches compared, {from_tail} with records");
        assert!(from_tail > 100, "only {from_tail} fetches with records");
    }
}
