//! Change streams (`Store::watch`), in this process on the bench's broker:
//!
//! - **Latency**: `--writes` sequential puts through instance A, each
//!   followed by waiting until instance B applied it. A watcher on A and one
//!   on B record when each write's event arrives. Reported from the put's
//!   acknowledgement: the event on A beside the record applied on A, the
//!   event on B beside a plain read on B seeing it (B applied it); and the
//!   event on B from B applying the record (the goal: under 1 ms).
//! - **Fan-out**: `--watch-writes` puts with 64 in flight on a fresh topic,
//!   with 0, 1 and 100 watchers of every key: write throughput, and events
//!   per second delivered to all watchers together (the goal: 100 watchers
//!   cost writes under 10% of their throughput).
//! - **Memory per idle watcher**: this process's RSS before and after
//!   opening 10,000 watches that receive nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use kafkv::{
    Store,
    watch::{WatchEvent, WatchOptions},
};
use tokio::sync::mpsc;

use crate::{
    BenchConfig,
    error::{Error, Result},
    kafka::store_config,
    progress,
    report::{NO_PEER, Row, percentile},
};

const IN_FLIGHT: usize = 64;
const IDLE_WATCHERS: usize = 10_000;
const PATIENCE: Duration = Duration::from_secs(120);

pub async fn measure(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    let mut rows = latency(brokers, run_id, config).await?;
    rows.extend(fan_out(brokers, run_id, config).await?);
    rows.push(idle_memory(brokers, run_id).await?);
    Ok(rows)
}

/// Forwards `(write number, arrival)` for each put event whose key is
/// `w-<n>`, until the watch ends.
fn record_arrivals(mut watch: kafkv::watch::Watch) -> mpsc::UnboundedReceiver<(usize, Instant)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = watch.next().await {
            let arrived = Instant::now();
            if let WatchEvent::Put { key, .. } = event {
                let number = std::str::from_utf8(&key)
                    .ok()
                    .and_then(|k| k.strip_prefix("w-"))
                    .and_then(|n| n.parse().ok());
                if let Some(number) = number
                    && sender.send((number, arrived)).is_err()
                {
                    return;
                }
            }
        }
    });
    receiver
}

async fn arrivals(
    receiver: &mut mpsc::UnboundedReceiver<(usize, Instant)>,
    n: usize,
) -> Result<Vec<Instant>> {
    let mut at = vec![None; n];
    let mut seen = 0;
    while seen < n {
        let (number, arrived) = tokio::time::timeout(PATIENCE, receiver.recv())
            .await
            .map_err(|_| Error::Failed("watch: an event did not arrive".into()))?
            .ok_or_else(|| Error::Failed("watch: the watch ended".into()))?;
        if let Some(slot) = at.get_mut(number)
            && slot.is_none()
        {
            *slot = Some(arrived);
            seen += 1;
        }
    }
    Ok(at.into_iter().map(|t| t.expect("all seen")).collect())
}

/// Waits until `store` applied `(partition, offset)`: whether it did, and
/// when the wait returned (a plain read there sees the record from then on).
async fn applied_at(store: &Store, partition: i32, offset: i64) -> (bool, Instant) {
    let ok = store.wait_for_offset(partition, offset, PATIENCE).await;
    (ok, Instant::now())
}

async fn latency(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    let writes = config.writes;
    progress(format!(
        "watch: latency over {writes} sequential writes, two instances"
    ));
    let topic = format!("bench-watch-latency-{run_id}");
    let here = Store::open(store_config(brokers, &topic)).await?;
    let there = Store::open(store_config(brokers, &topic)).await?;
    let watch_error = |e: kafkv::watch::WatchError| Error::Failed(format!("watch: {e}"));
    let mut on_here = record_arrivals(
        here.watch(WatchOptions::default())
            .await
            .map_err(watch_error)?,
    );
    let mut on_there = record_arrivals(
        there
            .watch(WatchOptions::default())
            .await
            .map_err(watch_error)?,
    );
    let value = Bytes::from(vec![b'v'; config.value_bytes]);
    let mut acked = Vec::with_capacity(writes);
    let mut applied_here = Vec::with_capacity(writes);
    let mut applied_there = Vec::with_capacity(writes);
    for i in 0..writes {
        let receipt = here.put(format!("w-{i}").as_bytes(), value.clone()).await?;
        acked.push(Instant::now());
        let ((ok_here, at_here), (ok_there, at_there)) = tokio::join!(
            applied_at(&here, receipt.partition, receipt.offset),
            applied_at(&there, receipt.partition, receipt.offset),
        );
        if !(ok_here && ok_there) {
            return Err(Error::Failed(
                "watch: a write was not applied in time".into(),
            ));
        }
        applied_here.push(at_here);
        applied_there.push(at_there);
    }
    let events_here = arrivals(&mut on_here, writes).await?;
    let events_there = arrivals(&mut on_there, writes).await?;
    here.close().await;
    there.close().await;

    let since = |from: &[Instant], to: &[Instant]| -> Vec<Duration> {
        from.iter()
            .zip(to)
            .map(|(f, t)| t.saturating_duration_since(*f))
            .collect()
    };
    let event_here = since(&acked, &events_here);
    let event_there = since(&acked, &events_there);
    let visible_there = since(&acked, &applied_there);
    let applied = since(&acked, &applied_here);
    let applied_to_event = since(&applied_there, &events_there);
    let mut rows = Vec::new();
    for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
        rows.push(Row {
            measurement: format!("watch: record applied → event, other instance, {name}"),
            unit: "ms".into(),
            kafkv: percentile(&applied_to_event, q),
            peer: NO_PEER.into(),
            raw: f64::NAN,
        });
        rows.push(Row {
            measurement: format!("watch: write ack → event, same instance, {name}"),
            unit: "ms".into(),
            kafkv: percentile(&event_here, q),
            peer: "applied here".into(),
            raw: percentile(&applied, q),
        });
        rows.push(Row {
            measurement: format!("watch: write ack → event, other instance, {name}"),
            unit: "ms".into(),
            kafkv: percentile(&event_there, q),
            peer: "plain read there".into(),
            raw: percentile(&visible_there, q),
        });
    }
    Ok(rows)
}

/// Puts `writes` keys with [`IN_FLIGHT`] outstanding on a fresh topic while
/// `watchers` watches each wait for all of them: (writes/s, events/s).
async fn fan_out_once(
    brokers: &str,
    topic: &str,
    watchers: usize,
    writes: usize,
    value: &Bytes,
) -> Result<(f64, f64)> {
    let store = Store::open(store_config(brokers, topic)).await?;
    let mut waiting = Vec::new();
    for _ in 0..watchers {
        let mut watch = store
            .watch(WatchOptions::default())
            .await
            .map_err(|e| Error::Failed(format!("watch: {e}")))?;
        waiting.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < writes {
                match watch.next().await {
                    Some(WatchEvent::Put { .. }) => seen += 1,
                    Some(WatchEvent::Lagged { .. }) | None => return None,
                    Some(_) => {}
                }
            }
            Some(Instant::now())
        }));
    }
    let store = Arc::new(store);
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..writes)
        .map(|i| {
            let (store, value) = (store.clone(), value.clone());
            async move { store.put(format!("w-{i}").as_bytes(), value).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let written = started.elapsed();
    for result in results {
        result?;
    }
    let mut last_event = started;
    for waiter in waiting {
        let done = tokio::time::timeout(PATIENCE, waiter)
            .await
            .map_err(|_| Error::Failed("watch: a watcher did not see every write".into()))?
            .expect("watcher task")
            .ok_or_else(|| Error::Failed("watch: a watcher lagged during the fan-out".into()))?;
        last_event = last_event.max(done);
    }
    store.close().await;
    let events = (watchers * writes) as f64;
    let events_per_sec = if watchers == 0 {
        f64::NAN
    } else {
        events / last_event.duration_since(started).as_secs_f64()
    };
    Ok((writes as f64 / written.as_secs_f64(), events_per_sec))
}

async fn fan_out(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    let writes = config.watch_writes;
    let value = Bytes::from(vec![b'v'; config.value_bytes]);
    let mut measured = Vec::new();
    for watchers in [0, 1, 100] {
        progress(format!(
            "watch: {writes} writes, {IN_FLIGHT} in flight, {watchers} watchers"
        ));
        let topic = format!("bench-watch-fan-out-{watchers}-{run_id}");
        measured.push(fan_out_once(brokers, &topic, watchers, writes, &value).await?);
    }
    let (none, _) = measured[0];
    let mut rows = Vec::new();
    for (watchers, (writes_per_sec, events_per_sec)) in [1, 100].into_iter().zip(&measured[1..]) {
        rows.push(Row {
            measurement: format!(
                "watch: writes/s with {watchers} watcher(s), {IN_FLIGHT} in flight"
            ),
            unit: "writes/s".into(),
            kafkv: *writes_per_sec,
            peer: "no watchers".into(),
            raw: none,
        });
        rows.push(Row {
            measurement: format!("watch: events/s delivered to {watchers} watcher(s)"),
            unit: "events/s".into(),
            kafkv: *events_per_sec,
            peer: NO_PEER.into(),
            raw: f64::NAN,
        });
    }
    Ok(rows)
}

/// This process's resident memory, from `/proc/self/status`.
fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| Error::Failed("no VmRSS in /proc/self/status".into()))
}

async fn idle_memory(brokers: &str, run_id: u32) -> Result<Row> {
    progress(format!("watch: memory of {IDLE_WATCHERS} idle watches"));
    let store = Store::open(store_config(brokers, &format!("bench-watch-idle-{run_id}"))).await?;
    // The first watch switches the recent window on: not per watcher.
    let first = store
        .watch(WatchOptions::default())
        .await
        .map_err(|e| Error::Failed(format!("watch: {e}")))?;
    let before = rss_bytes()?;
    let mut watches = Vec::with_capacity(IDLE_WATCHERS);
    for _ in 0..IDLE_WATCHERS {
        watches.push(
            store
                .watch(WatchOptions::default())
                .await
                .map_err(|e| Error::Failed(format!("watch: {e}")))?,
        );
    }
    let after = rss_bytes()?;
    drop((first, watches));
    store.close().await;
    Ok(Row {
        measurement: "watch: memory per idle watcher (RSS delta)".into(),
        unit: "bytes".into(),
        kafkv: (after.saturating_sub(before)) as f64 / IDLE_WATCHERS as f64,
        peer: NO_PEER.into(),
        raw: f64::NAN,
    })
}
