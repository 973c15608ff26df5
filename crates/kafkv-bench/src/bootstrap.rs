//! Bootstrap: a topic of `--records` records (16-byte keys, `--value-bytes`
//! values; one record in ten overwrites an earlier key and one in a hundred
//! deletes one) read to its end by a plain librdkafka consumer with kafkv's
//! fetch settings, beside `Store::open` materializing it until ready; then
//! `--state disk`'s first start beside the same raw read, and its restart
//! with nothing changed beside the memory state's full replay.

use std::time::{Duration, Instant};

use kafkv::{StateConfig, Store};

use crate::{
    BenchConfig,
    error::{Error, Result},
    kafka::{produce_topic, raw_consume, store_config},
    progress,
    report::Row,
};

/// Returns the records produced and the rows.
pub async fn compare(
    brokers: &str,
    run_id: u32,
    config: &BenchConfig,
) -> Result<(usize, Vec<Row>)> {
    progress(format!("bootstrap: producing {} records", config.records));
    let topic = format!("bench-bootstrap-{run_id}");
    let produced = produce_topic(
        brokers,
        &topic,
        config.records,
        config.value_bytes,
        "bootstrap",
        |i| match i % 100 {
            99 => (i / 2, true),
            r if r % 10 == 9 => (i / 2, false),
            _ => (i, false),
        },
    )
    .await?;
    progress(format!(
        "bootstrap: produced {produced} records; raw consumer reading"
    ));
    let raw = raw_consume(brokers, &topic).await?;
    progress(format!(
        "bootstrap: raw consumer read {} records in {:.2}s; kafkv materializing",
        raw.0,
        raw.1.as_secs_f64()
    ));
    let started = Instant::now();
    let store = Store::open(store_config(brokers, &topic)).await?;
    let kafkv_secs = started.elapsed().as_secs_f64();
    let applied = store.progress().records_applied;
    store.close().await;
    let mut rows = vec![
        Row {
            measurement: format!("bootstrap of {produced} records (time to ready vs read to end)"),
            unit: "s".into(),
            kafkv: kafkv_secs,
            peer: "librdkafka".into(),
            raw: raw.1.as_secs_f64(),
        },
        Row {
            measurement: "bootstrap rate".into(),
            unit: "records/s".into(),
            kafkv: applied as f64 / kafkv_secs,
            peer: "librdkafka".into(),
            raw: raw.0 as f64 / raw.1.as_secs_f64(),
        },
    ];
    rows.extend(disk_restart(brokers, &topic, run_id, kafkv_secs, raw).await?);
    Ok((produced, rows))
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
    let mut config = store_config(brokers, topic);
    config.state = StateConfig::Disk(dir.clone());
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
        return Err(Error::Failed(format!(
            "the disk restart re-read {reread} records or changed the key count"
        )));
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
