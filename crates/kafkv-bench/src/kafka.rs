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
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use tokio::net::TcpListener;

use crate::{
    error::{Error, Result},
    progress,
};

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
            let key = format!("key-{key:012}");
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
        let (consumer, topic, partitions) =
            (self.consumer.clone(), self.topic.clone(), self.partitions);
        tokio::task::spawn_blocking(move || {
            (0..partitions).try_fold(0, |sum, partition| {
                let (_, end) =
                    consumer.fetch_watermarks(&topic, partition, Duration::from_secs(30))?;
                Ok(sum + end)
            })
        })
        .await
        .expect("watermark request panicked")
    }
}
