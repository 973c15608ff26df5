//! The embedded Kafka-compatible broker: tansu 0.6 with SQLite storage, run
//! on its own runtime threads so broker work never stalls request handling.
//!
//! tansu serves the Kafka protocol; kafkv wraps its storage
//! ([`storage::KafkvStorage`]) where tansu does not behave like Kafka and
//! kafkv relies on it, each for a measured reason (docs/design.md):
//! - **Long-polling fetches** ([`long_poll`]): a fetch with data is answered
//!   at once, one without is held until a produce; kafkv serves the
//!   connections itself ([`serve`]) to route Fetch there.
//! - **Produce** ([`produce`]): tansu's rows, written by kafkv with
//!   statements prepared once and concurrent produces in one transaction;
//!   tansu compiles every statement on every use.
//! - **Compaction with `min.compaction.lag.ms` and `delete.retention.ms`**
//!   ([`maintenance`]), run by kafkv on `maintenance_interval`.
//! - **Producer epoch bumps accepted** and `DeleteRecords` refused, where
//!   tansu would panic and lose its storage task.
//! - **A broker that cannot serve is not hidden**: a probe asks the storage
//!   task to answer every second; once it has stopped, [`EmbeddedBroker::failed`]
//!   resolves and the process exits non-zero rather than sit wedged.
//! - **Headers after a compaction gap**: tansu reads a fetch's first record's
//!   headers at the offset asked for; when that was compacted away the
//!   wrapper fetches again from the record's own offset.
//! - **Key index** ([`database`]): compaction walks `record (topition, k,
//!   offset_id)`; without it 200,000 records kept the broker busy for over a
//!   minute.
//! - **Data path.** tansu joins the SQLite path onto the working directory even
//!   when it is absolute (`sqlite:///a/b` opens `$PWD/a/b`), so kafkv hands it
//!   a path relative to the working directory, whatever the user gave.

mod append_time;
mod checkpoint;
mod database;
mod fetch_budget;
mod fetch_once;
mod groups;
mod long_poll;
mod maintenance;
mod produce;
mod read_cache;
mod row_headers;
mod serve;
mod storage;
mod stored_read;
mod tail;
#[cfg(test)]
mod testing;
mod wal_sync;

use std::{
    net::SocketAddr,
    path::{Component, Path, PathBuf},
    time::{Duration, Instant},
};

use tansu_broker::{broker::Broker, coordinator::group::administrator::Controller};
use tansu_storage::{Storage, StorageContainer};
use tokio::{runtime::Runtime, sync::oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use url::Url;

pub use self::storage::Health;
use self::{database::Database, storage::KafkvStorage};

/// The embedded broker's settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address the broker listens on and advertises. Default `127.0.0.1:9092`.
    pub listen: SocketAddr,
    /// Directory for the broker's SQLite database. Default `./kafkv-data`.
    pub data_dir: PathBuf,
    /// How often the broker compacts (and applies retention). Default 1 minute.
    pub maintenance_interval: Duration,
    /// Whose Fetch and Produce the broker serves. Default: kafkv's; the
    /// others exist only so the bench can measure them side by side.
    pub paths: BrokerPaths,
    /// Acknowledge a produce only once the broker's write-ahead log is
    /// fsynced ([`wal_sync`]). Default on.
    pub sync_commits: bool,
}

/// Whose request paths the embedded broker serves where kafkv has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerPaths {
    /// tansu 0.6's Fetch (every fetch read from SQLite, the remaining wait
    /// slept out) and Produce (statements compiled for every use, a
    /// transaction per batch); kafkv's storage corrections stay on.
    Tansu,
    /// kafkv's Fetch ([`long_poll`], [`tail`], [`read_cache`]), tansu's Produce.
    KafkvFetch,
    /// kafkv's Fetch and Produce ([`produce`]).
    Kafkv,
}

impl BrokerPaths {
    fn kafkv_fetch(self) -> bool {
        self != Self::Tansu
    }

    fn kafkv_produce(self) -> bool {
        self == Self::Kafkv
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            data_dir: PathBuf::from("kafkv-data"),
            maintenance_interval: Duration::from_secs(60),
            paths: BrokerPaths::Kafkv,
            sync_commits: true,
        }
    }
}

/// How long a fetch that finds nothing waits for a produce ([`long_poll`]):
/// librdkafka's default `fetch.wait.max.ms`.
const FETCH_HOLD: Duration = Duration::from_millis(500);

/// How often the liveness probe asks the storage task to answer, and how long
/// an answer may take before the broker counts as wedged.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_PATIENCE: Duration = Duration::from_secs(30);

/// Test-only fault injection: when this variable is set to a duration (e.g.
/// `2s`), the broker kills its own storage task that long after start, the
/// way a tansu panic does, so tests can check that kafkv does not sit wedged.
const FAULT_ENV: &str = "KAFKV_TEST_KILL_BROKER_STORAGE_AFTER";

/// How long start-up waits for the broker to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The broker database's file name under the data dir.
pub const DATABASE_FILE: &str = "broker.db";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("cannot use data dir {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error("embedded broker failed to start: {0}")]
    Start(String),
    #[error("could not create kafkv's indexes in {path}: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error(
        "embedded broker did not accept connections on {0} within {1:?}; \
         is another process using the port? (--broker-listen)"
    )]
    NotListening(SocketAddr, Duration),
    #[error(
        "{0}. kafkv exits so that a supervisor restarts it; acknowledged writes are safe in the \
         broker's database"
    )]
    Failed(String),
    #[error(
        "the embedded broker cannot listen on {address}: {reason}. Is another process (another \
         kafkv?) using the port? Pick another with --broker-listen (kafkv serve) or --listen \
         (kafkv broker), or pass --brokers to use a running Kafka"
    )]
    Bind { address: SocketAddr, reason: String },
}

/// A running embedded broker. Dropping it without [`EmbeddedBroker::stop`]
/// stops it abruptly.
pub struct EmbeddedBroker {
    address: SocketAddr,
    runtime: Option<Runtime>,
    health: Health,
}

impl EmbeddedBroker {
    /// Starts the broker and returns once it accepts connections.
    pub async fn start(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let started = Instant::now();
        // Bound here, before anything else, so a taken port is a start-up
        // error naming the flag to change.
        let bind_error = |e: std::io::Error| BrokerError::Bind {
            address: config.listen,
            reason: e.to_string(),
        };
        let listening = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
        listening.set_nonblocking(true).map_err(bind_error)?;
        let data_dir_error = |reason: String| BrokerError::DataDir {
            path: config.data_dir.clone(),
            reason,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| data_dir_error(e.to_string()))?;
        let database = config.data_dir.join(DATABASE_FILE);
        let cwd = std::env::current_dir().map_err(|e| data_dir_error(e.to_string()))?;
        let storage = storage_url(&database, &cwd).map_err(data_dir_error)?;
        let listener = Url::parse(&format!("tcp://{}", config.listen))
            .map_err(|e| BrokerError::Start(e.to_string()))?;

        // Two workers: connection handling keeps going while maintenance runs.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kafkv-broker")
            .enable_all()
            .build()
            .map_err(|e| BrokerError::Start(e.to_string()))?;

        let (built, built_rx) = oneshot::channel();
        let (served, mut served_rx) = oneshot::channel();
        let maintenance_interval = config.maintenance_interval;
        let paths = config.paths;
        let sync_commits = config.sync_commits;
        let database_path = database.clone();
        runtime.spawn(async move {
            let prepared = async {
                let storage = build_storage(
                    storage,
                    listener.clone(),
                    &database_path,
                    paths,
                    sync_commits.then(|| wal_sync::WalSync::new(&database_path)),
                )
                .await?;
                if paths != BrokerPaths::Kafkv {
                    warn!(
                        ?paths,
                        "embedded broker: serving tansu 0.6's own paths (--broker-paths)"
                    );
                }
                let health = storage.health();
                let groups = Controller::with_storage(storage.clone())
                    .map_err(|e| BrokerError::Start(e.to_string()))?;
                let mut broker = Broker::new(
                    tansu_broker::NODE_ID,
                    CLUSTER_ID,
                    listener.clone(),
                    listener,
                    storage.clone(),
                    groups.clone(),
                    uuid::Uuid::new_v4(),
                );
                broker
                    .register()
                    .await
                    .map_err(|e| BrokerError::Start(format!("registering the broker: {e:?}")))?;
                let listening = tokio::net::TcpListener::from_std(listening)
                    .map_err(|e| BrokerError::Start(e.to_string()))?;
                let storage_for_routes = storage.clone();
                tokio::spawn(compact_every(storage.clone(), maintenance_interval));
                tokio::spawn(probe_liveness(storage.clone()));
                if let Some(after) = injected_fault() {
                    tokio::spawn(kill_storage_after(storage, after));
                }
                Ok::<_, BrokerError>((
                    health,
                    serve::accept(listening, storage_for_routes, groups, paths.kafkv_fetch()),
                ))
            };
            match prepared.await {
                Ok((health, serve)) => {
                    let _ = built.send(Ok(health.clone()));
                    let outcome = serve.await;
                    if let Err(e) = &outcome {
                        error!(error = %e, "embedded broker stopped");
                        health.fail(format!("the embedded broker stopped serving: {e}"));
                    }
                    let _ = served.send(outcome);
                }
                Err(e) => {
                    let _ = built.send(Err(e));
                }
            }
        });

        let health = built_rx
            .await
            .map_err(|_| BrokerError::Start("the broker task ended".into()))??;
        let broker = EmbeddedBroker {
            address: config.listen,
            runtime: Some(runtime),
            health,
        };
        // Wait until it accepts, or report why it ended.
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(config.listen).await.is_ok() {
                break;
            }
            if let Ok(outcome) = served_rx.try_recv() {
                return Err(BrokerError::Start(match outcome {
                    Ok(()) => "the broker stopped right after starting".into(),
                    Err(e) => e,
                }));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(BrokerError::NotListening(config.listen, START_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!(
            address = %config.listen,
            database = %database.display(),
            maintenance_interval = %humantime::format_duration(config.maintenance_interval),
            ms = started.elapsed().as_millis() as u64,
            "embedded broker (tansu-broker 0.6.0, SQLite) is up"
        );
        Ok(broker)
    }

    /// Resolves, with the reason, once the broker cannot serve any more: its
    /// storage task has stopped (a tansu panic), stopped answering for
    /// [`PROBE_PATIENCE`], or its listener ended. Callers should exit non-zero.
    pub async fn failed(&self) -> String {
        self.health.failed().await
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the broker: open connections are dropped, the database is closed.
    pub async fn stop(mut self) {
        if let Some(runtime) = self.runtime.take() {
            let _ = tokio::task::spawn_blocking(move || {
                runtime.shutdown_timeout(Duration::from_secs(5))
            })
            .await;
            info!(address = %self.address, "embedded broker stopped");
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The cluster id tansu stores and reports.
const CLUSTER_ID: &str = "kafkv";

/// tansu's SQLite storage behind kafkv's wrapper, with kafkv's own connection
/// (and the key index) opened once tansu has created the schema.
async fn build_storage(
    url: Url,
    listener: Url,
    database: &Path,
    paths: BrokerPaths,
    wal_sync: Option<wal_sync::WalSync>,
) -> Result<KafkvStorage, BrokerError> {
    let inner = StorageContainer::builder()
        .cluster_id(CLUSTER_ID)
        .node_id(tansu_broker::NODE_ID)
        .advertised_listener(listener)
        .schema_registry(None)
        .lake_house(None)
        .storage(url)
        .cancellation(CancellationToken::new())
        .silent(true)
        .build()
        .await
        .map_err(|e| BrokerError::Start(e.to_string()))?;
    let database = Database::open(database).await?;
    KafkvStorage::new(
        inner,
        database,
        storage::Options {
            fetch_hold: FETCH_HOLD,
            caching: paths.kafkv_fetch(),
            wal_sync,
            own_produce: paths.kafkv_produce(),
        },
    )
    .await
    .map_err(|e| BrokerError::Start(format!("preparing the produce statements: {e}")))
}

/// Compacts every `interval` ([`maintenance`]), holding tansu's calls off
/// meanwhile as tansu's own maintenance would.
async fn compact_every(storage: KafkvStorage, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let outcome = storage.compact(std::time::SystemTime::now()).await;
        match outcome {
            Ok(c) if c != maintenance::Compacted::default() => info!(
                superseded = c.superseded,
                tombstones = c.tombstones,
                "embedded broker compacted"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "embedded broker compaction failed; will retry"),
        }
    }
}

/// Asks the storage task to answer every [`PROBE_EVERY`]; a dead task fails
/// the health at once (in [`KafkvStorage`]), a silent one after
/// [`PROBE_PATIENCE`].
async fn probe_liveness(storage: KafkvStorage) {
    let health = storage.health();
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        match tokio::time::timeout(PROBE_PATIENCE, storage.ping()).await {
            Ok(Ok(())) => {}
            // Dead-task errors have failed the health already; others (a
            // busy database) are transient.
            Ok(Err(e)) => warn!(error = ?e, "embedded broker storage probe failed"),
            Err(_) => health.fail(format!(
                "the embedded broker's storage has not answered for {PROBE_PATIENCE:?}"
            )),
        }
    }
}

fn injected_fault() -> Option<Duration> {
    let value = std::env::var(FAULT_ENV).ok()?;
    let after = humantime::parse_duration(&value).ok()?;
    warn!(%value, "{FAULT_ENV} is set: the embedded broker's storage will be killed (test fault)");
    Some(after)
}

/// Kills tansu's storage task the way any failure inside it does: its serve
/// loop ends when a caller stops waiting for an answer.
async fn kill_storage_after(storage: KafkvStorage, after: Duration) {
    tokio::time::sleep(after).await;
    while storage.health().is_serving() {
        // Send a request, then stop waiting before the answer comes.
        tokio::select! {
            biased;
            _ = storage.ping() => {}
            () = std::future::ready(()) => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = storage.ping().await;
    }
}

/// The `sqlite:` URL that makes tansu open `database`, given that tansu joins
/// the URL's path onto `cwd`. An absolute path becomes one that climbs from
/// `cwd` to the root first (`..` at the root stays at the root).
fn storage_url(database: &Path, cwd: &Path) -> Result<Url, String> {
    let relative = if database.is_absolute() {
        let climb = cwd
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        let mut relative = PathBuf::new();
        for _ in 0..climb {
            relative.push("..");
        }
        relative.push(database.strip_prefix("/").unwrap_or(database));
        relative
    } else {
        database.to_path_buf()
    };
    let text = relative
        .to_str()
        .ok_or_else(|| "the path is not valid UTF-8".to_owned())?;
    let url = Url::parse(&format!("sqlite:{text}")).map_err(|e| e.to_string())?;
    // tansu reads `url.path()` without decoding: refuse paths the URL would escape.
    if url.path() != text {
        return Err(format!(
            "the path has characters the embedded broker cannot open ({text}); \
             use a --data-dir of ASCII characters without '?' or '#'"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened_by_tansu(url: &Url, cwd: &Path) -> PathBuf {
        // What tansu-storage 0.6.0 does with the URL (lite.rs, Builder::build).
        let mut path = cwd.to_path_buf();
        if let Some(domain) = url.domain() {
            path.push(domain);
        }
        path.push(url.path().strip_prefix('/').unwrap_or(url.path()));
        path
    }

    fn normalize(path: &Path) -> PathBuf {
        let mut out = PathBuf::from("/");
        for c in path.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(n) => out.push(n),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn absolute_and_relative_data_paths_open_the_right_file() {
        let cwd = Path::new("/work/main/sub");
        for (given, expected) in [
            ("/tmp/data/broker.db", "/tmp/data/broker.db"),
            ("data/broker.db", "/work/main/sub/data/broker.db"),
            ("../x/broker.db", "/work/main/x/broker.db"),
            ("/broker.db", "/broker.db"),
        ] {
            let url = storage_url(Path::new(given), cwd).unwrap();
            assert_eq!(
                normalize(&opened_by_tansu(&url, cwd)),
                PathBuf::from(expected),
                "{given} -> {url}"
            );
        }
    }

    #[test]
    fn spaces_survive_but_url_delimiters_are_refused() {
        let cwd = Path::new("/srv");
        let url = storage_url(Path::new("/tmp/my data/b.db"), cwd).unwrap();
        assert_eq!(
            normalize(&opened_by_tansu(&url, cwd)),
            PathBuf::from("/tmp/my data/b.db")
        );
        for bad in ["/tmp/a#b/b.db", "/tmp/a?b/b.db"] {
            let err = storage_url(Path::new(bad), cwd).unwrap_err();
            assert!(err.contains("cannot open"), "{bad}: {err}");
        }
    }
}
