//! Sequential write latency: one HTTP client sending one `PUT /v1/kv/{key}`
//! at a time over a kept-alive connection, beside one librdkafka producer
//! with kafkv's settings sending one record at a time and awaiting its
//! acknowledgement; each side on a fresh topic, after 100 warm-up writes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafkv::Store;
use rdkafka::{producer::FutureRecord, util::Timeout};

use crate::{
    BenchConfig,
    error::{Error, Result},
    kafka::{create_topic, raw_producer, serve, store_config},
    progress,
    report::{Row, p50_p99_rows},
};

/// Writes not measured on each side, before the measured ones.
const WARMUP: usize = 100;

pub async fn compare(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    progress(format!("sequential writes: {} on each side", config.writes));
    let (kafkv, raw) = write_latency(brokers, run_id, config).await?;
    Ok(p50_p99_rows(
        |name| format!("sequential write latency {name} (HTTP PUT vs produce+ack)"),
        &kafkv,
        "librdkafka",
        &raw,
    ))
}

/// Each side's write latencies: (kafkv, raw).
async fn write_latency(
    brokers: &str,
    run_id: u32,
    config: &BenchConfig,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let value = Bytes::from(vec![b'v'; config.value_bytes]);

    // Raw: one record at a time, each awaited.
    let topic = format!("bench-writes-raw-{run_id}");
    create_topic(brokers, &topic).await?;
    let producer = raw_producer(brokers)?;
    let mut raw = Vec::with_capacity(config.writes);
    for i in 0..WARMUP + config.writes {
        let key = format!("key-{i:012}");
        let started = Instant::now();
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&value[..]),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| Error::Kafka(e))?;
        if i >= WARMUP {
            raw.push(started.elapsed());
        }
    }

    // kafkv: one HTTP PUT at a time over a kept-alive connection.
    let topic = format!("bench-writes-kafkv-{run_id}");
    let store = Store::open(store_config(brokers, &topic)).await?;
    let served = serve(store, None).await?;
    let base = format!("http://{}", served.http_address());
    let client = reqwest::Client::new();
    let mut kafkv = Vec::with_capacity(config.writes);
    for i in 0..WARMUP + config.writes {
        let url = format!("{base}/v1/kv/key-{i:012}");
        let started = Instant::now();
        let response = client.put(&url).body(value.clone()).send().await?;
        if !response.status().is_success() {
            return Err(Error::Failed(format!("PUT answered {}", response.status())));
        }
        if i >= WARMUP {
            kafkv.push(started.elapsed());
        }
    }
    served.stop().await;
    Ok((kafkv, raw))
}
