//! Bootstrap and tail: one consumer, with every partition assigned (no
//! consumer group), reads the topic from the beginning and applies it to the
//! [`View`] for the life of the store.
//!
//! Start-up captures each partition's end offset *before* assigning, so the
//! view knows where its bootstrap ends; it is complete when every partition's
//! position reached its captured end, or the consumer reported end-of-partition
//! (which covers offsets that never arrive, such as a trailing transaction
//! marker). The consumer runs on its own thread: librdkafka's poll blocks, and
//! the request path must never wait behind it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use parking_lot::Mutex;
use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::KafkaError,
};
use tracing::{info, warn};

use crate::{
    config::{StateConfig, StoreConfig},
    error::Result,
    log::topic::TopicInfo,
    state::{Checkpoint, Event, Record, Table, View},
};

/// How often bootstrap progress is logged and lag is published.
const REPORT_EVERY: Duration = Duration::from_secs(5);
const LAG_EVERY: Duration = Duration::from_secs(1);

/// The running consumer thread.
pub struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    high_watermarks: Arc<Mutex<Vec<(i32, i64)>>>,
}

impl Reader {
    /// Captures the end offsets, opens the view's table (resuming from a
    /// disk checkpoint where one is valid), assigns every partition from
    /// where the table stops and starts applying records.
    pub async fn start(config: &StoreConfig, topic: &TopicInfo) -> Result<(Arc<View>, Reader)> {
        let mut settings = assign_only_consumer(config);
        settings.push(("statistics.interval.ms", LAG_EVERY.as_millis().to_string()));
        let consumer: BaseConsumer<WatermarkContext> = super::client_config(config, &settings)
            .create_with_context(WatermarkContext::default())?;
        let high_watermarks = consumer.context().high.clone();
        let (config_copy, info) = (config.clone(), topic.clone());
        let (consumer, view) = tokio::task::spawn_blocking(move || {
            let (config, topic) = (&config_copy, &config_copy.topic);
            let watermarks = watermarks(&consumer, topic, info.partitions, config.startup_timeout)?;
            let targets: Vec<i64> = watermarks.iter().map(|(_, high)| *high).collect();
            let (table, positions) = open_table(config, &info, &watermarks)?;
            let mut assignment = TopicPartitionList::new();
            for (p, position) in positions.iter().enumerate() {
                let offset = match *position {
                    0 => Offset::Beginning,
                    position => Offset::Offset(position),
                };
                assignment.add_partition_offset(topic, p as i32, offset)?;
            }
            consumer.assign(&assignment)?;
            info!(%topic, partitions = info.partitions, from = ?positions, end_offsets = ?targets, "bootstrap: reading the topic up to these end offsets");
            Ok::<_, crate::Error>((consumer, View::with_table(table, positions, targets)))
        })
        .await
        .expect("assignment task panicked")?;

        let view = Arc::new(view);
        let progress = view.progress();
        let total: i64 = progress
            .bootstrap
            .targets
            .iter()
            .zip(&progress.positions)
            .map(|(target, position)| (target - position).max(0))
            .sum();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (view, stop) = (view.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kafkv-reader".into())
                .spawn(move || consume(consumer, &view, &stop, total))?
        };
        Ok((
            view,
            Reader {
                stop,
                thread: Some(thread),
                high_watermarks,
            },
        ))
    }

    /// Each partition's high watermark from the consumer's latest statistics.
    pub fn high_watermarks(&self) -> Arc<Mutex<Vec<(i32, i64)>>> {
        self.high_watermarks.clone()
    }

    /// Stops the consumer thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Settings for a consumer that assigns partitions itself and reads them
/// from the beginning: kafkv's reader, and the benchmark's raw baseline, which
/// must fetch exactly as kafkv does.
pub(crate) fn assign_only_consumer(config: &StoreConfig) -> Vec<(&'static str, String)> {
    let fetch_bytes = super::max_record_bytes(config) * 4;
    vec![
        // librdkafka's assign() needs a group id; kafkv never joins the
        // group or commits to it: positions come from the view.
        (
            "group.id",
            format!("kafkv-{}-{}", config.topic, std::process::id()),
        ),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("enable.partition.eof", "true".into()),
        ("auto.offset.reset", "earliest".into()),
        (
            "fetch.wait.max.ms",
            config.fetch_wait.as_millis().to_string(),
        ),
        ("max.partition.fetch.bytes", fetch_bytes.to_string()),
        ("fetch.max.bytes", (fetch_bytes * 4).to_string()),
        (
            "receive.message.max.bytes",
            (fetch_bytes * 4 + 1024 * 1024).to_string(),
        ),
    ]
}

/// Each partition's (log start, high watermark).
fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<Vec<(i64, i64)>, KafkaError> {
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, timeout))
        .collect()
}

/// The view's table and the offsets it holds everything below: a valid disk
/// checkpoint's, or each partition's log start for memory and for a disk
/// state being rebuilt (nothing below it exists, and starting there keeps an
/// empty partition whose records were deleted at its end).
fn open_table(
    config: &StoreConfig,
    topic: &TopicInfo,
    watermarks: &[(i64, i64)],
) -> Result<(Table, Vec<i64>)> {
    let start: Vec<i64> = watermarks.iter().map(|(low, _)| (*low).max(0)).collect();
    let StateConfig::Disk(dir) = &config.state else {
        return Ok((Table::memory(), start));
    };
    let path = StateConfig::disk_path(dir, &config.topic);
    let (table, checkpoint) = Table::open_disk(&path)?;
    let path = path.display();
    match checkpoint {
        None => info!(%path, "no disk checkpoint yet: reading the whole topic"),
        Some(checkpoint) => {
            match stale_checkpoint(&checkpoint, topic, watermarks, SystemTime::now()) {
                None => {
                    info!(%path, positions = ?checkpoint.positions, "resuming from the disk checkpoint");
                    return Ok((table, checkpoint.positions));
                }
                Some(reason) => {
                    warn!(%path, %reason, "rebuilding the disk state from the beginning of the topic");
                    metrics::counter!("kafkv_state_rebuilds_total").increment(1);
                }
            }
        }
    }
    table.reset(&Checkpoint {
        topic: config.topic.clone(),
        topic_id: topic.id.clone(),
        positions: start.clone(),
        saved_at: None,
    })?;
    Ok((table, start))
}

/// Why resuming from `checkpoint` could miss or resurrect records, if it
/// could: the topic is not the one it was taken of, or the log no longer
/// holds every record (and tombstone) after it.
pub fn stale_checkpoint(
    checkpoint: &Checkpoint,
    topic: &TopicInfo,
    watermarks: &[(i64, i64)],
    now: SystemTime,
) -> Option<String> {
    match (&checkpoint.topic_id, &topic.id) {
        (Some(then), Some(now)) if then != now => {
            return Some(format!(
                "the topic was deleted and recreated (topic id {then} in the checkpoint, {now} now)"
            ));
        }
        (Some(then), None) => {
            return Some(format!(
                "the checkpoint is of topic id {then}, and the cluster did not say the topic's id \
                 now, so a recreated topic cannot be ruled out"
            ));
        }
        _ => {}
    }
    if checkpoint.positions.len() != watermarks.len() {
        return Some(format!(
            "the partition count changed from {} to {}",
            checkpoint.positions.len(),
            watermarks.len()
        ));
    }
    for (p, (position, (low, high))) in checkpoint.positions.iter().zip(watermarks).enumerate() {
        if position > high {
            return Some(format!(
                "partition {p}: the checkpoint is at offset {position}, beyond the end offset \
                 {high} (was the topic recreated or truncated?)"
            ));
        }
        if position < low {
            return Some(format!(
                "partition {p}: the checkpoint is at offset {position}, below the log start \
                 offset {low}: records in between were deleted"
            ));
        }
    }
    if let Some(age) = checkpoint
        .saved_at
        .and_then(|saved| now.duration_since(saved).ok())
        && age >= topic.delete_retention
    {
        return Some(format!(
            "the checkpoint is {}s old, beyond the topic's delete.retention.ms ({}s): \
             compaction may have removed tombstones written since",
            age.as_secs(),
            topic.delete_retention.as_secs()
        ));
    }
    None
}

/// Each partition's high watermark: the offset the next record will get.
pub fn end_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<Vec<i64>, KafkaError> {
    Ok(watermarks(consumer, topic, partitions, timeout)?
        .into_iter()
        .map(|(_, high)| high)
        .collect())
}

fn consume(consumer: BaseConsumer<WatermarkContext>, view: &View, stop: &AtomicBool, total: i64) {
    let started = Instant::now();
    // Checked after the first poll even for an empty topic, so the
    // completion is logged and measured in every case.
    let mut bootstrapped = false;
    let mut last_report = Instant::now();
    let mut last_lag: Option<Instant> = None;
    let mut last_error: Option<(String, Instant)> = None;
    let mut events = Vec::with_capacity(View::MAX_BATCH);

    while !stop.load(Ordering::Acquire) {
        let mut wait = Duration::from_millis(100);
        while events.len() < View::MAX_BATCH {
            let Some(polled) = consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match polled {
                Ok(message) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    events.push(match (message.key(), message.payload()) {
                        (Some(key), Some(value)) => {
                            Event::Record(Record::put(partition, offset, key, value))
                        }
                        (Some(key), None) => {
                            Event::Record(Record::tombstone(partition, offset, key))
                        }
                        (None, _) => Event::Skipped { partition, offset },
                    });
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    events.push(Event::EndOfPartition(partition));
                }
                Err(error) => {
                    // librdkafka retries on its own; say so once a while, not per poll.
                    let text = error.to_string();
                    let repeat = last_error.as_ref().is_some_and(|(last, at)| {
                        *last == text && at.elapsed() < Duration::from_secs(30)
                    });
                    if !repeat {
                        warn!(%error, "consumer error (the client retries)");
                        last_error = Some((text, Instant::now()));
                    }
                }
            }
        }
        let applied = events
            .iter()
            .filter(|e| matches!(e, Event::Record(_)))
            .count();
        if let Err(error) = view.apply(&mut events) {
            // Nothing of the batch was applied; keep it and retry, since
            // skipping it would lose records. The disk may come back (space
            // freed); meanwhile the view serves what it has and lags.
            let text = error.to_string();
            let repeat = last_error
                .as_ref()
                .is_some_and(|(last, at)| *last == text && at.elapsed() < Duration::from_secs(30));
            if !repeat {
                tracing::error!(%error, "could not apply a batch to the view; retrying");
                last_error = Some((text, Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        metrics::counter!("kafkv_records_applied_total").increment(applied as u64);

        if last_lag.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            publish_offsets(consumer.context(), view);
            last_lag = Some(Instant::now());
        }
        if !bootstrapped {
            let progress = view.progress();
            if progress.bootstrap.is_done() {
                bootstrapped = true;
                let secs = started.elapsed().as_secs_f64();
                metrics::gauge!("kafkv_bootstrap_seconds").set(secs);
                info!(
                    records = progress.records_applied,
                    seconds = format!("{secs:.3}"),
                    records_per_sec = (progress.records_applied as f64 / secs.max(1e-9)) as u64,
                    "bootstrap complete"
                );
            } else if last_report.elapsed() >= REPORT_EVERY {
                last_report = Instant::now();
                let done: i64 = progress
                    .positions
                    .iter()
                    .zip(&progress.bootstrap.targets)
                    .map(|(position, target)| (*position).min(*target))
                    .sum();
                let secs = started.elapsed().as_secs_f64();
                info!(
                    percent = format!("{:.1}", 100.0 * done as f64 / total.max(1) as f64),
                    records = progress.records_applied,
                    records_per_sec = (progress.records_applied as f64 / secs) as u64,
                    "bootstrapping"
                );
            }
        }
    }
    // A clean stop leaves a durable checkpoint, so the next start resumes
    // from exactly here.
    if let Err(error) = view.sync() {
        tracing::error!(%error, "could not make the disk checkpoint durable");
    }
}

/// Keeps the high watermarks from librdkafka's periodic statistics, so lag
/// is known without a broker round trip.
#[derive(Default)]
struct WatermarkContext {
    high: Arc<Mutex<Vec<(i32, i64)>>>,
}

impl ClientContext for WatermarkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End-of-partition is how the consumer says it caught up; the poll loop
        // handles it. librdkafka also reports it here, where it is not an error.
        let end_of_partition = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !end_of_partition {
            tracing::error!(%error, reason, "kafka consumer error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let high = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
            .map(|p| (p.partition, p.hi_offset))
            .collect();
        *self.high.lock() = high;
    }
}

impl ConsumerContext for WatermarkContext {}

/// Per-partition applied offset and lag, and the key count.
fn publish_offsets(context: &WatermarkContext, view: &View) {
    let progress = view.progress();
    for (p, position) in progress.positions.iter().enumerate() {
        metrics::gauge!("kafkv_applied_offset", "partition" => p.to_string()).set(*position as f64);
    }
    for (p, high) in context.high.lock().iter() {
        if let Some(position) = progress.positions.get(*p as usize) {
            metrics::gauge!("kafkv_partition_lag", "partition" => p.to_string())
                .set((high - position).max(0) as f64);
        }
    }
    metrics::gauge!("kafkv_keys").set(view.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(id: Option<&str>) -> TopicInfo {
        TopicInfo {
            partitions: 2,
            id: id.map(Into::into),
            delete_retention: Duration::from_secs(3600),
        }
    }

    fn checkpoint(
        id: Option<&str>,
        positions: Vec<i64>,
        age: Duration,
        now: SystemTime,
    ) -> Checkpoint {
        Checkpoint {
            topic: "t".into(),
            topic_id: id.map(Into::into),
            positions,
            saved_at: Some(now - age),
        }
    }

    #[test]
    fn a_checkpoint_within_the_log_of_the_same_topic_is_resumed() {
        let now = SystemTime::now();
        let fresh = checkpoint(Some("A"), vec![5, 0], Duration::from_secs(60), now);
        assert_eq!(
            stale_checkpoint(&fresh, &topic(Some("A")), &[(0, 9), (0, 0)], now),
            None
        );
        // Without ids on either side, offsets decide.
        let no_id = checkpoint(None, vec![9, 0], Duration::ZERO, now);
        assert_eq!(
            stale_checkpoint(&no_id, &topic(Some("A")), &[(0, 9), (0, 3)], now),
            None
        );
    }

    #[test]
    fn each_rebuild_trigger_is_named() {
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        let cases = [
            (
                checkpoint(Some("A"), vec![1, 1], minute, now),
                Some("B"),
                vec![(0, 5), (0, 5)],
                "recreated",
            ),
            (
                checkpoint(Some("A"), vec![1], minute, now),
                Some("A"),
                vec![(0, 5), (0, 5)],
                "partition count changed from 1 to 2",
            ),
            (
                checkpoint(Some("A"), vec![1, 7], minute, now),
                Some("A"),
                vec![(0, 5), (0, 5)],
                "partition 1: the checkpoint is at offset 7, beyond the end offset 5",
            ),
            (
                checkpoint(Some("A"), vec![3, 1], minute, now),
                Some("A"),
                vec![(4, 5), (0, 5)],
                "partition 0: the checkpoint is at offset 3, below the log start offset 4",
            ),
            (
                checkpoint(Some("A"), vec![1, 1], Duration::from_secs(7200), now),
                Some("A"),
                vec![(0, 5), (0, 5)],
                "delete.retention.ms",
            ),
        ];
        for (checkpoint, id, watermarks, expected) in cases {
            let reason = stale_checkpoint(&checkpoint, &topic(id), &watermarks, now)
                .unwrap_or_else(|| panic!("{checkpoint:?} against {watermarks:?} must be stale"));
            assert!(reason.contains(expected), "{reason}");
        }
    }
}
