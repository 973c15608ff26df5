//! Write throughput with `--concurrency` writes in flight: HTTP PUTs through
//! kafkv beside librdkafka producing the same records with kafkv's producer
//! settings and at most as many sends outstanding, each side on a fresh topic.
//! The records are `--throughput-records` distinct 16-byte keys with
//! `--value-bytes` values. Each side first writes one record, so connecting
//! and the producer's metadata and id requests fall outside the timing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, stream};
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};

use super::{
    BenchConfig, InProcess, Row, bench_store_config, create_topic,
    http_load::{self, Request},
    progress, raw_producer,
};
use crate::{
    error::{Error, Result},
    store::Store,
};

pub(super) async fn compare(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    let (c, records) = (config.concurrency, config.throughput_records);
    let value = Bytes::from(vec![b'v'; config.value_bytes]);

    progress(format!(
        "throughput: producing {records} records with librdkafka, at most {c} outstanding"
    ));
    let topic = format!("bench-throughput-raw-{run_id}");
    create_topic(brokers, &topic).await?;
    let producer = raw_producer(brokers)?;
    send(&producer, &topic, "warm-up", &value).await?;
    let started = Instant::now();
    let mut sends = stream::iter(0..records)
        .map(|i| {
            let (producer, topic, value) = (&producer, &topic, &value);
            async move { send(producer, topic, &format!("key-{i:012}"), value).await }
        })
        .buffer_unordered(c);
    while let Some(sent) = sends.next().await {
        sent?;
    }
    drop(sends);
    let raw = records as f64 / started.elapsed().as_secs_f64();

    progress(format!(
        "throughput: {records} HTTP PUTs through kafkv, c={c}"
    ));
    let store = Store::open(bench_store_config(
        brokers,
        &format!("bench-throughput-kafkv-{run_id}"),
    ))
    .await?;
    let served = InProcess::start(store, None).await?;
    let warm_up = value.clone();
    http_load::generate(served.http, 1, 1, move |_, _| Request {
        path: "/v1/kv/warm-up".into(),
        body: Some(warm_up.clone()),
    })
    .await?;
    let load = http_load::generate(served.http, c, records, move |i, _| Request {
        path: http_load::key_path(i),
        body: Some(value.clone()),
    })
    .await?;
    served.stop().await;

    Ok(vec![Row {
        measurement: format!("write throughput at concurrency {c} (HTTP PUT vs produce)"),
        unit: "records/s".into(),
        kafkv: load.rate(),
        peer: "librdkafka".into(),
        raw,
    }])
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, value: &[u8]) -> Result<()> {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Timeout::After(Duration::from_secs(30)),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| Error::Kafka(e))
}
