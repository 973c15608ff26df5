//! The shared test harness: real broker processes (`kafkv broker` on a free
//! loopback port, or `KAFKV_TEST_BROKERS`), in-process kafkv instances served
//! on `127.0.0.1:0`, a unique topic per test, and a plain rdkafka client to
//! look at the topic from outside.
//!
//! The processes are `kafkv-testkit`'s, which the bench runs too; the
//! wrappers here give them this build's `kafkv` binary and turn their errors
//! into panics. The in-process server is the library's `service::spawn`.
//!
//! Nothing here skips: if a broker cannot be started, the test panics.

use std::{
    collections::BTreeMap,
    future::Future,
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use kafkv::{
    Store, StoreConfig,
    service::{self, Listeners, Server},
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use tokio::task::JoinHandle;

pub const KAFKV: &str = env!("CARGO_BIN_EXE_kafkv");

/// Generous bound for conditions the tests wait on; reaching it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    kafkv_testkit::free_port().expect("bind a free port")
}

/// A topic name no other test (or earlier run against the same brokers) uses.
pub fn unique_topic(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `condition` until it holds; panics with `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `kafkv broker` child process with its own data dir
/// ([`kafkv_testkit::BrokerProcess`] running this build's `kafkv`).
pub struct BrokerProcess(kafkv_testkit::BrokerProcess);

impl BrokerProcess {
    pub async fn start() -> Self {
        Self::start_with(Duration::from_secs(60)).await
    }

    /// A broker that compacts every `maintenance`.
    pub async fn start_with(maintenance: Duration) -> Self {
        match kafkv_testkit::BrokerProcess::start(Path::new(KAFKV), maintenance).await {
            Ok(broker) => BrokerProcess(broker),
            Err(e) => panic!("could not start `kafkv broker`: {e}"),
        }
    }

    pub fn address(&self) -> String {
        self.0.address()
    }

    pub fn log(&self) -> String {
        self.0.log()
    }

    /// SIGKILL: the broker vanishes mid-whatever.
    pub fn kill(&mut self) {
        self.0.kill();
    }

    /// Starts the broker again on the same port and data.
    pub async fn restart(&mut self) {
        if let Err(e) = self.0.restart().await {
            panic!("{e}");
        }
    }

    /// SIGSTOP: connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.0.pause().expect("SIGSTOP the broker");
    }

    pub fn resume(&self) {
        self.0.resume().expect("SIGCONT the broker");
    }
}

/// The Kafka a test runs against.
pub enum Kafka {
    Own(BrokerProcess),
    External(String),
}

impl Kafka {
    /// `KAFKV_TEST_BROKERS` if set, else a fresh broker process.
    pub async fn start() -> Kafka {
        match std::env::var("KAFKV_TEST_BROKERS") {
            Ok(brokers) if !brokers.trim().is_empty() => Kafka::External(brokers),
            _ => Kafka::Own(BrokerProcess::start().await),
        }
    }

    pub fn brokers(&self) -> String {
        match self {
            Kafka::Own(broker) => broker.address(),
            Kafka::External(brokers) => brokers.clone(),
        }
    }

    /// A store config for a fresh topic on this Kafka, with test-friendly bounds.
    pub fn config(&self, topic: &str) -> StoreConfig {
        test_config(&self.brokers(), topic)
    }
}

pub fn test_config(brokers: &str, topic: &str) -> StoreConfig {
    StoreConfig::new(brokers).topic(topic).on_single_broker()
}

/// A kafkv instance in this process: the library store behind the HTTP API.
pub struct Kafkv {
    pub store: Store,
    pub base: String,
    /// The RESP front end's address.
    pub resp: std::net::SocketAddr,
    pub http: reqwest::Client,
    server: Option<Server>,
}

impl Kafkv {
    /// Opens the store (bootstrap included) and serves it on `127.0.0.1:0`.
    pub async fn start(config: StoreConfig) -> Kafkv {
        let store = Store::open(config).await.expect("open store");
        Self::serve(store).await
    }

    pub async fn serve(store: Store) -> Kafkv {
        Self::serve_with(store, None).await
    }

    /// Serves HTTP and RESP, with `auth_token` required on both when given.
    pub async fn serve_with(store: Store, auth_token: Option<&str>) -> Kafkv {
        let mut front_ends = service::FrontEnds::new(store.config());
        front_ends.auth_token = auth_token.map(str::to_owned);
        Self::serve_front_ends(store, front_ends).await
    }

    /// Opens the store and serves HTTP on `127.0.0.1:http_port`, so a
    /// restarted instance is found where clients left the last one.
    pub async fn start_on(config: StoreConfig, http_port: u16) -> Kafkv {
        let store = Store::open(config).await.expect("open store");
        let front_ends = service::FrontEnds::new(store.config());
        Self::serve_at(store, front_ends, &format!("127.0.0.1:{http_port}")).await
    }

    pub async fn serve_front_ends(store: Store, front_ends: service::FrontEnds) -> Kafkv {
        Self::serve_at(store, front_ends, "127.0.0.1:0").await
    }

    async fn serve_at(store: Store, front_ends: service::FrontEnds, http: &str) -> Kafkv {
        let listeners = Listeners {
            http: tokio::net::TcpListener::bind(http).await.unwrap(),
            resp: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
        };
        let server = service::spawn(store.clone(), listeners, front_ends).expect("serve");
        Kafkv {
            store,
            base: format!("http://{}", server.http_address()),
            resp: server.resp_address().expect("RESP is on"),
            http: reqwest::Client::new(),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The Prometheus text at `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics text")
    }

    /// Begins a graceful shutdown; returns the task that completes it.
    pub fn begin_stop(&mut self) -> JoinHandle<()> {
        let server = self.server.take().expect("running");
        server.begin_stop();
        tokio::spawn(server.stop())
    }

    pub async fn stop(mut self) {
        self.begin_stop().await.expect("service task");
    }

    /// Every live key and value, read through the library API.
    pub async fn state(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        state_of(&self.store).await
    }
}

pub async fn state_of(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .scan(b"", None, usize::MAX, usize::MAX, kafkv::Consistency::Local)
        .await
        .expect("scan")
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.value.to_vec()))
        .collect()
}

/// A `redis` crate connection to a RESP front end at `address`, with
/// timeouts fit for a loaded test machine (the crate's defaults are 1 s to
/// connect and 500 ms per reply). An error, not a panic: a test that kills
/// instances tells "down" from "answered".
pub async fn redis_connection(
    address: std::net::SocketAddr,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis_connection_to(&format!("redis://{address}/")).await
}

/// [`redis_connection`] to a `redis://` URL (`?protocol=resp3`, a password).
pub async fn redis_connection_to(
    url: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(30)))
        .set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

pub fn client(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// Creates `topic` with `partitions` partitions and the broker's defaults,
/// as any Kafka application might (not compacted).
pub async fn create_plain_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        client(brokers).create().expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// A producer like any other Kafka application's.
pub fn producer(brokers: &str) -> FutureProducer {
    client(brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces records concurrently; `None` values are tombstones.
pub async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    records: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
) {
    use futures::stream::{self, StreamExt};
    stream::iter(records)
        .map(|(key, value)| async move {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).key(&key);
            if let Some(value) = &value {
                record = record.payload(value);
            }
            producer
                .send(record, Timeout::After(Duration::from_secs(30)))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        })
        .buffer_unordered(5_000)
        .for_each(|sent| async move { sent.expect("produce") })
        .await;
}

/// Each partition's (earliest, end) offsets.
pub async fn watermarks(brokers: &str, topic: &str) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = client(brokers).create().unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata.topics()[0].partitions().len() as i32;
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks")
            })
            .collect()
    })
    .await
    .unwrap()
}

/// The sum of the end offsets: how many offsets the topic has used.
pub async fn end_offset_total(brokers: &str, topic: &str) -> i64 {
    watermarks(brokers, topic)
        .await
        .iter()
        .map(|(_, end)| end)
        .sum()
}

/// One raw record as a plain consumer sees it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Milliseconds since the epoch, as the broker reports it.
    pub timestamp: Option<i64>,
}

/// Every record in the topic up to its current end offsets, per partition in order.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<RawRecord> {
    read_topic_with_headers(brokers, topic)
        .await
        .into_iter()
        .map(|r| r.record)
        .collect()
}

/// A raw record with its headers, in the order the broker returned them.
#[derive(Debug, Clone)]
pub struct HeadedRecord {
    pub record: RawRecord,
    /// (name, value); a header may have a null value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl HeadedRecord {
    /// The first header named `name`, as UTF-8 (`None` if absent, null or not UTF-8).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// [`read_topic`], keeping each record's headers (kafkv's `kafkv.*` headers
/// say what an operation, repair or SWEEP record is).
pub async fn read_topic_with_headers(brokers: &str, topic: &str) -> Vec<HeadedRecord> {
    let ends = watermarks(brokers, topic).await;
    let consumer: BaseConsumer = client(brokers)
        .set("group.id", "kafkv-tests")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut assignment = TopicPartitionList::new();
        for p in 0..ends.len() as i32 {
            assignment
                .add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut records = Vec::new();
        let mut done: Vec<bool> = ends.iter().map(|(_, end)| *end == 0).collect();
        let deadline = Instant::now() + PATIENCE;
        while !done.iter().all(|d| *d) {
            assert!(Instant::now() < deadline, "reading {topic} timed out");
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.expect("consume");
            let p = message.partition() as usize;
            if message.offset() + 1 >= ends[p].1 {
                done[p] = true;
            }
            if message.offset() < ends[p].1 {
                use rdkafka::message::Headers;
                let headers = message.headers().map_or_else(Vec::new, |headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                });
                records.push(HeadedRecord {
                    record: RawRecord {
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                        timestamp: message.timestamp().to_millis(),
                    },
                    headers,
                });
            }
        }
        records
    })
    .await
    .unwrap()
}

/// What a fresh replay of `records` gives: the state every instance must reach.
pub fn replay(records: &[RawRecord]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = BTreeMap::new();
    for record in records {
        let Some(key) = &record.key else { continue };
        match &record.value {
            Some(value) => state.insert(key.clone(), value.clone()),
            None => state.remove(key),
        };
    }
    state
}

/// GETs `url` and parses the answer as JSON, whatever its status.
pub async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON body")
}

/// Percent-encodes every byte that is not alphanumeric, for keys in URLs.
pub fn encode_key(key: &[u8]) -> String {
    percent_encoding::percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `kafkv serve` as a child process, as a user runs it, with its HTTP API on
/// a free port and its log in a file ([`kafkv_testkit::ServeProcess`]
/// running this build's `kafkv`).
pub struct ServeProcess(kafkv_testkit::ServeProcess);

impl ServeProcess {
    /// Starts `kafkv serve <args>` in `cwd` and waits until `/readyz` is 200.
    pub async fn start(cwd: &Path, args: &[&std::ffi::OsStr]) -> ServeProcess {
        match kafkv_testkit::ServeProcess::start(Path::new(KAFKV), cwd, args, PATIENCE).await {
            Ok(serve) => ServeProcess(serve),
            Err(e) => panic!("{e}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.0.url(path)
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    pub fn log(&self) -> String {
        self.0.log()
    }

    /// SIGTERM, then the exit status and the log.
    pub fn terminate(self) -> (std::process::ExitStatus, String) {
        self.0.terminate(PATIENCE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(self) -> String {
        self.0.kill9().expect("SIGKILL kafkv serve").1
    }
}

/// Python in a virtualenv under ~/.cache (made on first use) that can
/// import `module`, installed as `requirement` (pinned) if it cannot yet;
/// `python3` with its `venv` module and PyPI must be reachable.
pub fn python_with(module: &str, requirement: &str) -> std::path::PathBuf {
    // Tests run in parallel in this one process: one pip at a time.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let home = std::env::var_os("HOME").expect("HOME is set");
    let venv = std::path::Path::new(&home).join(".cache/kafkv-py");
    let python = venv.join("bin/python");
    let imports = |python: &std::path::Path| {
        std::process::Command::new(python)
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !imports(&python) {
        if !python.exists() {
            let made = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs: install python3 and python3-venv");
            assert!(made.success(), "python3 -m venv {venv:?} failed");
        }
        let installed = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "-q", requirement])
            .status()
            .expect("pip runs");
        assert!(installed.success(), "pip install {requirement} failed");
    }
    assert!(
        imports(&python),
        "{module} is not importable from {python:?}"
    );
    python
}
