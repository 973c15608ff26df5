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
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::KafkaError,
};
use tracing::{info, warn};

use crate::{
    config::StoreConfig,
    error::Result,
    state::{Event, Record, View},
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
    /// Captures the end offsets, assigns every partition from the beginning and
    /// starts applying records to a new view.
    pub async fn start(config: &StoreConfig, partitions: i32) -> Result<(Arc<View>, Reader)> {
        let mut settings = assign_only_consumer(config);
        settings.push(("statistics.interval.ms", LAG_EVERY.as_millis().to_string()));
        let consumer: BaseConsumer<WatermarkContext> = super::client_config(config, &settings)
            .create_with_context(WatermarkContext::default())?;
        let high_watermarks = consumer.context().high.clone();
        let topic = config.topic.clone();
        let timeout = config.startup_timeout;
        let (consumer, targets) = tokio::task::spawn_blocking(move || {
            let targets = end_offsets(&consumer, &topic, partitions, timeout)?;
            let mut assignment = TopicPartitionList::new();
            for p in 0..partitions {
                assignment.add_partition_offset(&topic, p, Offset::Beginning)?;
            }
            consumer.assign(&assignment)?;
            Ok::<_, KafkaError>((consumer, targets))
        })
        .await
        .expect("assignment task panicked")?;

        let total: i64 = targets.iter().sum();
        info!(topic = %config.topic, partitions, end_offsets = ?targets, "bootstrap: reading the topic up to these end offsets");
        let view = Arc::new(View::new(targets));
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

/// Each partition's high watermark: the offset the next record will get.
pub fn end_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<Vec<i64>, KafkaError> {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, timeout)
                .map(|(_, high)| high)
        })
        .collect()
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
                    events.push(match message.key() {
                        Some(key) => Event::Record(Record {
                            partition,
                            offset,
                            key: key.into(),
                            value: message.payload().map(Into::into),
                        }),
                        None => Event::Skipped { partition, offset },
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
        view.apply(std::mem::take(&mut events));
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
