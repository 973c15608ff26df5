//! Bootstrap and tail: one consumer, with every partition assigned (no
//! consumer group), reads the topic from the view's positions and applies it
//! to the [`View`] for the life of the store.
//!
//! Where to start and where bootstrap ends are decided before, by recovery
//! (`recovery.rs`); the reader only consumes. The view's bootstrap is
//! complete when every partition's position reached the end offset captured
//! at start, or the consumer reported end-of-partition (which covers offsets
//! that never arrive, such as a trailing transaction marker). The consumer
//! runs on its own thread: librdkafka's poll blocks, and the request path
//! must never wait behind it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use rdkafka::{
    ClientContext, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::KafkaError,
};
use tracing::{info, warn};

use crate::{
    config::StoreConfig,
    error::Result,
    record::{self, Decoded},
    state::{Event, View},
};

/// How often bootstrap progress is logged.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How often librdkafka reports statistics (the high watermarks).
const STATISTICS_EVERY: Duration = Duration::from_secs(1);

/// Each partition's high watermark as the consumer last heard it:
/// `(partition, offset)` pairs.
pub type HighWatermarks = Arc<Mutex<Vec<(i32, i64)>>>;

/// The running consumer thread.
pub struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    high_watermarks: HighWatermarks,
}

impl Reader {
    /// Assigns every partition of `config.topic` from the view's positions
    /// and starts applying records to it.
    pub fn start(config: &StoreConfig, view: Arc<View>) -> Result<Reader> {
        let mut settings = super::client::assign_only_consumer(config);
        settings.push((
            "statistics.interval.ms",
            STATISTICS_EVERY.as_millis().to_string(),
        ));
        let consumer: BaseConsumer<WatermarkContext> =
            super::client::client_config(config, &settings)
                .create_with_context(WatermarkContext::default())?;
        let high_watermarks = consumer.context().high.clone();
        let progress = view.progress();
        let topic = &config.topic;
        let mut assignment = TopicPartitionList::new();
        for (p, position) in progress.positions.iter().enumerate() {
            let offset = match *position {
                0 => Offset::Beginning,
                position => Offset::Offset(position),
            };
            assignment.add_partition_offset(topic, p as i32, offset)?;
        }
        consumer.assign(&assignment)?;
        let targets = &progress.bootstrap.targets;
        info!(%topic, partitions = targets.len(), from = ?progress.positions, end_offsets = ?targets, "bootstrap: reading the topic up to these end offsets");
        let total: i64 = targets
            .iter()
            .zip(&progress.positions)
            .map(|(target, position)| (target - position).max(0))
            .sum();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("kafkv-reader".into())
                .spawn({
                    let topic = topic.clone();
                    move || consume(consumer, &topic, &view, &stop, total)
                })?
        };
        Ok(Reader {
            stop,
            thread: Some(thread),
            high_watermarks,
        })
    }

    /// Each partition's high watermark from the consumer's latest statistics.
    pub fn high_watermarks(&self) -> HighWatermarks {
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

/// Logs `error` unless the same text was logged in the last 30 s:
/// librdkafka retries on its own, and a retry loop must not flood the log.
struct Quiet(Option<(String, Instant)>);

impl Quiet {
    fn should_log(&mut self, error: &impl std::fmt::Display) -> bool {
        let text = error.to_string();
        let repeat = self
            .0
            .as_ref()
            .is_some_and(|(last, at)| *last == text && at.elapsed() < Duration::from_secs(30));
        if !repeat {
            self.0 = Some((text, Instant::now()));
        }
        !repeat
    }
}

/// The ready rule (docs/rmw.md): the consumer skipped offsets of `gaps`
/// (compaction removed them), so each of those partitions is not ready until
/// it reaches the end offset as of now, which holds every repair of what was
/// removed. Asks the broker until it answers or the reader stops.
fn retarget_after_gaps(
    consumer: &BaseConsumer<WatermarkContext>,
    topic: &str,
    view: &View,
    mut gaps: Vec<i32>,
    stop: &AtomicBool,
) {
    gaps.sort_unstable();
    gaps.dedup();
    for partition in gaps {
        loop {
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
                Ok((_low, high)) => {
                    view.retarget(partition, high);
                    break;
                }
                Err(error) => {
                    warn!(%error, partition, "could not learn the end offset after a compaction gap; retrying");
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

fn consume(
    consumer: BaseConsumer<WatermarkContext>,
    topic: &str,
    view: &View,
    stop: &AtomicBool,
    total: i64,
) {
    let started = Instant::now();
    // Checked after the first poll even for an empty topic, so the
    // completion is logged and measured in every case.
    let mut bootstrapped = false;
    let mut last_report = Instant::now();
    let mut quiet = Quiet(None);
    let mut events = Vec::with_capacity(View::MAX_BATCH);

    while !stop.load(Ordering::Acquire) {
        let mut wait = Duration::from_millis(100);
        while events.len() < View::MAX_BATCH {
            let Some(polled) = consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match polled {
                Ok(message) => events.push(match record::decode(&message) {
                    Decoded::Record(record) => Event::Record(record),
                    Decoded::NoKey { partition, offset } => Event::Skipped { partition, offset },
                    Decoded::Unsupported {
                        partition,
                        offset,
                        header,
                    } => {
                        tracing::error!(
                            partition,
                            offset,
                            %header,
                            "skipping a record this version cannot apply: a kafkv header it \
                             does not know is from a newer kafkv (upgrade this instance); a key \
                             of 512 MiB or more is beyond what kafkv holds"
                        );
                        metrics::counter!("kafkv_records_unsupported_total").increment(1);
                        Event::Skipped { partition, offset }
                    }
                }),
                Err(KafkaError::PartitionEOF(partition)) => {
                    events.push(Event::EndOfPartition(partition));
                }
                Err(error) => {
                    if quiet.should_log(&error) {
                        warn!(%error, "consumer error (the client retries)");
                    }
                }
            }
        }
        let applied = events
            .iter()
            .filter(|e| matches!(e, Event::Record(_)))
            .count();
        let gaps = match view.apply(&mut events) {
            Ok(applied) => applied.gaps,
            Err(error) => {
                // Nothing of the batch was applied; keep it and retry, since
                // skipping it would lose records. The disk may come back (space
                // freed); meanwhile the view serves what it has and lags.
                if quiet.should_log(&error) {
                    tracing::error!(%error, "could not apply a batch to the view; retrying");
                }
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        if !gaps.is_empty() {
            retarget_after_gaps(&consumer, topic, view, gaps, stop);
        }
        metrics::counter!("kafkv_records_applied_total").increment(applied as u64);

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
    high: HighWatermarks,
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
