//! CPU per acknowledged write, kafkv and the broker apart.
//!
//! The broker runs out of process (`kafkv broker`) and kafkv as a `kafkv
//! serve --brokers` child, so `/proc/<pid>/stat` gives each one's user +
//! system CPU time over a run. Each workload writes `--cpu-writes` records:
//!
//! - RESP `SET` from redis-benchmark, 50 clients, without and with `-P 16`;
//! - HTTP `PUT` from the bench's load generator, 50 connections;
//! - the peer: a raw librdkafka producer (kafkv's own producer settings) in
//!   this process with as many sends outstanding as kafkv has writes in
//!   flight (50, and 800 for `-P 16`): its CPU is this process's.
//!
//! The figure is CPU milliseconds per 1,000 acknowledged writes (= µs per
//! write). kafkv's includes its consumer reading every record back, which a
//! kafkv instance always does; the raw producer does not read. Nor does it
//! have kafkv's send window (`kafkv::log::window`), so its producer thread
//! spins while five records per partition are unacknowledged, as any plain
//! librdkafka application's does.

use std::{path::Path, time::Duration};

use bytes::Bytes;
use kafkv_testkit::{BrokerProcess, free_port};

use crate::{
    BenchConfig,
    cpu_time::cpu_seconds,
    error::Result,
    http_load::{self, Request},
    kafka::{create_topic, raw_producer},
    progress,
    redis_peer::{missing, run_benchmark, which},
    report::Row,
    serve_child::serve_resp,
    throughput::{produce_keys, send},
};

const STOP_GRACE: Duration = Duration::from_secs(30);
/// redis-benchmark's and the HTTP load's client count.
const CLIENTS: usize = 50;

/// CPU seconds used by each process in `pids` while `work` runs.
async fn cpu_during<T>(pids: &[u32], work: impl Future<Output = Result<T>>) -> Result<Vec<f64>> {
    let before = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<Vec<_>>>()?;
    work.await?;
    let after = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<Vec<_>>>()?;
    Ok(after.iter().zip(before).map(|(a, b)| a - b).collect())
}

/// CPU ms per 1,000 writes.
fn per_thousand(cpu_seconds: f64, writes: usize) -> f64 {
    cpu_seconds * 1e6 / writes as f64
}

pub async fn measure(kafkv: &Path, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    if which("redis-benchmark").is_none() {
        return Err(missing("redis-benchmark", "cpu"));
    }
    let writes = config.cpu_writes;
    let value = Bytes::from(vec![b'v'; config.value_bytes]);
    let dir = std::env::temp_dir().join(format!("kafkv-bench-cpu-{run_id}"));
    std::fs::create_dir_all(&dir)?;

    progress("cpu: kafkv broker, and kafkv serve --brokers on it");
    let broker =
        BrokerProcess::start_with_args(kafkv, Duration::from_secs(3600), &config.broker_flags())
            .await?;
    let broker_pid = broker.pid().expect("the broker is running");
    let brokers = broker.address();
    let resp_port = free_port()?;
    let topic = format!("bench-cpu-{run_id}");
    let served = serve_resp(kafkv, &dir, &brokers, &topic, resp_port).await?;
    let pids = [served.pid(), broker_pid];

    let mut measured = Vec::new();
    for pipeline in ["1", "16"] {
        progress(format!(
            "cpu: RESP SET x {writes}, 50 clients, -P {pipeline}"
        ));
        let cpu = cpu_during(&pids, run_benchmark(resp_port, "set", writes, pipeline)).await?;
        let in_flight = CLIENTS * pipeline.parse::<usize>().unwrap_or(1);
        measured.push((
            format!("RESP SET, 50 clients, -P {pipeline}"),
            cpu,
            in_flight,
        ));
    }
    progress(format!("cpu: HTTP PUT x {writes}, 50 connections"));
    let http = served.http_address();
    let body = value.clone();
    let cpu = cpu_during(
        &pids,
        http_load::generate(http, CLIENTS, writes, move |i, _| Request {
            path: http_load::key_path(i),
            body: Some(body.clone()),
        }),
    )
    .await?;
    measured.push(("HTTP PUT, 50 connections".to_owned(), cpu, CLIENTS));
    tokio::task::spawn_blocking(move || served.terminate(STOP_GRACE))
        .await
        .expect("terminate does not panic")?;

    let mut rows = Vec::new();
    for (label, cpu, in_flight) in measured {
        progress(format!(
            "cpu: raw producer x {writes}, {in_flight} in flight"
        ));
        let (raw_self, raw_broker) =
            raw_produce_cpu(&brokers, run_id, broker_pid, in_flight, writes, &value).await?;
        let peer = format!("raw producer ({in_flight} in flight)");
        rows.push(Row {
            measurement: format!("CPU per 1,000 writes, kafkv process: {label}"),
            unit: "CPU-ms".into(),
            kafkv: per_thousand(cpu[0], writes),
            peer: peer.clone(),
            raw: per_thousand(raw_self, writes),
        });
        rows.push(Row {
            measurement: format!("CPU per 1,000 writes, broker process: {label}"),
            unit: "CPU-ms".into(),
            kafkv: per_thousand(cpu[1], writes),
            peer,
            raw: per_thousand(raw_broker, writes),
        });
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

/// This process's and the broker's CPU seconds while a raw producer writes
/// `writes` records with `in_flight` outstanding, on a topic of its own.
async fn raw_produce_cpu(
    brokers: &str,
    run_id: u32,
    broker_pid: u32,
    in_flight: usize,
    writes: usize,
    value: &Bytes,
) -> Result<(f64, f64)> {
    let topic = format!("bench-cpu-raw-{in_flight}-{run_id}");
    create_topic(brokers, &topic).await?;
    let producer = raw_producer(brokers)?;
    send(&producer, &topic, "warm-up", value).await?;
    let topic = topic.as_str();
    let cpu = cpu_during(
        &[std::process::id(), broker_pid],
        produce_keys(&producer, topic, writes, in_flight, value),
    )
    .await?;
    Ok((cpu[0], cpu[1]))
}
