//! Typed configuration with documented defaults.
//!
//! The library never reads argv or the environment; the binary maps its
//! command line (and `KAFKV_*` variables) onto these structs.

use std::{path::PathBuf, time::Duration};

/// Largest key accepted by default: keys live in memory on every instance and
/// in every record, so they are kept small.
pub const DEFAULT_MAX_KEY_BYTES: usize = 16 * 1024;

/// Largest value accepted by default. Kafka's default `message.max.bytes` is
/// 1,048,588 bytes for a whole record batch; a maximal key plus this value plus
/// record overhead stays under it.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1_000_000;

/// Default [`StoreConfig::min_compaction_lag`].
pub const DEFAULT_MIN_COMPACTION_LAG: Duration = Duration::from_secs(10 * 60);

/// Default [`StoreConfig::delete_retention`]: Kafka's own default.
pub const DEFAULT_DELETE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How kafkv talks to Kafka and what it accepts.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// The compacted topic that holds the data. Default `kafkv`.
    pub topic: String,
    /// Partitions for a topic kafkv creates. Default 1. An existing topic keeps its own count.
    pub partitions: i32,
    /// Replication factor for a topic kafkv creates; `None` uses the broker's default.
    pub replication_factor: Option<i32>,
    /// librdkafka properties applied to every client after kafkv's own (SASL, TLS, timeouts).
    pub kafka_config: Vec<(String, String)>,
    /// Start even if the topic's cleanup policy does not include `compact`.
    pub allow_non_compacted: bool,
    /// Bound on how long a put or delete may wait for the broker's acknowledgement. Default 10 s.
    pub write_timeout: Duration,
    /// Bound on how long start-up waits for the brokers to answer (topic
    /// creation, configuration, metadata). Default 30 s.
    pub startup_timeout: Duration,
    /// Bound on how long a strong read waits to catch up. Default 10 s.
    pub read_timeout: Duration,
    /// Default [`DEFAULT_MAX_KEY_BYTES`].
    pub max_key_bytes: usize,
    /// Default [`DEFAULT_MAX_VALUE_BYTES`].
    pub max_value_bytes: usize,
    /// `fetch.wait.max.ms` for the tailing consumer. Some brokers (the embedded
    /// one among them) answer a fetch only when this runs out, so it bounds how
    /// late another instance's write becomes visible here. Default 10 ms.
    pub fetch_wait: Duration,
    /// Where the materialized view lives. Default [`StateConfig::Memory`].
    pub state: StateConfig,
    /// `min.compaction.lag.ms` for a topic kafkv creates: how long a
    /// superseded record stays in the log before compaction may remove it,
    /// so recent history is intact for what reads it (resumed change
    /// streams; later, conditional writes). Default 10 minutes. An existing
    /// topic keeps its own setting.
    pub min_compaction_lag: Duration,
    /// `delete.retention.ms` for a topic kafkv creates: how long compaction
    /// keeps a tombstone, which bounds how long an instance may stop and
    /// still resume from a disk checkpoint. Default 24 hours, as Kafka's.
    /// An existing topic keeps its own setting.
    pub delete_retention: Duration,
    /// Applied batches (of up to 1,024 records each) a
    /// watch may fall behind before it ends `lagged`. Default 1024.
    pub watch_buffer: usize,
    /// Bytes of recent changes kept in memory so a resumed watch need not
    /// read the topic (0: always read it). Default 16 MiB; switched on by the
    /// first watch.
    pub watch_window_bytes: usize,
    /// How soon after this instance's own read-modify-write operation it
    /// writes the key's repair (docs/rmw.md). Default 10 ms.
    pub repair_delay: Duration,
    /// How long any instance waits before repairing a key whose newest
    /// record is someone else's unrepaired operation, plus up to as much
    /// again of jitter. Default 2 s.
    pub repair_backstop: Duration,
    /// Whether this instance writes repairs at all. Default true; false only
    /// in tests that stand for a writer dying before its repair.
    pub repairs: bool,
    /// How soon after a key expires it is swept off the topic (a SWEEP
    /// tombstone, docs/expiry.md): each ready instance sweeps a due key
    /// after a delay of its own between a quarter and three quarters of
    /// this, so that usually one instance sweeps it. Zero: this instance
    /// never sweeps. Default 1 s.
    pub expiry_sweep_within: Duration,
    /// The most SWEEPs per second this instance writes: bounds the burst a
    /// bulk expiry puts on the topic and on every reader. Default 50,000.
    pub expiry_sweep_rate: u32,
}

/// Where the materialized view lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateConfig {
    /// In this process's memory: every start reads the whole topic.
    #[default]
    Memory,
    /// In a redb database in this directory (`<dir>/state/<topic>.redb`), with
    /// the applied offsets checkpointed alongside, so a restart reads only
    /// what was written since.
    Disk(PathBuf),
}

impl StateConfig {
    /// The database file for `topic` under a disk state directory.
    pub fn disk_path(dir: &std::path::Path, topic: &str) -> PathBuf {
        dir.join("state").join(format!("{topic}.redb"))
    }
}

/// Default [`StoreConfig::watch_buffer`].
pub const DEFAULT_WATCH_BUFFER: usize = crate::state::DEFAULT_CHANGE_CAPACITY;
/// Default [`StoreConfig::watch_window_bytes`].
pub const DEFAULT_WATCH_WINDOW_BYTES: usize = crate::state::DEFAULT_RECENT_BYTES;

/// Default [`StoreConfig::expiry_sweep_rate`].
pub const DEFAULT_SWEEP_RATE: u32 = crate::store::sweeper::DEFAULT_SWEEP_RATE;

impl StoreConfig {
    /// A configuration with every default, for the given brokers.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: "kafkv".to_owned(),
            partitions: 1,
            replication_factor: None,
            kafka_config: Vec::new(),
            allow_non_compacted: false,
            write_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            fetch_wait: Duration::from_millis(10),
            state: StateConfig::Memory,
            min_compaction_lag: DEFAULT_MIN_COMPACTION_LAG,
            delete_retention: DEFAULT_DELETE_RETENTION,
            watch_buffer: DEFAULT_WATCH_BUFFER,
            watch_window_bytes: DEFAULT_WATCH_WINDOW_BYTES,
            repair_delay: crate::store::repairer::OWN_DELAY,
            repair_backstop: crate::store::repairer::BACKSTOP_DELAY,
            repairs: true,
            expiry_sweep_within: crate::store::sweeper::DEFAULT_SWEEP_WITHIN,
            expiry_sweep_rate: crate::store::sweeper::DEFAULT_SWEEP_RATE,
        }
    }

    /// Sets the topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// For a cluster of one broker (the embedded one, or a test's): a topic
    /// kafkv creates gets the only replica there can be, unless a
    /// replication factor was set.
    pub fn on_single_broker(mut self) -> Self {
        self.replication_factor.get_or_insert(1);
        self
    }
}

/// Everything `kafkv serve` needs besides its listeners.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The store's settings, `brokers` included.
    pub store: StoreConfig,
    /// How long graceful shutdown waits for in-flight requests. Default 30 s.
    pub drain_timeout: Duration,
    /// When set, RESP clients must `AUTH` with it and HTTP requests (but
    /// `/livez` and `/readyz`) must carry `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// The Redis-protocol front end's limits (used when it has a listener).
    pub resp: crate::resp::RespConfig,
}
