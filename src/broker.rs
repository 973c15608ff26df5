//! The embedded Kafka-compatible broker: tansu 0.6 with SQLite storage, run
//! on its own runtime threads so broker work never stalls request handling.
//!
//! Two workarounds live here, each for a measured reason (docs/design.md):
//! - **Key index.** tansu compacts with a `GROUP BY (topition, k)` over the
//!   `record` table, which has no index on `k`; on 200,000 records it kept the
//!   broker busy for over a minute, refusing connections. kafkv creates
//!   `record (topition, k, offset_id)` once the broker's schema exists and
//!   before it serves, which brings that compaction under half a second.
//! - **Data path.** tansu joins the SQLite path onto the working directory even
//!   when it is absolute (`sqlite:///a/b` opens `$PWD/a/b`), so kafkv hands it
//!   a path relative to the working directory, whatever the user gave.

use std::{
    net::SocketAddr,
    path::{Component, Path, PathBuf},
    time::{Duration, Instant},
};

use tansu_broker::{broker::Broker, coordinator::group::administrator::Controller};
use tansu_storage::StorageContainer;
use tokio::{runtime::Runtime, sync::oneshot};
use tracing::{error, info};
use url::Url;

/// The embedded broker's settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address the broker listens on and advertises. Default `127.0.0.1:9092`.
    pub listen: SocketAddr,
    /// Directory for the broker's SQLite database. Default `./kafkv-data`.
    pub data_dir: PathBuf,
    /// How often the broker compacts (and applies retention). Default 1 minute.
    pub maintenance_interval: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            data_dir: PathBuf::from("kafkv-data"),
            maintenance_interval: Duration::from_secs(60),
        }
    }
}

/// The index that makes tansu's compaction linear instead of quadratic.
const KEY_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS kafkv_record_key ON record (topition, k, offset_id)";

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
    #[error("could not create the key index in {path}: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error(
        "embedded broker did not accept connections on {0} within {1:?}; \
         is another process using the port? (--broker-listen)"
    )]
    NotListening(SocketAddr, Duration),
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
}

impl EmbeddedBroker {
    /// Starts the broker and returns once it accepts connections.
    pub async fn start(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let started = Instant::now();
        // tansu binds inside its serve loop and only logs a failure there, and
        // the readiness check below would then connect to whichever process
        // holds the port and call it up. Bind first, so a taken port is a
        // start-up error; the probe is closed just before tansu binds.
        let probe = std::net::TcpListener::bind(config.listen).map_err(|e| BrokerError::Bind {
            address: config.listen,
            reason: e.to_string(),
        })?;
        let data_dir_error = |reason: String| BrokerError::DataDir {
            path: config.data_dir.clone(),
            reason,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| data_dir_error(e.to_string()))?;
        let database = config.data_dir.join(DATABASE_FILE);
        let cwd = std::env::current_dir().map_err(|e| data_dir_error(e.to_string()))?;
        let storage =
            storage_url(&database, &cwd, config.maintenance_interval).map_err(data_dir_error)?;
        let listener = Url::parse(&format!("tcp://{}", config.listen))
            .map_err(|e| BrokerError::Start(e.to_string()))?;

        // Two workers: connection handling keeps going while maintenance runs.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kafkv-broker")
            .enable_all()
            .build()
            .map_err(|e| BrokerError::Start(e.to_string()))?;

        drop(probe);
        let (built, built_rx) = oneshot::channel();
        let (served, mut served_rx) = oneshot::channel();
        let index_path = database.clone();
        runtime.spawn(async move {
            let database = index_path;
            let prepared = async {
                let mut broker =
                    Broker::<Controller<StorageContainer>, StorageContainer>::builder()
                        .node_id(tansu_broker::NODE_ID)
                        .cluster_id("kafkv")
                        .incarnation_id(uuid::Uuid::new_v4())
                        .advertised_listener(listener.clone())
                        .storage(storage)
                        .listener(listener)
                        .silent(true)
                        .build()
                        .await
                        .map_err(|e| BrokerError::Start(e.to_string()))?;
                create_key_index(&database).await?;
                Ok::<_, BrokerError>(async move { broker.serve(Instant::now().into()).await })
            };
            match prepared.await {
                Ok(serve) => {
                    let _ = built.send(Ok(()));
                    let outcome = serve.await;
                    if let Err(e) = &outcome {
                        error!(error = ?e, "embedded broker stopped");
                    }
                    let _ = served.send(outcome.map_err(|e| format!("{e:?}")));
                }
                Err(e) => {
                    let _ = built.send(Err(e));
                }
            }
        });

        let broker = EmbeddedBroker {
            address: config.listen,
            runtime: Some(runtime),
        };
        built_rx
            .await
            .map_err(|_| BrokerError::Start("the broker task ended".into()))??;
        // `serve` binds inside tansu; wait until it accepts, or report why it ended.
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

async fn create_key_index(database: &Path) -> Result<(), BrokerError> {
    let index_error = |e: libsql::Error| BrokerError::Index {
        path: database.to_path_buf(),
        reason: e.to_string(),
    };
    let db = libsql::Builder::new_local(database)
        .build()
        .await
        .map_err(index_error)?;
    let connection = db.connect().map_err(index_error)?;
    connection
        .execute(KEY_INDEX, ())
        .await
        .map_err(index_error)?;
    Ok(())
}

/// The `sqlite:` URL that makes tansu open `database`, given that tansu joins
/// the URL's path onto `cwd`. An absolute path becomes one that climbs from
/// `cwd` to the root first (`..` at the root stays at the root).
fn storage_url(database: &Path, cwd: &Path, maintenance: Duration) -> Result<Url, String> {
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
    let url = Url::parse(&format!(
        "sqlite:{text}?maintenance_interval={}ms",
        maintenance.as_millis()
    ))
    .map_err(|e| e.to_string())?;
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
            let url = storage_url(Path::new(given), cwd, Duration::from_secs(60)).unwrap();
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
        let url = storage_url(Path::new("/tmp/my data/b.db"), cwd, Duration::ZERO).unwrap();
        assert_eq!(
            normalize(&opened_by_tansu(&url, cwd)),
            PathBuf::from("/tmp/my data/b.db")
        );
        for bad in ["/tmp/a#b/b.db", "/tmp/a?b/b.db"] {
            let err = storage_url(Path::new(bad), cwd, Duration::ZERO).unwrap_err();
            assert!(err.contains("cannot open"), "{bad}: {err}");
        }
    }

    #[test]
    fn maintenance_interval_travels_in_the_url() {
        let url = storage_url(Path::new("b.db"), Path::new("/"), Duration::from_secs(90)).unwrap();
        assert_eq!(url.query(), Some("maintenance_interval=90000ms"));
    }
}
