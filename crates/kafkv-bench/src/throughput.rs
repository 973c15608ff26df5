//! Write throughput with `--concurrency` writes in flight: HTTP PUTs through
//! kafkv beside librdkafka producing the same records with kafkv's producer
//! settings and at most as many sends outstanding, each side on a fresh topic.
//! The records are `--throughput-records` distinct 16-byte keys with
//! `--value-bytes` values. Each side first writes one record, so connecting
//! and the producer's metadata and id requests fall outside the timing.
//!
//! Two more rows locate the difference: `Store::put` called in process (the
//! library without HTTP) beside the same raw rate, and the raw rate again
//! while a kafkv store tails the topic, since every kafkv instance reads each
//! record back and on the embedded broker those reads share the same SQLite
//! database and the same two cores with the writes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, stream};
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};

use kafkv::Store;

use crate::{
    BenchConfig,
    error::{Error, Result},
    http_load::{self, Request},
    kafka::{create_topic, raw_producer, serve, store_config},
    progress,
    report::Row,
};

pub async fn compare(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    let (c, records) = (config.concurrency, config.throughput_records);
    let value = Bytes::from(vec![b'v'; config.value_bytes]);

    progress(format!(
        "throughput: producing {records} records with librdkafka, at most {c} outstanding"
    ));
    let raw = produce_rate(
        brokers,
        &format!("bench-throughput-raw-{run_id}"),
        c,
        records,
        &value,
        false,
    )
    .await?;
    progress("throughput: the same while a consumer tails the topic (as kafkv's does)");
    let raw_tailed = produce_rate(
        brokers,
        &format!("bench-throughput-tailed-{run_id}"),
        c,
        records,
        &value,
        true,
    )
    .await?;

    progress(format!(
        "throughput: {records} Store::put calls in process, c={c}"
    ));
    let store = Store::open(store_config(
        brokers,
        &format!("bench-throughput-library-{run_id}"),
    ))
    .await?;
    store.put(b"warm-up", value.clone()).await?;
    let started = Instant::now();
    let mut puts = stream::iter(0..records)
        .map(|i| {
            let (store, value) = (&store, value.clone());
            async move { store.put(format!("key-{i:012}").as_bytes(), value).await }
        })
        .buffer_unordered(c);
    while let Some(put) = puts.next().await {
        put?;
    }
    drop(puts);
    let library = records as f64 / started.elapsed().as_secs_f64();
    store.close().await;

    progress(format!(
        "throughput: {records} HTTP PUTs through kafkv, c={c}"
    ));
    let store = Store::open(store_config(
        brokers,
        &format!("bench-throughput-kafkv-{run_id}"),
    ))
    .await?;
    let served = serve(store, None).await?;
    let warm_up = value.clone();
    http_load::generate(served.http_address(), 1, 1, move |_, _| Request {
        path: "/v1/kv/warm-up".into(),
        body: Some(warm_up.clone()),
    })
    .await?;
    let load = http_load::generate(served.http_address(), c, records, move |i, _| Request {
        path: http_load::key_path(i),
        body: Some(value.clone()),
    })
    .await?;
    served.stop().await;

    Ok(vec![
        Row {
            measurement: format!("write throughput at concurrency {c} (HTTP PUT vs produce)"),
            unit: "records/s".into(),
            kafkv: load.rate(),
            peer: "librdkafka".into(),
            raw,
        },
        Row {
            measurement: format!("write throughput at concurrency {c} (Store::put vs produce)"),
            unit: "records/s".into(),
            kafkv: library,
            peer: "librdkafka".into(),
            raw,
        },
        Row {
            measurement: format!("write throughput at concurrency {c}, topic tailed (HTTP PUT)"),
            unit: "records/s".into(),
            kafkv: load.rate(),
            peer: "librdkafka+consumer".into(),
            raw: raw_tailed,
        },
    ])
}

/// Records/s of librdkafka producing `records` records with at most
/// `concurrency` outstanding; with `tailed`, while a kafkv store (a consumer
/// reading every record back, as each kafkv instance does) tails the topic.
async fn produce_rate(
    brokers: &str,
    topic: &str,
    concurrency: usize,
    records: usize,
    value: &Bytes,
    tailed: bool,
) -> Result<f64> {
    create_topic(brokers, topic).await?;
    let tail = if tailed {
        Some(Store::open(store_config(brokers, topic)).await?)
    } else {
        None
    };
    let producer = raw_producer(brokers)?;
    send(&producer, topic, "warm-up", value).await?;
    let started = Instant::now();
    produce_keys(&producer, topic, records, concurrency, value).await?;
    let rate = records as f64 / started.elapsed().as_secs_f64();
    if let Some(tail) = tail {
        tail.close().await;
    }
    Ok(rate)
}

/// Produces `records` records (key `key-{i:012}`, `value`) to `topic` with
/// at most `in_flight` sends outstanding; fails on the first failed send.
pub(crate) async fn produce_keys(
    producer: &FutureProducer,
    topic: &str,
    records: usize,
    in_flight: usize,
    value: &[u8],
) -> Result<()> {
    let mut sends = stream::iter(0..records)
        .map(|i| async move { send(producer, topic, &format!("key-{i:012}"), value).await })
        .buffer_unordered(in_flight);
    while let Some(sent) = sends.next().await {
        sent?;
    }
    Ok(())
}

pub(crate) async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
) -> Result<()> {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Timeout::After(Duration::from_secs(30)),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| Error::Kafka(e))
}
