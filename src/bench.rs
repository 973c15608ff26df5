//! `kafkv bench`: measurements of kafkv beside the raw Kafka client doing the
//! same work against the same broker, in one run, printed as a table (and
//! optionally written as JSON).
//!
//! - Sequential write latency: one HTTP client, one `PUT /v1/kv/{key}` at a
//!   time, beside one librdkafka producer (same settings as kafkv's) sending
//!   one record at a time and waiting for its acknowledgement.
//! - Bootstrap: a topic of N records (16-byte keys, 100-byte values, 10% of
//!   them overwrites and 1% tombstones) read by a plain librdkafka consumer,
//!   beside `Store::open` materializing it; then the same with `--state
//!   disk` (first start, which writes the view and its checkpoint), and a
//!   restart with nothing changed beside the memory state's full replay.
//! - RESP: `redis-benchmark` (SET then GET, 50 clients, random keys, with and
//!   without `-P 16`) against kafkv's Redis front end and against a
//!   `redis-server` the bench starts without persistence on another port.
//! - HTTP: GET and PUT `/v1/kv/{key}` throughput and p50/p99 latency with
//!   `--concurrency` requests in flight from the bench's own load generator
//!   (`http_load.rs`); nothing else serves this API, so these rows have no peer.
//! - Write throughput: HTTP PUTs at `--concurrency` beside librdkafka
//!   producing the same records with at most as many sends outstanding.
//! - Memory per key: the RSS of a `kafkv serve` child process ([`child`]) on
//!   an empty topic and on one of N distinct keys, beside `redis-server`'s
//!   `INFO memory` before and after loading the same keys.
//!
//! Each measurement has its own fresh topic, named after the bench's pid.
//!
//! Without `--brokers` it starts the embedded broker on a free loopback port
//! with a temporary data dir, the way `kafkv serve` runs by default.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{StreamExt, stream};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use serde::Serialize;
use tokio::net::TcpListener;

pub mod child;
mod http_load;
mod memory;
mod redis_peer;
mod throughput;

use crate::{
    config::StoreConfig,
    error::{Error, Result},
    service::{self, Listeners},
    store::Store,
};

/// What to measure and where.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// A running Kafka; `None` starts the embedded broker.
    pub brokers: Option<String>,
    /// Records in the bootstrap topic.
    pub records: usize,
    /// Sequential writes measured on each side.
    pub writes: usize,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Which measurements to run.
    pub sections: Vec<Section>,
    /// The `--fetch-wait` of the kafkv instance the RESP comparison runs
    /// against. The embedded broker answers every idle fetch only when this
    /// runs out, so a short wait costs broker CPU on a machine the load
    /// generator shares.
    pub resp_fetch_wait: Duration,
    /// `redis-benchmark -n` for GET and for SET on each side.
    pub resp_get_requests: usize,
    pub resp_set_requests: usize,
    /// Requests in flight in the HTTP and write-throughput measurements.
    pub concurrency: usize,
    /// GETs and PUTs in the HTTP measurement.
    pub http_get_requests: usize,
    pub http_put_requests: usize,
    /// Records written on each side of the write-throughput comparison.
    pub throughput_records: usize,
    /// Distinct keys loaded into kafkv and redis-server for memory per key.
    pub memory_keys: usize,
    /// Write the figures here as JSON too.
    pub json: Option<PathBuf>,
}

/// A group of measurements `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Sequential write latency beside raw produce+ack.
    Writes,
    /// Bootstrap beside a raw consumer.
    Bootstrap,
    /// redis-benchmark against kafkv's RESP port and redis-server.
    Resp,
    /// HTTP GET and PUT throughput and latency at `--concurrency` (no peer).
    Http,
    /// Write throughput at `--concurrency`: HTTP PUT beside raw produce.
    Throughput,
    /// Memory per key of a `kafkv serve` process beside redis-server.
    Memory,
}

/// One line of the table: a figure for kafkv beside its peer's (the raw
/// Kafka client, or redis-server).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub measurement: String,
    pub unit: String,
    pub kafkv: f64,
    /// Who the peer is; [`NO_PEER`] when nothing comparable runs beside kafkv.
    pub peer: String,
    /// The peer's figure; NaN without a peer (the table shows "—", the JSON `null`).
    pub raw: f64,
}

/// The `peer` of a row without one, and what the table shows for a missing figure.
pub const NO_PEER: &str = "—";

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub broker: String,
    pub records: usize,
    pub writes: usize,
    pub rows: Vec<Row>,
}

fn progress(text: impl AsRef<str>) {
    eprintln!("bench: {}", text.as_ref());
}

/// Runs every measurement and prints the table.
pub async fn run(config: BenchConfig) -> Result<Report> {
    #[cfg(feature = "embedded-broker")]
    let mut embedded = None;
    let (brokers, broker) = match &config.brokers {
        Some(brokers) => (brokers.clone(), format!("external ({brokers})")),
        #[cfg(feature = "embedded-broker")]
        None => {
            let dir = std::env::temp_dir().join(format!("kafkv-bench-{}", std::process::id()));
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            let listen = probe.local_addr()?;
            drop(probe);
            let broker = crate::broker::EmbeddedBroker::start(&crate::config::BrokerConfig {
                listen,
                data_dir: dir.clone(),
                maintenance_interval: Duration::from_secs(3600),
            })
            .await?;
            embedded = Some((broker, dir));
            (
                listen.to_string(),
                "embedded tansu 0.6.0 (SQLite)".to_owned(),
            )
        }
        #[cfg(not(feature = "embedded-broker"))]
        None => {
            return Err(Error::Io(std::io::Error::other(
                "built without the embedded broker: pass --brokers",
            )));
        }
    };
    let run_id = std::process::id();
    let mut rows = Vec::new();
    let mut produced = 0;

    if config.sections.contains(&Section::Writes) {
        progress(format!("sequential writes: {} on each side", config.writes));
        let (kafkv_writes, raw_writes) = write_latency(&brokers, run_id, &config).await?;
        for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
            rows.push(Row {
                measurement: format!("sequential write latency {name} (HTTP PUT vs produce+ack)"),
                unit: "ms".into(),
                kafkv: percentile(&kafkv_writes, q),
                peer: "librdkafka".into(),
                raw: percentile(&raw_writes, q),
            });
        }
    }

    if config.sections.contains(&Section::Bootstrap) {
        progress(format!("bootstrap: producing {} records", config.records));
        let topic = format!("bench-bootstrap-{run_id}");
        produced = produce_bootstrap_topic(&brokers, &topic, &config).await?;
        progress(format!(
            "bootstrap: produced {produced} records; raw consumer reading"
        ));
        let raw = raw_consume(&brokers, &topic).await?;
        progress(format!(
            "bootstrap: raw consumer read {} records in {:.2}s; kafkv materializing",
            raw.0,
            raw.1.as_secs_f64()
        ));
        let started = Instant::now();
        let store = Store::open(bench_store_config(&brokers, &topic)).await?;
        let kafkv_secs = started.elapsed().as_secs_f64();
        let applied = store.progress().records_applied;
        store.close().await;
        rows.push(Row {
            measurement: format!("bootstrap of {produced} records (time to ready vs read to end)"),
            unit: "s".into(),
            kafkv: kafkv_secs,
            peer: "librdkafka".into(),
            raw: raw.1.as_secs_f64(),
        });
        rows.push(Row {
            measurement: "bootstrap rate".into(),
            unit: "records/s".into(),
            kafkv: applied as f64 / kafkv_secs,
            peer: "librdkafka".into(),
            raw: raw.0 as f64 / raw.1.as_secs_f64(),
        });
        rows.extend(disk_restart(&brokers, &topic, run_id, kafkv_secs, raw).await?);
    }

    if config.sections.contains(&Section::Resp) {
        rows.extend(redis_peer::compare(&brokers, run_id, &config).await?);
    }

    if config.sections.contains(&Section::Http) {
        rows.extend(http_load::measure(&brokers, run_id, &config).await?);
    }

    if config.sections.contains(&Section::Throughput) {
        rows.extend(throughput::compare(&brokers, run_id, &config).await?);
    }

    if config.sections.contains(&Section::Memory) {
        rows.extend(memory::compare(&brokers, run_id, &config).await?);
    }

    let report = Report {
        broker,
        records: produced,
        writes: config.writes,
        rows,
    };
    print_table(&report);
    if let Some(path) = &config.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&report).expect("serializable"),
        )?;
    }
    #[cfg(feature = "embedded-broker")]
    if let Some((broker, dir)) = embedded {
        broker.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(report)
}

/// `--state disk` on the bootstrap topic: the first start (which writes the
/// view and its checkpoint to disk) beside the raw consumer, then a restart
/// with nothing changed beside the memory state's full replay.
async fn disk_restart(
    brokers: &str,
    topic: &str,
    run_id: u32,
    memory_secs: f64,
    raw: (u64, Duration),
) -> Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("kafkv-bench-state-{run_id}"));
    let mut config = bench_store_config(brokers, topic);
    config.state = crate::config::StateConfig::Disk(dir.clone());
    progress("bootstrap: kafkv with --state disk, first start");
    let started = Instant::now();
    let store = Store::open(config.clone()).await?;
    let first = started.elapsed().as_secs_f64();
    let keys = store.len();
    // Closing leaves a durable checkpoint; dropping releases the file.
    store.close().await;
    drop(store);
    progress(format!(
        "bootstrap: --state disk first start {first:.2}s ({keys} keys); restarting"
    ));
    let started = Instant::now();
    let store = Store::open(config).await?;
    let restart = started.elapsed().as_secs_f64();
    let reread = store.progress().records_applied;
    let same = store.len() == keys;
    store.close().await;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    if !same || reread != 0 {
        return Err(Error::Io(std::io::Error::other(format!(
            "the disk restart re-read {reread} records or changed the key count"
        ))));
    }
    progress(format!(
        "bootstrap: --state disk restart ready in {restart:.3}s"
    ));
    Ok(vec![
        Row {
            measurement: "bootstrap with --state disk (first start)".into(),
            unit: "s".into(),
            kafkv: first,
            peer: "librdkafka".into(),
            raw: raw.1.as_secs_f64(),
        },
        Row {
            measurement: format!("restart with --state disk, {keys} keys unchanged"),
            unit: "s".into(),
            kafkv: restart,
            peer: "memory state".into(),
            raw: memory_secs,
        },
    ])
}

fn bench_store_config(brokers: &str, topic: &str) -> StoreConfig {
    StoreConfig::new(brokers).topic(topic).on_single_broker()
}

/// Creates `topic` compacted, the way kafkv would.
async fn create_topic(brokers: &str, topic: &str) -> Result<()> {
    Store::open(bench_store_config(brokers, topic))
        .await?
        .close()
        .await;
    Ok(())
}

/// The producer settings kafkv's writer uses, for a like-for-like baseline.
fn raw_producer(brokers: &str) -> Result<FutureProducer> {
    let config = bench_store_config(brokers, "unused");
    Ok(
        crate::log::client::client_config(&config, &crate::log::client::producer_settings())
            .create()?,
    )
}

async fn write_latency(
    brokers: &str,
    run_id: u32,
    config: &BenchConfig,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let value = Bytes::from(vec![b'v'; config.value_bytes]);
    let warmup = 100;

    // Raw: one record at a time, each awaited.
    let topic = format!("bench-writes-raw-{run_id}");
    create_topic(brokers, &topic).await?;
    let producer = raw_producer(brokers)?;
    let mut raw = Vec::with_capacity(config.writes);
    for i in 0..warmup + config.writes {
        let key = format!("key-{i:012}");
        let started = Instant::now();
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&value[..]),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| Error::Kafka(e))?;
        if i >= warmup {
            raw.push(started.elapsed());
        }
    }

    // kafkv: one HTTP PUT at a time over a kept-alive connection.
    let topic = format!("bench-writes-kafkv-{run_id}");
    let store = Store::open(bench_store_config(brokers, &topic)).await?;
    let served = InProcess::start(store, None).await?;
    let base = served.base_url();
    let client = reqwest::Client::new();
    let mut kafkv = Vec::with_capacity(config.writes);
    for i in 0..warmup + config.writes {
        let url = format!("{base}/v1/kv/key-{i:012}");
        let started = Instant::now();
        let response = client
            .put(&url)
            .body(value.clone())
            .send()
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        if !response.status().is_success() {
            return Err(Error::Io(std::io::Error::other(format!(
                "PUT answered {}",
                response.status()
            ))));
        }
        if i >= warmup {
            kafkv.push(started.elapsed());
        }
    }
    served.stop().await;
    Ok((kafkv, raw))
}

/// `store` served in this process the way `kafkv serve` serves it: HTTP on a
/// free loopback port, RESP too if given a listener.
struct InProcess {
    http: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl InProcess {
    async fn start(store: Store, resp: Option<TcpListener>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let http = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let front_ends = service::FrontEnds::new(store.config());
        let server = tokio::spawn(service::serve(
            store,
            Listeners {
                http: listener,
                resp,
            },
            front_ends,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self { http, stop, server })
    }

    /// `http://127.0.0.1:<port>`.
    fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Stops accepting, drains and closes the store.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// Produces the bootstrap topic: 16-byte keys, `value_bytes` values; one
/// record in ten overwrites an earlier key and one in a hundred deletes one.
async fn produce_bootstrap_topic(
    brokers: &str,
    topic: &str,
    config: &BenchConfig,
) -> Result<usize> {
    produce_topic(
        brokers,
        topic,
        config.records,
        config.value_bytes,
        "bootstrap",
        |i| match i % 100 {
            99 => (i / 2, true),
            r if r % 10 == 9 => (i / 2, false),
            _ => (i, false),
        },
    )
    .await
}

/// Creates `topic` and produces `records` records with the raw producer:
/// record `i` has the 16-byte key `key-{k:012}` and a `value_bytes` value,
/// or is a tombstone, where `(k, tombstone) = record(i)`. `section` names the
/// progress lines. Returns the records produced.
async fn produce_topic(
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

/// A plain librdkafka consumer with kafkv's fetch settings reads the topic to
/// its end offsets; returns (records, time).
async fn raw_consume(brokers: &str, topic: &str) -> Result<(u64, Duration)> {
    let config = bench_store_config(brokers, topic);
    let consumer: BaseConsumer = crate::log::client::client_config(
        &config,
        &crate::log::client::assign_only_consumer(&config),
    )
    .create()?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let (_, end) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30))?;
        let ends = [end];
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let mut records = 0u64;
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    records += 1;
                    if message.offset() + 1 >= ends[0] {
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

fn percentile(samples: &[Duration], q: f64) -> f64 {
    let mut sorted: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank]
}

fn print_table(report: &Report) {
    println!("\nkafkv bench — broker: {}\n", report.broker);
    println!(
        "| {:<62} | {:>12} | {:>12} | {:<18} | {:>10} | {:<9} |",
        "measurement", "kafkv", "peer", "peer is", "kafkv/peer", "unit"
    );
    println!(
        "|{:-<64}|{:->14}|{:->14}|{:-<20}|{:->12}|{:-<11}|",
        "", "", "", "", "", ""
    );
    for row in &report.rows {
        let ratio = row.kafkv / row.raw;
        let ratio = if ratio.is_finite() {
            format!("{ratio:.2}")
        } else {
            NO_PEER.to_owned()
        };
        println!(
            "| {:<62} | {:>12} | {:>12} | {:<18} | {:>10} | {:<9} |",
            row.measurement,
            format_figure(row.kafkv),
            format_figure(row.raw),
            row.peer,
            ratio,
            row.unit
        );
    }
    println!();
}

/// A figure for the table; "—" when there is none (NaN: no peer does this).
fn format_figure(value: f64) -> String {
    if !value.is_finite() {
        NO_PEER.to_owned()
    } else if value >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), 51.0);
        assert_eq!(percentile(&samples, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn rows_without_a_peer_show_a_dash_and_serialize_null() {
        assert_eq!(format_figure(f64::NAN), NO_PEER);
        assert_eq!(format_figure(1234.4), "1234");
        assert_eq!(format_figure(0.5), "0.500");
        let row = Row {
            measurement: "m".into(),
            unit: "ms".into(),
            kafkv: 1.0,
            peer: NO_PEER.into(),
            raw: f64::NAN,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec_pretty(&row).unwrap()).unwrap();
        assert_eq!(json["raw"], serde_json::Value::Null);
        assert_eq!(json["kafkv"], 1.0);
    }
}
