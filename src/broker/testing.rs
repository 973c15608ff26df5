//! What the broker's unit tests share: a storage opened as the broker opens
//! it, and a compacted topic on it.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use tansu_sans_io::{
    IsolationLevel,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    record::{Header, Record, deflated, inflated},
};
use tansu_storage::{OffsetStage, Storage as _, Topition};

use super::{
    BrokerPaths, CLUSTER_ID, build_storage, storage::KafkvStorage, storage_url, wal_sync::WalSync,
};

/// The storage the broker would build on `path` with `paths`, registered as
/// the broker registers itself at start (the cluster's row, which every
/// later call joins on). Acknowledgements do not wait for an fsync.
pub async fn open(path: &Path, paths: BrokerPaths) -> KafkvStorage {
    open_synced(path, paths, None).await
}

/// [`open`], with acknowledgements waiting for `sync`.
pub async fn open_synced(path: &Path, paths: BrokerPaths, sync: Option<WalSync>) -> KafkvStorage {
    let cwd = std::env::current_dir().expect("a working directory");
    let url = storage_url(path, &cwd).expect("a URL");
    let listener = url::Url::parse("tcp://127.0.0.1:9092").expect("a URL");
    let storage = build_storage(url, listener, path, paths, sync)
        .await
        .expect("storage");
    storage
        .register_broker(tansu_storage::BrokerRegistrationRequest {
            broker_id: tansu_broker::NODE_ID,
            cluster_id: CLUSTER_ID.into(),
            incarnation_id: uuid::Uuid::new_v4(),
            rack: None,
        })
        .await
        .expect("registered");
    storage
}

fn config(name: &str, value: &str) -> CreatableTopicConfig {
    CreatableTopicConfig::default()
        .name(name.into())
        .value(Some(value.into()))
}

/// `topic`, one partition, compacted at every run.
pub async fn create_compacted_topic(storage: &KafkvStorage, topic: &str) {
    let topic = CreatableTopic::default()
        .name(topic.into())
        .num_partitions(1)
        .replication_factor(1)
        .configs(Some(vec![
            config("cleanup.policy", "compact"),
            config("min.compaction.lag.ms", "0"),
            config("delete.retention.ms", "0"),
        ]));
    storage.create_topic(topic, false).await.expect("a topic");
}

/// The offsets of the records in `batches`, in order.
pub fn offsets_in<'a>(batches: impl IntoIterator<Item = &'a deflated::Batch>) -> Vec<i64> {
    batches
        .into_iter()
        .flat_map(|batch| {
            Vec::<Record>::try_from(batch)
                .expect("decodes")
                .into_iter()
                .map(|record| batch.base_offset + i64::from(record.offset_delta))
        })
        .collect()
}

/// `count` records added to the batch `builder` begins, over a few keys
/// (so compaction has work), some of them tombstones, some with headers:
/// values up to `value_bytes` long, headers up to `header_bytes`.
pub fn with_records(
    rng: &mut fastrand::Rng,
    mut builder: inflated::Builder,
    count: usize,
    value_bytes: usize,
    header_bytes: usize,
) -> deflated::Batch {
    builder = builder.last_offset_delta(count as i32 - 1);
    for delta in 0..count {
        let value = (!rng.u8(..).is_multiple_of(5))
            .then(|| Bytes::from(vec![b'v'; rng.usize(0..value_bytes)]));
        let mut record = Record::builder()
            .offset_delta(delta as i32)
            .timestamp_delta(rng.i64(0..3))
            .key(Some(Bytes::from(format!("k{}", rng.u8(0..6)))))
            .value(value);
        for h in 0..rng.usize(0..3) {
            record = record.header(
                Header::builder()
                    .key(Bytes::from(format!("h{h}")))
                    .value(Bytes::from(vec![b'h'; rng.usize(0..header_bytes)])),
            );
        }
        builder = builder.record(record);
    }
    builder
        .build()
        .and_then(deflated::Batch::try_from)
        .expect("a batch")
}

/// A batch of `count` records over a few keys (so compaction has work),
/// some of them tombstones, some with headers; its attributes vary so
/// fetches cross batch boundaries.
pub fn mixed_batch(rng: &mut fastrand::Rng, count: usize, timestamp: i64) -> deflated::Batch {
    let attributes = if rng.bool() { 0 } else { 8 };
    let builder = inflated::Batch::builder()
        .base_timestamp(timestamp)
        .attributes(attributes)
        .producer_id(-1)
        .producer_epoch(-1)
        .base_sequence(-1);
    with_records(rng, builder, count, 300, 100)
}

/// tansu's fetch leaves a batch's `max_timestamp` at the batch builder's
/// default, the time of the fetch (and the CRC covers it); clients read
/// each record's time from the base timestamp and its delta, as the batches
/// are create-time batches. Answers compare equal once this is cleared.
pub fn at_fetch_time(batch: deflated::Batch) -> deflated::Batch {
    deflated::Batch {
        max_timestamp: 0,
        crc: 0,
        ..batch
    }
}

/// Milliseconds since the epoch a minute ago: record times that
/// compaction's lag has passed.
pub fn a_minute_ago() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64
        - 60_000
}

/// Runs `sql` on a connection of its own to the database at `path`: what a
/// test does behind the broker's back (a schema as an earlier version left
/// it).
pub async fn execute_behind(path: &Path, sql: &str) {
    let database = libsql::Builder::new_local(path)
        .build()
        .await
        .expect("opens");
    let connection = database.connect().expect("connects");
    connection
        .execute(sql, ())
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// One fetch of a random history ([`random_fetches`]).
pub struct Fetch<'a> {
    /// One storage per path set asked for, each with the same history.
    pub storages: &'a [KafkvStorage],
    pub topition: &'a Topition,
    /// Where the partition stood when the fetch was drawn.
    pub stage: &'a OffsetStage,
    pub offset: i64,
    pub max_bytes: u32,
    pub isolation: IsolationLevel,
    /// Seed, step, offset and budget, for an assertion's message.
    pub context: String,
}

/// Random histories of one compacted partition, 12 seeds of 30 steps each,
/// applied alike to a storage for each of `paths`: produces of
/// [`mixed_batch`]es, compactions, restarts of the storage, and at random
/// points a fetch from every offset up to one past the end, each with a
/// large and a small budget and a random isolation level, handed to
/// `check`.
pub async fn random_fetches(
    topic: &str,
    paths: &[BrokerPaths],
    mut check: impl AsyncFnMut(Fetch<'_>),
) {
    let topition = Topition::new(topic, 0);
    for seed in 0..12u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let files: Vec<_> = (0..paths.len())
            .map(|i| dir.path().join(format!("broker-{i}.db")))
            .collect();
        let mut storages = Vec::new();
        for (file, paths) in files.iter().zip(paths) {
            let storage = open(file, *paths).await;
            create_compacted_topic(&storage, topic).await;
            storages.push(storage);
        }
        let start = a_minute_ago();
        for step in 0..30 {
            match rng.u8(0..20) {
                0..10 => {
                    let count = rng.usize(1..6);
                    let batch = mixed_batch(&mut rng, count, start + step);
                    for storage in &storages {
                        storage
                            .produce(None, &topition, batch.clone())
                            .await
                            .expect("produced");
                    }
                }
                10..12 => {
                    for storage in &storages {
                        storage
                            .compact(SystemTime::now() + Duration::from_secs(1))
                            .await
                            .expect("compacted");
                    }
                }
                12 => {
                    // Open the new ones before the old ones go, as one
                    // storage was replaced before: an old one's tasks wind
                    // down on their own after its drop.
                    let mut reopened = Vec::new();
                    for (file, paths) in files.iter().zip(paths) {
                        reopened.push(open(file, *paths).await);
                    }
                    storages = reopened;
                }
                _ => {
                    let stage = storages[0].offset_stage(&topition).await.expect("a stage");
                    for offset in 0..=stage.high_watermark() + 1 {
                        for max_bytes in [5 << 20, rng.u32(1..400)] {
                            let isolation = if rng.bool() {
                                IsolationLevel::ReadCommitted
                            } else {
                                IsolationLevel::ReadUncommitted
                            };
                            check(Fetch {
                                storages: &storages,
                                topition: &topition,
                                stage: &stage,
                                offset,
                                max_bytes,
                                isolation,
                                context: format!(
                                    "seed {seed} step {step} offset {offset} max_bytes {max_bytes}"
                                ),
                            })
                            .await;
                        }
                    }
                }
            }
        }
    }
}
