//! The library API: [`Store::open`] a topic, then `get`/`put`/`delete`/`scan`.
//!
//! Writes go to Kafka and are acknowledged only once the broker acknowledged
//! them (`acks=all`); the acknowledged record is then handed to the view so this
//! instance reads it immediately. Reads are served from the view (in memory,
//! or on local disk with `--state disk`).
//!
//! Expiry (docs/expiry.md): [`Store::put_with`] writes a value with an
//! [`Expiry`], [`Store::expire`] and [`Store::persist`] change a live key's;
//! reads hide a key once its expiry passed, and a SWEEP record later
//! removes it from the topic.
//!
//! - `error.rs`: what each kind of operation can fail with.
//! - `status.rs`: one snapshot of positions, lag and key count for every
//!   front end's health and metrics.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

mod error;
pub(crate) mod repairer;
mod rmw;
mod status;
pub(crate) mod sweeper;

use bytes::Bytes;
use parking_lot::Mutex;
use tracing::info;

pub use error::{InputError, ReadError, WriteError};
pub use rmw::{Applied, MIN_TIMING_MARGIN, REPAIR_DEADLINE};
pub use status::{PartitionStatus, Status};

use crate::{
    config::StoreConfig,
    error::{Error, Result},
    log::{
        offsets::Offsets,
        reader::{HighWatermarks, Reader},
        topic,
        writer::Writer,
    },
    op::{Condition, Deadline, ExpireWhen, Op, SetExpiry},
    state::{View, now_ms},
    watch::{Watch, WatchContext, WatchError, WatchOptions, token::fingerprint},
};

pub use crate::{
    log::writer::Receipt,
    state::{Bootstrap, Change, ChangeBatch, ChangeReceiver, Progress, Versioned},
};

/// How a read is served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// From this instance's view as it is: this instance's own acknowledged
    /// writes are always visible; other instances' writes once consumed.
    #[default]
    Local,
    /// First wait until this instance applied every record up to the topic's
    /// end offsets as of the read, so any write acknowledged before it began,
    /// by any instance, is visible.
    Strong,
}

/// When a value written with [`Store::put_with`] expires. Expired keys are
/// absent to every read and every operation at once, and a SWEEP record
/// removes them from the topic soon after (docs/expiry.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expiry {
    /// Never: the put clears any expiry the key had, as Redis's plain `SET`.
    #[default]
    Never,
    /// This long after the record's timestamp (the broker's clock, so every
    /// instance agrees), in whole milliseconds rounded up. Zero is refused.
    After(Duration),
    /// At this time. A time already past by this machine's clock deletes
    /// the key instead, as Redis's `SET … PXAT` does.
    At(SystemTime),
    /// Whatever expiry the key has where the record lands in the log
    /// (Redis's `KEEPTTL`), none if it is absent: an operation record.
    Keep,
}

impl Expiry {
    /// The expiry a put of this kind leaves, as an operation carries it
    /// (`None`: none).
    pub fn to_set_expiry(self) -> Result<Option<SetExpiry>, InputError> {
        Ok(match self {
            Expiry::Never => None,
            Expiry::After(after) if after.is_zero() => return Err(InputError::InvalidExpiry),
            Expiry::After(after) => Some(SetExpiry::Until(after.into())),
            Expiry::At(at) => Some(SetExpiry::Until(at.into())),
            Expiry::Keep => Some(SetExpiry::Keep),
        })
    }
}

impl From<Duration> for Deadline {
    /// This long after the record's timestamp, rounded up to a whole
    /// millisecond (a non-zero duration never becomes "now"), saturating.
    fn from(after: Duration) -> Self {
        Deadline::In(ceil_ms(after))
    }
}

impl From<SystemTime> for Deadline {
    /// At this time, rounded down to a whole millisecond since the epoch
    /// (never later than asked), saturating.
    fn from(at: SystemTime) -> Self {
        Deadline::At(match at.duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
            Err(before) => ceil_ms(before.duration()).saturating_neg(),
        })
    }
}

/// `duration` in milliseconds, rounded up, saturating.
fn ceil_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// A handle to an open store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    config: StoreConfig,
    partitions: i32,
    /// The topic's identity in watch tokens.
    fingerprint: u64,
    /// The topic's `delete.retention.ms`: how old a watch token may be.
    delete_retention: Duration,
    view: Arc<View>,
    writer: Writer,
    /// Asks the brokers for end offsets on strong reads.
    offsets: Offsets,
    reader: Mutex<Option<Reader>>,
    /// The consumer's latest view of each partition's high watermark.
    high_watermarks: HighWatermarks,
    /// Writes sent and not yet answered, so shutdown can say what it drains.
    in_flight: AtomicUsize,
    /// Set by [`Store::close`]; writes after it are refused before producing.
    closed: AtomicBool,
    /// Why read-modify-write is refused on this topic, if it is.
    rmw_refusal: Option<String>,
}

impl Store {
    /// Opens the store and waits until it has read the topic up to the end
    /// offsets it saw at start.
    pub async fn open(config: StoreConfig) -> Result<Store> {
        let store = Store::start(config).await?;
        store.wait_ready().await?;
        Ok(store)
    }

    /// Checks (or creates) the topic and starts the bootstrap, without waiting
    /// for it to finish: see [`Store::wait_ready`] and [`Store::is_ready`].
    pub async fn start(config: StoreConfig) -> Result<Store> {
        let topic = topic::ensure(&config).await?;
        let partitions = topic.partitions;
        let writer = Writer::new(&config, partitions)?;
        let offsets = Offsets::new(&config, partitions)?;
        let view = Arc::new(crate::recovery::recover(&config, &topic, &offsets).await?);
        let reader = Reader::start(&config, view.clone())?;
        let high_watermarks = reader.high_watermarks();
        let rmw_refusal = rmw::timing_refusal(&config.topic, &topic);
        if let Some(refusal) = &rmw_refusal {
            tracing::warn!("{refusal}; plain puts and deletes work");
        }
        let store = Store {
            shared: Arc::new(Shared {
                fingerprint: fingerprint(&config.topic, topic.id.as_deref()),
                delete_retention: topic.delete_retention,
                config,
                partitions,
                view,
                writer,
                offsets,
                reader: Mutex::new(Some(reader)),
                high_watermarks,
                in_flight: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                rmw_refusal,
            }),
        };
        let (hints_tx, hints) = tokio::sync::mpsc::unbounded_channel();
        store.shared.view.set_repair_hints(hints_tx);
        tokio::spawn(repairer::run(Arc::downgrade(&store.shared), hints));
        tokio::spawn(sweeper::run(Arc::downgrade(&store.shared)));
        Ok(store)
    }

    /// Resolves once the bootstrap is complete.
    pub async fn wait_ready(&self) -> Result<()> {
        if self.shared.view.wait_bootstrapped().await {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    pub fn is_ready(&self) -> bool {
        self.shared.view.is_bootstrapped()
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    pub fn partitions(&self) -> i32 {
        self.shared.partitions
    }

    /// Applied offsets, records applied and bootstrap state.
    pub fn progress(&self) -> Progress {
        self.shared.view.progress()
    }

    /// Positions, lag, key count and readiness in one snapshot: what every
    /// front end reports about this instance.
    pub fn status(&self) -> Status {
        Status::new(
            &self.shared.config.topic,
            self.progress(),
            &self.shared.high_watermarks.lock(),
            self.len(),
        )
    }

    /// A subscription to every change this instance applies from now on,
    /// and the positions it starts after (see `View::subscribe_changes`).
    pub fn subscribe_changes(&self) -> (ChangeReceiver, Vec<i64>) {
        self.shared.view.subscribe_changes()
    }

    /// A change stream: see [`crate::watch`] for what it guarantees. A
    /// snapshot first catches up with the topic's end offsets, so it
    /// reflects every write acknowledged before the call, by any instance.
    pub async fn watch(&self, options: WatchOptions) -> Result<Watch, WatchError> {
        if options.start == crate::watch::Start::Snapshot && self.is_ready() {
            self.catch_up().await.map_err(WatchError::CatchUp)?;
        }
        let context = WatchContext {
            view: self.shared.view.clone(),
            config: self.shared.config.clone(),
            fingerprint: self.shared.fingerprint,
            delete_retention: self.shared.delete_retention,
            offsets: self.shared.offsets.clone(),
        };
        Watch::open(context, options).await
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.shared.view.len()
    }

    /// Keys with an expiry that have not expired by this machine's clock
    /// (`INFO keyspace`'s `expires=`), and keys that have expired and wait
    /// for their SWEEP to be applied here (docs/expiry.md).
    pub fn expiry_counts(&self) -> (usize, usize) {
        self.shared.view.expiry_counts()
    }

    /// SWEEPs this instance applied that deleted an expired key, whichever
    /// instance wrote them (`INFO stats`'s `expired_keys`).
    pub fn expired_keys(&self) -> u64 {
        self.shared.view.expired_keys()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys whose newest record is an operation not yet repaired
    /// (docs/rmw.md); 0 once repairs have caught up.
    pub fn unsettled_keys(&self) -> usize {
        self.shared.view.unsettled_keys()
    }

    /// Writes in flight right now (sent, not yet answered).
    pub fn writes_in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    fn ensure_ready(&self) -> Result<(), ReadError> {
        if self.is_ready() {
            return Ok(());
        }
        let progress = self.progress();
        Err(ReadError::NotReady(format!(
            "applied offsets {:?} of {:?}",
            progress.positions, progress.bootstrap.targets
        )))
    }

    /// The value of `key`.
    pub async fn get(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Versioned>, ReadError> {
        self.ensure_ready()?;
        if consistency == Consistency::Strong {
            self.catch_up().await?;
        }
        self.get_now(key)
    }

    /// The value of `key` from this instance's view, without waiting for
    /// anything: the path of the Redis front end's reads.
    pub fn get_now(&self, key: &[u8]) -> Result<Option<Versioned>, ReadError> {
        self.ensure_ready()?;
        Ok(self.shared.view.get(key)?)
    }

    /// Every live key beginning with `prefix`, in byte order.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Bytes>, ReadError> {
        self.ensure_ready()?;
        Ok(self.shared.view.keys(prefix)?)
    }

    /// A live key picked at random, `None` when the store is empty (see
    /// `View::random_key`).
    pub fn random_key(&self) -> Result<Option<Bytes>, ReadError> {
        self.ensure_ready()?;
        Ok(self.shared.view.random_key()?)
    }

    /// One page of a stateless key iteration (see `View::scan_from`).
    pub fn scan_from(&self, cursor: u64, count: usize) -> Result<(Vec<Bytes>, u64), ReadError> {
        self.ensure_ready()?;
        Ok(self.shared.view.scan_from(cursor, count)?)
    }

    /// Up to `limit` keys beginning with `prefix`, after `start_after`, in
    /// byte order; fewer if their keys and values reach `max_bytes`.
    pub async fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
        consistency: Consistency,
    ) -> Result<Vec<(Bytes, Versioned)>, ReadError> {
        self.ensure_ready()?;
        if consistency == Consistency::Strong {
            self.catch_up().await?;
        }
        Ok(self
            .shared
            .view
            .scan(prefix, start_after, limit, max_bytes)?)
    }

    /// Stores `value` under `key`; returns once the broker acknowledged it, and
    /// from then on this instance reads it.
    pub async fn put(&self, key: &[u8], value: Bytes) -> Result<Receipt, WriteError> {
        self.validate(key, Some(&value))?;
        self.write(key, Some(value)).await
    }

    /// Stores `value` under `key` expiring as `expiry` says, and returns
    /// what it replaced and left once this instance applied it (a relative
    /// expiry is resolved against the record's timestamp, which only the
    /// consumer knows). `Expiry::Never` is a plain put, `Keep` an operation
    /// record (see [`Store::put_when`]).
    pub async fn put_with(
        &self,
        key: &[u8],
        value: Bytes,
        expiry: Expiry,
    ) -> Result<Applied, WriteError> {
        let expiry = expiry.to_set_expiry()?;
        self.put_when(key, value, Condition::Always, expiry).await
    }

    /// Stores `value` under `key` leaving `expiry` (`None`: none), only if
    /// `when` holds where the record lands in the log; `outcome.applied`
    /// says whether it did (docs/expiry.md, "Records", for what each form
    /// writes). Unconditional, it is a plain put, one carrying its expiry,
    /// or, for an absolute expiry already past by this machine's clock, a
    /// delete; with a condition or [`SetExpiry::Keep`], an operation record
    /// decided on the key's state there (docs/rmw.md). A relative expiry
    /// must be positive.
    pub async fn put_when(
        &self,
        key: &[u8],
        value: Bytes,
        when: Condition,
        expiry: Option<SetExpiry>,
    ) -> Result<Applied, WriteError> {
        if matches!(expiry, Some(SetExpiry::Until(Deadline::In(ms))) if ms <= 0) {
            return Err(InputError::InvalidExpiry.into());
        }
        match (when, expiry) {
            (Condition::Always, None) => self.replace(key, Some(value)).await,
            (Condition::Always, Some(SetExpiry::Until(Deadline::At(at)))) if at <= now_ms() => {
                // Refused as the put would be, though nothing of it is written.
                self.validate(key, Some(&value))?;
                self.replace(key, None).await
            }
            (Condition::Always, Some(SetExpiry::Until(deadline))) => {
                self.put_expiring(key, value, deadline).await
            }
            (when, expiry) => self.apply_op(key, Op::set(value, when, expiry)).await,
        }
    }

    /// Sets the live `key`'s expiry to `deadline` (a [`Duration`] from the
    /// record's timestamp, a [`SystemTime`], or a [`Deadline`]) if `when`
    /// holds where the record lands in the log, as Redis's `PEXPIRE` /
    /// `PEXPIREAT` with `NX|XX|GT|LT`. `outcome.applied` is Redis's reply:
    /// `false` for an absent or expired key or a condition that did not
    /// hold. A deadline at or before the record's time deletes the key.
    pub async fn expire(
        &self,
        key: &[u8],
        deadline: impl Into<Deadline>,
        when: ExpireWhen,
    ) -> Result<Applied, WriteError> {
        let deadline = deadline.into();
        self.apply_op(key, Op::Expire { deadline, when }).await
    }

    /// Removes the live `key`'s expiry where the record lands in the log,
    /// as Redis's `PERSIST`; `outcome.applied` is `false` when the key is
    /// absent or had none.
    pub async fn persist(&self, key: &[u8]) -> Result<Applied, WriteError> {
        self.apply_op(key, Op::Persist).await
    }

    /// Deletes `key` by writing a tombstone.
    pub async fn delete(&self, key: &[u8]) -> Result<Receipt, WriteError> {
        self.validate(key, None)?;
        self.write(key, None).await
    }

    /// Checks a write against the limits without producing anything.
    pub fn validate(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), InputError> {
        let config = &self.shared.config;
        if key.is_empty() {
            return Err(InputError::EmptyKey);
        }
        if key.len() > config.max_key_bytes {
            return Err(InputError::KeyTooLarge {
                len: key.len(),
                max: config.max_key_bytes,
            });
        }
        if let Some(value) = value
            && value.len() > config.max_value_bytes
        {
            return Err(InputError::ValueTooLarge {
                len: value.len(),
                max: config.max_value_bytes,
            });
        }
        Ok(())
    }

    async fn write(&self, key: &[u8], value: Option<Bytes>) -> Result<Receipt, WriteError> {
        let _in_flight = self.begin_write()?;
        let receipt = self.shared.writer.send(key, value.clone()).await?;
        self.shared
            .view
            .acknowledge(key, value, receipt.partition, receipt.offset);
        Ok(receipt)
    }

    /// The start of every write: refused once the store is closing, else
    /// counted in flight until the guard drops. A guard, because a caller
    /// that gives up (a client that hangs up) drops the write's future
    /// mid-await, and the count must still come down.
    fn begin_write(&self) -> Result<InFlight<'_>, WriteError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(WriteError::Closed);
        }
        Ok(InFlight::enter(&self.shared.in_flight))
    }

    /// Waits until the view is at least at `offset + 1` in `partition`.
    pub async fn wait_for_offset(&self, partition: i32, offset: i64, timeout: Duration) -> bool {
        let mut targets = vec![0; self.shared.partitions as usize];
        match targets.get_mut(partition as usize) {
            Some(target) => *target = offset + 1,
            None => return false,
        }
        self.shared.view.wait_for_positions(&targets, timeout).await
    }

    /// Waits until this instance applied everything up to the topic's current
    /// end offsets.
    pub async fn catch_up(&self) -> Result<(), ReadError> {
        let timeout = self.shared.config.read_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let ends = self
            .shared
            .offsets
            .end_offsets(timeout)
            .await
            .map_err(ReadError::EndOffsets)?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if self.shared.view.wait_for_positions(&ends, remaining).await {
            Ok(())
        } else {
            Err(ReadError::CatchUpTimeout(timeout))
        }
    }

    /// Flushes the producer and stops the consumer (leaving a durable disk
    /// checkpoint). Writes after this fail. A disk state stays locked until
    /// the last handle to the store is dropped.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let reader = self.shared.reader.lock().take();
        let Some(mut reader) = reader else {
            return;
        };
        self.shared
            .writer
            .flush(self.shared.config.write_timeout)
            .await;
        self.shared.view.close();
        tokio::task::spawn_blocking(move || reader.stop())
            .await
            .expect("reader stop panicked");
        info!(topic = %self.shared.config.topic, "store closed");
    }
}

/// Counts one write in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_and_times_round_down_to_whole_milliseconds() {
        let ms = Duration::from_millis;
        assert_eq!(Deadline::from(ms(1500)), Deadline::In(1500));
        assert_eq!(Deadline::from(Duration::from_nanos(1)), Deadline::In(1));
        assert_eq!(Deadline::from(Duration::MAX), Deadline::In(i64::MAX));
        let at = UNIX_EPOCH + ms(1_767_225_600_000) + Duration::from_micros(999);
        assert_eq!(Deadline::from(at), Deadline::At(1_767_225_600_000));
        let before = UNIX_EPOCH - Duration::from_micros(1500);
        assert_eq!(Deadline::from(before), Deadline::At(-2));
    }

    #[test]
    fn expiries_become_what_a_put_leaves() {
        let at = UNIX_EPOCH + Duration::from_millis(42);
        assert_eq!(Expiry::Never.to_set_expiry(), Ok(None));
        assert_eq!(Expiry::Keep.to_set_expiry(), Ok(Some(SetExpiry::Keep)));
        assert_eq!(
            Expiry::After(Duration::from_secs(2)).to_set_expiry(),
            Ok(Some(SetExpiry::Until(Deadline::In(2000))))
        );
        assert_eq!(
            Expiry::At(at).to_set_expiry(),
            Ok(Some(SetExpiry::Until(Deadline::At(42))))
        );
        assert_eq!(
            Expiry::After(Duration::ZERO).to_set_expiry(),
            Err(InputError::InvalidExpiry)
        );
    }
}
