//! Restarts with `--state disk`: resuming from the checkpoint reads only what
//! changed, a kill -9 at any moment leaves a checkpoint consistent with the
//! view, and every reason a checkpoint cannot be trusted leads to a full,
//! correct rebuild.
//!
//! A checkpoint below the log start offset is covered by the reader's unit
//! tests only: the embedded broker's DeleteRecords is unimplemented (tansu
//! 0.6 panics in it), so no test broker here can move the log start.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use kafkv::{StateConfig, Store, StoreConfig};
use parking_lot::Mutex;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};

use crate::harness::{
    Kafka, ServeProcess, eventually, produce_all, producer, read_topic, replay, state_of,
    unique_topic,
};

fn disk_config(kafka: &Kafka, topic: &str, dir: &Path) -> StoreConfig {
    let mut config = kafka.config(topic);
    config.state = StateConfig::Disk(dir.to_owned());
    config
}

/// Closes the store and drops it, which releases its disk state.
async fn close(store: Store) {
    store.close().await;
}

async fn put_keys(store: &Store, prefix: &str, count: usize) {
    for i in 0..count {
        store
            .put(
                format!("{prefix}{i}").as_bytes(),
                Bytes::from(format!("{prefix}-value-{i}")),
            )
            .await
            .expect("put");
    }
}

/// Opens the disk store and checks it equals a replay of the topic; returns
/// how many records it read to get there.
async fn reopen_and_compare(kafka: &Kafka, config: StoreConfig) -> u64 {
    let store = Store::open(config.clone()).await.expect("reopen");
    let expected = replay(&read_topic(&kafka.brokers(), &config.topic).await);
    assert_eq!(state_of(&store).await, expected, "disk state vs replay");
    let applied = store.progress().records_applied;
    close(store).await;
    applied
}

fn admin(kafka: &Kafka) -> AdminClient<DefaultClientContext> {
    crate::harness::client(&kafka.brokers())
        .create()
        .expect("admin client")
}

/// Deletes `topic` and creates it again, compacted, with `partitions`.
async fn recreate(kafka: &Kafka, topic: &str, partitions: i32) {
    let admin = admin(kafka);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let deleted = admin.delete_topics(&[topic], &options).await.unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    eventually("the topic is created again", || async {
        let created = admin.create_topics([&new], &options).await.unwrap();
        created.iter().all(Result::is_ok)
    })
    .await;
}

/// Removes the topic id from a closed disk state, as a checkpoint taken on a
/// cluster that reports no topic ids would be, so the offset and partition
/// checks are what must catch the change.
fn forget_topic_id(dir: &Path, topic: &str) {
    let db = redb::Database::open(StateConfig::disk_path(dir, topic)).expect("open the state");
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap();
        assert!(
            meta.remove("topic_id").unwrap().is_some(),
            "the checkpoint held a topic id"
        );
    }
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_restart_reads_only_new_records_and_equals_a_fresh_replay() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("resume");
    let dir = tempfile::tempdir().unwrap();
    let mut config = disk_config(&kafka, &topic, dir.path());
    config.partitions = 2;

    let store = Store::open(config.clone()).await.unwrap();
    put_keys(&store, "k", 300).await;
    for i in 0..30 {
        store.delete(format!("k{i}").as_bytes()).await.unwrap();
    }
    store.catch_up().await.unwrap(); // so the checkpoint covers every write
    close(store).await;

    // While it is down, another producer overwrites, deletes and adds keys.
    let changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (100..120)
        .map(|i| (format!("k{i}").into_bytes(), Some(b"overwritten".to_vec())))
        .chain((200..210).map(|i| (format!("k{i}").into_bytes(), None)))
        .chain((0..10).map(|i| (format!("n{i}").into_bytes(), Some(b"new".to_vec()))))
        .collect();
    produce_all(&producer(&kafka.brokers()), &topic, changes).await;

    let applied = reopen_and_compare(&kafka, config.clone()).await;
    assert_eq!(
        applied, 40,
        "only the records written while it was down are read"
    );

    // A fresh memory instance agrees, and a restart with nothing new reads nothing.
    let fresh = Store::open(kafka.config(&topic)).await.unwrap();
    let store = Store::open(config.clone()).await.unwrap();
    assert_eq!(store.progress().records_applied, 0);
    assert_eq!(state_of(&store).await, state_of(&fresh).await);
    assert_eq!(state_of(&store).await.len(), 300 - 30 - 10 + 10);
    close(fresh).await;
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_write_and_equals_a_fresh_replay() {
    let kafka = Kafka::start().await;
    let brokers = kafka.brokers();
    let topic = unique_topic("kill9");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let args = [
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--partitions",
        "2",
        "--replication-factor",
        "1",
        "--state",
        "disk",
        "--data-dir",
        &data_dir,
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();

    for round in 0..3 {
        let serve = ServeProcess::start(dir.path(), &args).await;
        if round > 0 {
            let log = serve.log();
            assert!(log.contains("resuming from the disk checkpoint"), "{log}");
            assert!(!log.contains("rebuilding"), "{log}");
        }
        // Writers PUT unique keys (and delete some) until the kill.
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (stop, acked, base) = (stop.clone(), acked.clone(), serve.url("/v1/kv/"));
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Acquire) {
                        let key = format!("r{round}-w{w}-{i}");
                        let value = format!("value-{i}");
                        let put = http
                            .put(format!("{base}{key}"))
                            .body(value.clone())
                            .send()
                            .await;
                        match put {
                            Ok(r) if r.status().is_success() => acked.lock().push((key, value)),
                            _ => break, // killed mid-request: not acknowledged
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        let target = (round + 1) * 400;
        eventually("writers got writes acknowledged", || async {
            acked.lock().len() >= target
        })
        .await;
        let log = serve.kill9();
        stop.store(true, Ordering::Release);
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(!log.contains("panicked"), "{log}");
    }

    let config = disk_config(&kafka, &topic, dir.path());
    let store = Store::open(config).await.unwrap();
    let expected = replay(&read_topic(&brokers, &topic).await);
    let state = state_of(&store).await;
    assert_eq!(state, expected, "state after kill -9 vs a fresh replay");
    for (key, value) in acked.lock().iter() {
        assert_eq!(
            state.get(key.as_bytes()).map(Vec::as_slice),
            Some(value.as_bytes()),
            "acknowledged write {key} is missing"
        );
    }
    close(store).await;
}

/// Writes `old` keys with a disk state, replaces the topic with one of
/// `partitions` partitions holding `new` keys, and checks that the next start
/// rebuilds: it reads every record and equals a replay. Without
/// `keep_topic_id` the checkpoint forgets the topic id first, as one taken on
/// a cluster that reports none, so the offset and partition checks must
/// catch the change.
async fn replaced_topic_is_rebuilt(
    name: &str,
    old: usize,
    new: usize,
    partitions: i32,
    keep_topic_id: bool,
) {
    let kafka = Kafka::start().await;
    let topic = unique_topic(name);
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(&kafka, &topic, dir.path());
    let store = Store::open(config.clone()).await.unwrap();
    put_keys(&store, "old", old).await;
    close(store).await;
    if !keep_topic_id {
        forget_topic_id(dir.path(), &topic);
    }

    recreate(&kafka, &topic, partitions).await;
    let mut replaced = kafka.config(&topic);
    replaced.partitions = partitions;
    let store = Store::open(replaced).await.unwrap();
    put_keys(&store, "new", new).await;
    close(store).await;

    let applied = reopen_and_compare(&kafka, config).await;
    assert_eq!(applied, new as u64, "a full rebuild reads every record");
}

/// Same name, more records than the checkpoint's offsets: only the topic id
/// tells the topics apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_is_rebuilt_from_scratch() {
    replaced_topic_is_rebuilt("recreated", 10, 30, 1, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_beyond_the_end_offset_is_rebuilt() {
    replaced_topic_is_rebuilt("beyond-end", 20, 5, 1, false).await;
}

/// The embedded broker cannot add partitions (no CreatePartitions), so the
/// topic comes back with 3; without the topic id only the count reveals it
/// (partition 0's offsets alone would look resumable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_partition_count_is_rebuilt() {
    replaced_topic_is_rebuilt("repartitioned", 10, 40, 3, false).await;
}
