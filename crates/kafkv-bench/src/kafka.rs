//! What the sections share: store configs for the bench's broker, raw
//! librdkafka clients configured exactly as kafkv's own (through
//! `kafkv::log::client`), producing and reading whole topics, and kafkv
//! served in this process.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kafkv::{
    Store, StoreConfig,
    log::client::{assign_only_consumer, client_config, producer_settings},
    service::{self, FrontEnds, Listeners, Server},
};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::BorrowedMessage,
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use tokio::net::TcpListener;

use crate::{
    error::{Error, Result},
    progress,
};

/// [`read_from`]'s fetch size: librdkafka's `message.max.bytes`, the least
/// `fetch.max.bytes` it takes.
const READ_FETCH_BYTES: usize = 1_000_000;
/// How long [`read_from`] may take before the run fails.
const READ_PATIENCE: Duration = Duration::from_secs(600);

/// A store on `topic`, created with replication factor 1 like kafkv's on a
/// single broker, with every other setting at its default.
pub fn store_config(brokers: &str, topic: &str) -> StoreConfig {
    StoreConfig::new(brokers).topic(topic).on_single_broker()
}

/// Creates `topic` compacted, the way kafkv would.
pub async fn create_topic(brokers: &str, topic: &str) -> Result<()> {
    Store::open(store_config(brokers, topic))
        .await?
        .close()
        .await;
    Ok(())
}

/// A producer with kafkv's writer's settings, for a like-for-like baseline.
pub fn raw_producer(brokers: &str) -> Result<FutureProducer> {
    let config = store_config(brokers, "unused");
    Ok(client_config(&config, &producer_settings()).create()?)
}

/// Serves `store` in this process the way `kafkv serve` serves it: HTTP on a
/// free loopback port, RESP too if given a listener. [`Server::stop`] drains
/// and closes the store.
pub async fn serve(store: Store, resp: Option<TcpListener>) -> Result<Server> {
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let front_ends = FrontEnds::new(store.config());
    Ok(service::spawn(store, Listeners { http, resp }, front_ends)?)
}

/// The bench's 16-byte key number `i`, as every section names it.
pub fn key_name(i: usize) -> String {
    format!("key-{i:012}")
}

/// Creates `topic` and produces `records` records with the raw producer:
/// record `i` has the 16-byte key `key-{k:012}` and a `value_bytes` value,
/// or is a tombstone, where `(k, tombstone) = record(i)`. `section` names the
/// progress lines. Returns the records produced.
pub async fn produce_topic(
    brokers: &str,
    topic: &str,
    records: usize,
    value_bytes: usize,
    section: &str,
    record: impl Fn(usize) -> (usize, bool),
) -> Result<usize> {
    create_topic(brokers, topic).await?;
    let producer = raw_producer(brokers)?;
    let value = vec![b'v'; value_bytes];
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut sent = 0usize;
    let mut results = stream::iter(0..records)
        .map(|i| {
            let (key, tombstone) = record(i);
            let key = key_name(key);
            let producer = &producer;
            let value = &value;
            async move {
                let mut record = FutureRecord::<str, [u8]>::to(topic).key(&key);
                if !tombstone {
                    record = record.payload(value);
                }
                producer
                    .send(record, Timeout::After(Duration::from_secs(60)))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }
        })
        .buffered(10_000);
    while let Some(result) = results.next().await {
        result?;
        sent += 1;
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            progress(format!(
                "{section}: produced {sent} ({:.0} records/s)",
                sent as f64 / started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(sent)
}

/// A plain librdkafka consumer with kafkv's fetch settings reads the
/// single-partition `topic` to its end offset; returns (records, time).
pub async fn raw_consume(brokers: &str, topic: &str) -> Result<(u64, Duration)> {
    let config = store_config(brokers, topic);
    let consumer: BaseConsumer = client_config(&config, &assign_only_consumer(&config)).create()?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let (_, end) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30))?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let mut records = 0u64;
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    records += 1;
                    if message.offset() + 1 >= end {
                        break;
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(Error::Kafka(e)),
                None => {}
            }
        }
        Ok((records, started.elapsed()))
    })
    .await
    .expect("raw consumer panicked")
}

/// A topic's end offsets, asked of the brokers each time: how many records
/// were ever written to it.
pub struct EndOffsets {
    consumer: std::sync::Arc<BaseConsumer>,
    topic: String,
    partitions: i32,
}

impl EndOffsets {
    /// A client for `topic`, which must exist.
    pub async fn new(brokers: &str, topic: &str) -> Result<Self> {
        let config = store_config(brokers, topic);
        let consumer: BaseConsumer =
            client_config(&config, &assign_only_consumer(&config)).create()?;
        let consumer = std::sync::Arc::new(consumer);
        let (asking, name) = (consumer.clone(), topic.to_owned());
        let partitions = tokio::task::spawn_blocking(move || {
            let metadata = asking.fetch_metadata(Some(&name), Duration::from_secs(30))?;
            Ok::<_, Error>(
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name)
                    .map_or(0, |t| t.partitions().len() as i32),
            )
        })
        .await
        .expect("metadata request panicked")?;
        if partitions == 0 {
            return Err(Error::Failed(format!("topic {topic} has no partitions")));
        }
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            partitions,
        })
    }

    /// The sum of the topic's end offsets now.
    pub async fn total(&self) -> Result<i64> {
        Ok(self.each().await?.iter().sum())
    }

    /// Each partition's end offset now, by partition.
    pub async fn each(&self) -> Result<Vec<i64>> {
        let (consumer, topic, partitions) =
            (self.consumer.clone(), self.topic.clone(), self.partitions);
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|partition| {
                    let (_, end) =
                        consumer.fetch_watermarks(&topic, partition, Duration::from_secs(30))?;
                    Ok(end)
                })
                .collect()
        })
        .await
        .expect("watermark request panicked")
    }
}

/// Reads every partition of `topic` from `from[partition]` to the end
/// offset it has when called, with a plain librdkafka consumer, handing each
/// record to `visit` (on a blocking thread); returns `state` once done.
pub async fn read_from<T: Send + 'static>(
    brokers: &str,
    topic: &str,
    from: Vec<i64>,
    mut state: T,
    visit: fn(&mut T, &BorrowedMessage<'_>),
) -> Result<T> {
    let ends = EndOffsets::new(brokers, topic).await?.each().await?;
    let config = store_config(brokers, topic);
    // The embedded broker (tansu 0.6) sizes a fetch by the request's
    // max_bytes (at most 5 MiB) and counts only keys and values against it
    // (record_fetch.sql), not headers or per-record framing: a fetch of
    // SWEEPs (a 16-byte key, no value, a 45-byte header) at kafkv's settings
    // came back as 23.4 MB, over the 18.3 MB librdkafka accepts, and failed
    // for good. librdkafka's smallest request size keeps such records well
    // within it (62,500 SWEEPs, about 5.5 MB).
    let consumer: BaseConsumer = client_config(&config, &assign_only_consumer(&config))
        .set("fetch.max.bytes", READ_FETCH_BYTES.to_string())
        .set("max.partition.fetch.bytes", READ_FETCH_BYTES.to_string())
        .create()?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut assignment = TopicPartitionList::new();
        // Partitions still to read, by partition: where their end is.
        let mut left = std::collections::HashMap::new();
        for (partition, (&start, &end)) in from.iter().zip(&ends).enumerate() {
            if start < end {
                let partition = partition as i32;
                assignment.add_partition_offset(&topic, partition, Offset::Offset(start))?;
                left.insert(partition, end);
            }
        }
        if left.is_empty() {
            return Ok(state);
        }
        consumer.assign(&assignment)?;
        let deadline = Instant::now() + READ_PATIENCE;
        while !left.is_empty() {
            if Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "reading {topic} back took over {}s",
                    READ_PATIENCE.as_secs()
                )));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let partition = message.partition();
                    if let Some(&end) = left.get(&partition) {
                        if message.offset() < end {
                            visit(&mut state, &message);
                        }
                        if message.offset() + 1 >= end {
                            left.remove(&partition);
                        }
                    }
                }
                // The end offset was asked before the read: a partition at
                // its end has nothing more for this read.
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                    left.remove(&partition);
                }
                Some(Err(e)) => return Err(Error::Kafka(e)),
                None => {}
            }
        }
        Ok(state)
    })
    .await
    .expect("topic reader panicked")
}
