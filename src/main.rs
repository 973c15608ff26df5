//! The `kafkv` binary: parses arguments (and `KAFKV_*` variables) into the
//! library's config and calls it; starts the embedded broker ([`broker`])
//! when no `--brokers` are given, before the store, and stops it after.

#[cfg(feature = "embedded-broker")]
mod broker;
mod logging;
mod watch;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use kafkv::{
    ServiceConfig, StateConfig, StoreConfig,
    config::{DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES},
    service::{self, Listeners},
};
use tracing::info;

#[cfg(feature = "embedded-broker")]
use broker::{BrokerConfig, BrokerError, EmbeddedBroker};

/// Why the binary stopped with an error.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Kafkv(#[from] kafkv::Error),
    #[cfg(feature = "embedded-broker")]
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    #[cfg(not(feature = "embedded-broker"))]
    #[error("this kafkv was built without the embedded-broker feature; pass --brokers")]
    NoEmbeddedBroker,
}

#[derive(Parser)]
#[command(version, about = "A key-value store on a log-compacted Kafka topic")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the store: HTTP API, with the embedded broker unless --brokers is given.
    Serve(Box<ServeArgs>),
    /// Run only the embedded Kafka-compatible broker (tansu, SQLite storage).
    #[cfg(feature = "embedded-broker")]
    Broker(BrokerArgs),
    /// Follow a running kafkv's changes: one JSON line per event, reconnecting
    /// with the last token when the connection drops.
    Watch(watch::WatchArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Kafka bootstrap servers (host:port,...). Without it, kafkv starts its embedded broker.
    #[arg(long, env = "KAFKV_BROKERS")]
    brokers: Option<String>,
    /// The compacted topic holding the data.
    #[arg(long, env = "KAFKV_TOPIC", default_value = "kafkv")]
    topic: String,
    /// Partitions when kafkv creates the topic (an existing topic keeps its own).
    #[arg(long, env = "KAFKV_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// Replication factor when kafkv creates the topic [default: the broker's default; 1 embedded].
    #[arg(long, env = "KAFKV_REPLICATION_FACTOR")]
    replication_factor: Option<i32>,
    /// Address of the HTTP API.
    #[arg(long, env = "KAFKV_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Directory for kafkv's files: the embedded broker's database, and the
    /// view with `--state disk` (`state/<topic>.redb`).
    #[arg(long, env = "KAFKV_DATA_DIR", default_value = "./kafkv-data")]
    data_dir: PathBuf,
    /// Where the view lives: `memory` (every start reads the whole topic) or
    /// `disk` (a checkpointed copy under --data-dir; a restart reads only what changed).
    #[arg(long, env = "KAFKV_STATE", value_enum, default_value_t = StateKind::Memory)]
    state: StateKind,
    /// Embedded broker only: address it listens on.
    #[arg(long, env = "KAFKV_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    broker_listen: SocketAddr,
    /// Embedded broker only: how often it compacts.
    #[arg(long, env = "KAFKV_BROKER_MAINTENANCE_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    broker_maintenance_interval: Duration,
    /// Embedded broker only: when a write is acknowledged. `commit`: once the broker's
    /// write-ahead log is fsynced (survives a power loss); `none`: once committed to the
    /// OS (survives a crash of the process, as a single Kafka broker's default).
    #[arg(long, env = "KAFKV_BROKER_SYNC", value_enum, default_value_t = BrokerSync::Commit)]
    broker_sync: BrokerSync,
    /// Embedded broker only: whose Fetch and Produce it serves (see BrokerPaths).
    #[arg(long, env = "KAFKV_BROKER_PATHS", value_enum, default_value_t = BrokerPaths::Kafkv, hide = true)]
    broker_paths: BrokerPaths,
    /// A librdkafka property for every Kafka client, key=value (repeatable; SASL, TLS,
    /// timeouts). Several in one value or in the env var are separated by ';'.
    #[arg(long = "kafka-config", env = "KAFKV_KAFKA_CONFIG", value_delimiter = ';', value_parser = parse_key_value)]
    kafka_config: Vec<(String, String)>,
    /// min.compaction.lag.ms of a topic kafkv creates: superseded records younger than
    /// this stay in the log (an existing topic keeps its own).
    #[arg(long, env = "KAFKV_MIN_COMPACTION_LAG", default_value = "10m", value_parser = humantime::parse_duration)]
    min_compaction_lag: Duration,
    /// delete.retention.ms of a topic kafkv creates: how long compaction keeps a
    /// tombstone, and so how long a --state disk instance may stop and still resume.
    #[arg(long, env = "KAFKV_DELETE_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    delete_retention: Duration,
    /// Applied batches (of up to 1,024 records) a change-stream watcher may fall
    /// behind before its watch ends `lagged`.
    #[arg(long, env = "KAFKV_WATCH_BUFFER", default_value_t = kafkv::config::DEFAULT_WATCH_BUFFER)]
    watch_buffer: usize,
    /// Bytes of recent changes kept in memory so resumed watches need not read
    /// the topic (0: always read it).
    #[arg(long, env = "KAFKV_WATCH_WINDOW_BYTES", default_value_t = kafkv::config::DEFAULT_WATCH_WINDOW_BYTES)]
    watch_window_bytes: usize,
    /// Start even if the topic is not compacted (Kafka may then delete live keys).
    #[arg(long, env = "KAFKV_ALLOW_NON_COMPACTED")]
    allow_non_compacted: bool,
    /// How long a put or delete waits for the broker before failing with 503.
    #[arg(long, env = "KAFKV_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,
    /// How long start-up waits for the brokers (topic checks, metadata) before giving up.
    #[arg(long, env = "KAFKV_STARTUP_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    startup_timeout: Duration,
    /// How long a strong read waits to catch up before failing with 504.
    #[arg(long, env = "KAFKV_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    read_timeout: Duration,
    /// Largest key accepted, in bytes.
    #[arg(long, env = "KAFKV_MAX_KEY_BYTES", default_value_t = DEFAULT_MAX_KEY_BYTES)]
    max_key_bytes: usize,
    /// Largest value accepted, in bytes (keep key + value under the broker's message.max.bytes).
    #[arg(long, env = "KAFKV_MAX_VALUE_BYTES", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    max_value_bytes: usize,
    /// fetch.wait.max.ms of the tailing consumer: bounds how late other instances' writes show up here.
    #[arg(long, env = "KAFKV_FETCH_WAIT", default_value = "10ms", value_parser = humantime::parse_duration)]
    fetch_wait: Duration,
    /// Address of the Redis-protocol (RESP) front end; off unless given.
    #[arg(long, env = "KAFKV_RESP_LISTEN")]
    resp_listen: Option<SocketAddr>,
    /// A token clients must present: `AUTH <token>` over RESP, `Authorization: Bearer <token>` over HTTP.
    #[arg(long, env = "KAFKV_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Most RESP connections open at once.
    #[arg(long, env = "KAFKV_RESP_MAX_CONNECTIONS", default_value_t = 10_000)]
    resp_max_connections: usize,
    /// Threads serving RESP connections, each a single-threaded event loop.
    #[arg(long, env = "KAFKV_RESP_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    resp_threads: u16,
    /// How the threads that answer requests are scheduled against background work (a
    /// sweep, the apply thread, the embedded broker). `realtime`: SCHED_FIFO within a
    /// budget of half a core, and the view's install at the same priority while readers
    /// wait for it (needs CAP_SYS_NICE or LimitRTPRIO=1; without it kafkv warns and
    /// runs `normal`). `normal`: ordinary threads with the shortest scheduling slice.
    #[arg(long, env = "KAFKV_REQUEST_PRIORITY", value_enum, default_value_t = RequestPriority::Realtime)]
    request_priority: RequestPriority,
    /// Most arguments in one RESP request.
    #[arg(long, env = "KAFKV_RESP_MAX_ARGS", default_value_t = 1024 * 1024)]
    resp_max_args: usize,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, env = "KAFKV_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// How soon after its own read-modify-write operation this instance writes
    /// the key's repair (docs/rmw.md) [default: the library's, 10 ms]. Hidden:
    /// tuning for tests.
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    repair_delay: Option<Duration>,
    /// How long this instance waits before repairing another instance's
    /// unrepaired operation, plus up to as much again of jitter (docs/rmw.md)
    /// [default: the library's, 2 s]. Hidden: tuning for tests.
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    repair_backstop: Option<Duration>,
    /// How soon after a key expires it is swept off the topic (a SWEEP
    /// tombstone written by whichever ready instance gets to it first); 0:
    /// this instance never sweeps (reads still hide expired keys).
    #[arg(long, env = "KAFKV_EXPIRY_SWEEP_WITHIN", default_value = "1s", value_parser = humantime::parse_duration)]
    expiry_sweep_within: Duration,
    /// The most SWEEPs per second this instance writes.
    #[arg(long, env = "KAFKV_EXPIRY_SWEEP_RATE", default_value_t = kafkv::config::DEFAULT_SWEEP_RATE, value_parser = clap::value_parser!(u32).range(1..))]
    expiry_sweep_rate: u32,
    /// Test hook: this instance never writes repairs, standing for a writer
    /// killed between its operation and its repair. Never for production.
    #[arg(long, hide = true)]
    no_repairs: bool,
}

#[cfg(feature = "embedded-broker")]
#[derive(Args)]
struct BrokerArgs {
    /// Address the broker listens on and advertises.
    #[arg(long, env = "KAFKV_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Directory for the broker's SQLite database.
    #[arg(long, env = "KAFKV_DATA_DIR", default_value = "./kafkv-data")]
    data_dir: PathBuf,
    /// How often the broker compacts.
    #[arg(long, env = "KAFKV_BROKER_MAINTENANCE_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    maintenance_interval: Duration,
    /// When a write is acknowledged. `commit`: once the broker's write-ahead log is
    /// fsynced (survives a power loss); `none`: once committed to the OS (survives a
    /// crash of the process, as a single Kafka broker's default).
    #[arg(long = "sync", alias = "broker-sync", env = "KAFKV_BROKER_SYNC", value_enum, default_value_t = BrokerSync::Commit)]
    sync: BrokerSync,
    /// Whose Fetch and Produce the broker serves (see BrokerPaths).
    #[arg(long = "broker-paths", env = "KAFKV_BROKER_PATHS", value_enum, default_value_t = BrokerPaths::Kafkv, hide = true)]
    paths: BrokerPaths,
}

/// How request threads are scheduled (kafkv::scheduling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RequestPriority {
    Realtime,
    Normal,
}

/// When the embedded broker acknowledges a write (src/broker/wal_sync.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BrokerSync {
    Commit,
    None,
}

/// The embedded broker's Fetch and Produce: kafkv's (long poll and tail
/// cache; prepared statements and shared transactions), or tansu 0.6's own
/// (kafkv's storage corrections stay on). Hidden: it exists so the bench
/// can measure them side by side with the same binary (`kafkv-bench
/// --broker-paths tansu,kafkv-fetch,kafkv`), each on a database of its
/// own: `tansu`'s fetch does not read the headers kafkv's produce path
/// keeps in the record's row (docs/design.md (p)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BrokerPaths {
    /// kafkv's Fetch and Produce.
    Kafkv,
    /// kafkv's Fetch, tansu's Produce.
    KafkvFetch,
    /// tansu's Fetch and Produce.
    Tansu,
}

#[cfg(feature = "embedded-broker")]
impl From<BrokerPaths> for broker::BrokerPaths {
    fn from(paths: BrokerPaths) -> Self {
        match paths {
            BrokerPaths::Kafkv => Self::Kafkv,
            BrokerPaths::KafkvFetch => Self::KafkvFetch,
            BrokerPaths::Tansu => Self::Tansu,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StateKind {
    Memory,
    Disk,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected key=value, got '{text}'")),
    }
}

/// Where `kafkv serve`'s Kafka comes from.
enum KafkaSource {
    /// A real cluster: `bootstrap.servers`.
    External(String),
    /// Start the embedded broker in this process.
    #[cfg_attr(not(feature = "embedded-broker"), allow(dead_code))]
    Embedded {
        listen: SocketAddr,
        data_dir: PathBuf,
        maintenance_interval: Duration,
        paths: BrokerPaths,
        sync: BrokerSync,
    },
}

impl ServeArgs {
    fn into_config(self) -> (KafkaSource, ServiceConfig) {
        let store = StoreConfig {
            topic: self.topic,
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            kafka_config: self.kafka_config,
            allow_non_compacted: self.allow_non_compacted,
            write_timeout: self.write_timeout,
            startup_timeout: self.startup_timeout,
            read_timeout: self.read_timeout,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            fetch_wait: self.fetch_wait,
            min_compaction_lag: self.min_compaction_lag,
            delete_retention: self.delete_retention,
            watch_buffer: self.watch_buffer,
            watch_window_bytes: self.watch_window_bytes,
            repairs: !self.no_repairs,
            expiry_sweep_within: self.expiry_sweep_within,
            expiry_sweep_rate: self.expiry_sweep_rate,
            state: match self.state {
                StateKind::Memory => StateConfig::Memory,
                StateKind::Disk => StateConfig::Disk(self.data_dir.clone()),
            },
            ..StoreConfig::new(self.brokers.clone().unwrap_or_default())
        };
        let store = StoreConfig {
            repair_delay: self.repair_delay.unwrap_or(store.repair_delay),
            repair_backstop: self.repair_backstop.unwrap_or(store.repair_backstop),
            ..store
        };
        let kafka = match self.brokers {
            Some(brokers) => KafkaSource::External(brokers),
            None => KafkaSource::Embedded {
                listen: self.broker_listen,
                data_dir: self.data_dir,
                maintenance_interval: self.broker_maintenance_interval,
                paths: self.broker_paths,
                sync: self.broker_sync,
            },
        };
        let mut resp = kafkv::RespConfig::new(store.max_value_bytes);
        resp.max_connections = self.resp_max_connections;
        resp.limits.max_args = self.resp_max_args;
        resp.threads = usize::from(self.resp_threads);
        let config = ServiceConfig {
            store,
            drain_timeout: self.drain_timeout,
            auth_token: self.auth_token.filter(|t| !t.is_empty()),
            resp,
        };
        (kafka, config)
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (log_filter, invalid_rust_log) = logging::filter(std::env::var("RUST_LOG").ok().as_deref());
    tracing_subscriber::fmt()
        .with_env_filter(log_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(why) = invalid_rust_log {
        tracing::warn!("{why}");
    }
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(*args).await,
        #[cfg(feature = "embedded-broker")]
        Command::Broker(args) => broker(args).await,
        Command::Watch(args) => watch::run(args).await.map_err(Failure::from),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("kafkv: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let (http_listen, resp_listen) = (args.http_listen, args.resp_listen);
    if args.request_priority == RequestPriority::Realtime {
        match kafkv::scheduling::enable_realtime() {
            Ok(()) => info!(
                "RESP threads run at real-time priority on contended CPUs, within a budget of half a core"
            ),
            Err(error) => tracing::warn!("RESP threads run at normal priority: {error}"),
        }
    }
    let (kafka, mut config) = args.into_config();
    let http = bind(http_listen, "--http-listen").await?;
    let resp = match resp_listen {
        Some(address) => Some(bind(address, "--resp-listen").await?),
        None => None,
    };
    #[cfg(feature = "embedded-broker")]
    let mut embedded = None;
    match kafka {
        KafkaSource::External(brokers) => {
            info!(%brokers, "using the Kafka cluster at --brokers");
            config.store.brokers = brokers;
        }
        #[cfg(feature = "embedded-broker")]
        KafkaSource::Embedded {
            listen,
            data_dir,
            maintenance_interval,
            paths,
            sync,
        } => {
            let broker = EmbeddedBroker::start(&BrokerConfig {
                listen,
                data_dir,
                maintenance_interval,
                paths: paths.into(),
                sync_commits: sync == BrokerSync::Commit,
            })
            .await?;
            config.store = config.store.on_single_broker();
            config.store.brokers = broker.address().to_string();
            embedded = Some(broker);
        }
        #[cfg(not(feature = "embedded-broker"))]
        KafkaSource::Embedded { .. } => return Err(Failure::NoEmbeddedBroker),
    }
    // A broker that cannot serve ends the process at once: the store could
    // neither write nor flush through it, and a supervisor's restart brings
    // both back (the disk state is consistent at every commit).
    let broker_failed = async {
        #[cfg(feature = "embedded-broker")]
        if let Some(broker) = &embedded {
            return Failure::from(BrokerError::Failed(broker.failed().await));
        }
        std::future::pending::<Failure>().await
    };
    let outcome = tokio::select! {
        outcome = service::run(config, Listeners { http, resp }, shutdown_signal()) => outcome,
        failure = broker_failed => return Err(failure),
    };
    // The broker stops last, after the store flushed and closed.
    #[cfg(feature = "embedded-broker")]
    if let Some(broker) = embedded {
        broker.stop().await;
    }
    outcome?;
    info!("shutdown complete");
    Ok(())
}

async fn bind(address: SocketAddr, flag: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {address} ({flag}): {e}"),
        )
    })
}

#[cfg(feature = "embedded-broker")]
async fn broker(args: BrokerArgs) -> Result<(), Failure> {
    let broker = EmbeddedBroker::start(&BrokerConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        maintenance_interval: args.maintenance_interval,
        paths: args.paths.into(),
        sync_commits: args.sync == BrokerSync::Commit,
    })
    .await?;
    tokio::select! {
        () = shutdown_signal() => {}
        reason = broker.failed() => return Err(BrokerError::Failed(reason).into()),
    }
    broker.stop().await;
    Ok(())
}
