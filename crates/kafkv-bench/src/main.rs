//! `kafkv-bench`: measurements of kafkv beside the raw Kafka client doing the
//! same work against the same broker, in one run, printed as a table (and
//! optionally written as JSON).
//!
//! - Sequential write latency: one HTTP client, one `PUT /v1/kv/{key}` at a
//!   time, beside one librdkafka producer (same settings as kafkv's) sending
//!   one record at a time and waiting for its acknowledgement.
//! - Bootstrap: a topic of N records (16-byte keys, 100-byte values, 10% of
//!   them overwrites and 1% tombstones) read by a plain librdkafka consumer,
//!   beside `Store::open` materializing it; then the same with `--state
//!   disk` (first start, which writes the view and its checkpoint), and a
//!   restart with nothing changed beside the memory state's full replay.
//! - RESP: `redis-benchmark` (SET then GET, 50 clients, random keys, with and
//!   without `-P 16`) against kafkv's Redis front end and against a
//!   `redis-server` the bench starts without persistence on another port.
//! - HTTP: GET and PUT `/v1/kv/{key}` throughput and p50/p99 latency with
//!   `--concurrency` requests in flight from the bench's own load generator
//!   (`http_load.rs`); nothing else serves this API, so these rows have no peer.
//! - Write throughput: HTTP PUTs at `--concurrency` beside librdkafka
//!   producing the same records with at most as many sends outstanding.
//! - Memory per key: the RSS of a `kafkv serve` child process on an empty
//!   topic and on one of N distinct keys, beside `redis-server`'s `INFO
//!   memory` before and after loading the same keys.
//! - Read-modify-write: INCR beside SET in the same run — latency at one
//!   client, alone and with another instance writing; throughput, records
//!   written and a `kafkv serve` child's CPU per request at 50 clients on one
//!   key — each row with issue 17's goal and whether it was met.
//! - Expiry: memory per key with a time to live beside one without (and
//!   redis-server's); a million keys expiring in the same second through
//!   three `kafkv serve` children (gone from reads, swept off the topic,
//!   SWEEPs per key, GET p99 meanwhile, CPU); the sweep delay of keys
//!   expiring one by one — each row with docs/expiry.md's goal and whether
//!   it was met.
//!
//! Each measurement has its own fresh topic, named after the bench's pid.
//! kafkv is served in this process through `kafkv::service::spawn`, except
//! where a measurement needs it in a process of its own (memory, idle, cpu,
//! rmw's 50-client runs, and expiry).
//!
//! Without `--brokers` it starts `kafkv broker` as a child process on a free
//! loopback port with a temporary data dir. That, and the sections' `kafkv
//! serve` children, run the `kafkv` binary beside this one (or `--kafkv-bin`):
//! `cargo build --release` builds it.
//!
//! # Layout
//! - `main.rs`: the command line, the broker, the sections in order.
//! - `error.rs`: what a run can fail with.
//! - `kafka.rs`: what the sections share: kafkv's client settings for the
//!   raw baselines, producing and consuming topics, kafkv served in process.
//! - `serve_child.rs`: `kafkv serve` children with RESP, and their metrics.
//! - `resp_client.rs`: a RESP client, one command at a time or pipelined.
//! - `report.rs`: rows, goals, percentiles, the table and the JSON.
//! - One file per section: `writes.rs`, `bootstrap.rs`, `redis_peer.rs`
//!   (resp), `http_load.rs` (http, and the load generator `throughput.rs`
//!   shares), `throughput.rs`, `memory.rs` (whose loads and RSS readings
//!   `expiry.rs` reuses), `idle.rs`, `cpu.rs` (with `cpu_time.rs`),
//!   `watch.rs`, `rmw.rs`, `expiry.rs`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use kafkv_testkit::BrokerProcess;
use tracing_subscriber::EnvFilter;

mod bootstrap;
mod collections;
mod cpu;
mod cpu_time;
mod error;
mod expiry;
mod http_load;
mod idle;
mod kafka;
mod memory;
mod redis_peer;
mod report;
mod resp_client;
mod rmw;
mod serve_child;
mod throughput;
mod watch;
mod writes;

use error::{Error, Result};
use report::Report;

/// What to measure and where.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Measure kafkv beside the raw Kafka client on the same broker and print a table"
)]
struct BenchConfig {
    /// Kafka bootstrap servers; without it, a `kafkv broker` process on a free port.
    #[arg(long, env = "KAFKV_BROKERS")]
    brokers: Option<String>,
    /// The `kafkv` binary run as the broker and as the sections' `kafkv serve` children
    /// [default: `kafkv` beside this executable; `cargo build --release` builds it].
    #[arg(long, value_name = "PATH")]
    kafkv_bin: Option<PathBuf>,
    /// Records in the bootstrap topic.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Sequential writes measured on each side.
    #[arg(long, default_value_t = 2_000)]
    writes: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Whose Fetch and Produce the brokers the bench starts serve: `kafkv` (long
    /// poll and tail cache; prepared statements, shared transactions), `kafkv-fetch`
    /// (kafkv's Fetch, tansu's Produce) or `tansu` (tansu 0.6's own: SQLite for every
    /// fetch, statements compiled for every produce). Several run the chosen sections
    /// once per value, each on a broker of its own, and label the rows of all but
    /// `kafkv`: issue 19's before/after in one run.
    #[arg(long = "broker-paths", value_delimiter = ',', default_value = "kafkv")]
    broker_paths: Vec<BrokerPaths>,
    /// When the brokers the bench starts acknowledge a write (`kafkv broker --sync`):
    /// `commit` (after an fsync of their write-ahead log, kafkv's default) or `none`.
    #[arg(long = "broker-sync", default_value = "commit", value_parser = ["commit", "none"])]
    broker_sync: String,
    /// The value of `--broker-paths` this pass runs with.
    #[arg(skip)]
    paths_now: BrokerPaths,
    /// Run only these measurements.
    #[arg(
        long = "only",
        value_delimiter = ',',
        default_value = "writes,bootstrap,resp,http,throughput,memory,idle,cpu,watch,rmw,expiry"
    )]
    sections: Vec<Section>,
    /// redis-benchmark requests per GET test, on each side.
    #[arg(long, default_value_t = 200_000)]
    resp_get_requests: usize,
    /// The --fetch-wait of the kafkv instance in the RESP comparison.
    // tansu alone answered every idle fetch only when this ran out, so a short
    // wait cost broker CPU on a machine the load generator shares; kafkv's
    // long poll (src/broker/long_poll.rs) now holds idle fetches instead.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    resp_fetch_wait: Duration,
    /// redis-benchmark requests per SET test, on each side.
    #[arg(long, default_value_t = 20_000)]
    resp_set_requests: usize,
    /// Requests in flight at once in the HTTP and write-throughput measurements (one client
    /// task each, on its own kept-alive connection; produce sends outstanding on the raw side).
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    concurrency: usize,
    /// GET /v1/kv/{key} requests in the HTTP measurement (random keys from 10,000 written first).
    #[arg(long, default_value_t = 200_000)]
    http_get_requests: usize,
    /// PUT /v1/kv/{key} requests in the HTTP measurement (random keys from the same 10,000).
    #[arg(long, default_value_t = 20_000)]
    http_put_requests: usize,
    /// Records written on each side of the write-throughput comparison (distinct 16-byte keys).
    #[arg(long, default_value_t = 20_000)]
    throughput_records: usize,
    /// Distinct keys (16-byte, --value-bytes values) loaded into a `kafkv serve` child process
    /// and into redis-server for the memory-per-key comparison.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    memory_keys: usize,
    /// How long the idle `kafkv serve` child's CPU is measured.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    idle_seconds: Duration,
    /// Acknowledged writes per workload in the CPU-per-write measurement.
    #[arg(long, default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    cpu_writes: usize,
    /// Writes through one instance timed until visible on another.
    #[arg(long, default_value_t = 200, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    visibility_writes: usize,
    /// Writes per fan-out run of the watch measurement (0, 1 and 100 watchers).
    #[arg(long, default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    watch_writes: usize,
    /// redis-benchmark requests per list, set, hash and sorted-set test (each on
    /// one key, at 50 clients, as its default list runs them).
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    collection_requests: usize,
    /// redis-benchmark requests per test (SET, then INCR) at 50 clients on one key in
    /// the read-modify-write measurement.
    #[arg(long, default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    rmw_requests: usize,
    /// Runs of each test (SET, INCR) at 50 clients on one key, interleaved SET, INCR,
    /// INCR, SET, …, pooled into one figure each: a drift of the machine's speed
    /// during the section then weighs on both alike.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    rmw_rounds: usize,
    /// Distinct keys written with `SET … EX 3600` through a `kafkv serve` child, and
    /// plain to another topic, for the memory per volatile key (and into redis-server).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    expiry_memory_keys: usize,
    /// Keys set to expire in the same second through three `kafkv serve` children
    /// (`SET … PXAT`, round robin) in the bulk-expiry measurement. docs/expiry.md's
    /// figure is 1,000,000, but on a 2-core machine the embedded broker takes 3,000 to
    /// 6,000 of these SETs a second through three instances, so their load alone
    /// would take 3 to 6 minutes.
    #[arg(long, default_value_t = 100_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    expiry_bulk_keys: usize,
    /// Keys without expiry beside the bulk, whose GET latency is sampled before and
    /// during its sweep.
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(3..))]
    expiry_other_keys: usize,
    /// How far ahead of the bulk load's start its expiry second is [default: 1.5
    /// times what the load should take at the rates measured for the other keys
    /// and the memory loads, plus 10 s].
    #[arg(long, value_parser = humantime::parse_duration)]
    expiry_bulk_lead: Option<Duration>,
    /// Loads the bulk's keys in a shuffled order instead of in key order: every
    /// record then lands on a random page of the embedded broker's key index (and
    /// of each instance's key order), where loading in key order appends to both.
    #[arg(long)]
    expiry_bulk_shuffled: bool,
    /// Keys a second written with `SET … PX 1000` (and, first, plain) in the
    /// steady-state sweep measurement.
    #[arg(long, default_value_t = 1_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    expiry_steady_rate: usize,
    /// How long each steady-state run writes.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    expiry_steady_seconds: Duration,
}

/// Whose Fetch and Produce a broker the bench starts serves (`kafkv broker
/// --broker-paths`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum BrokerPaths {
    #[default]
    Kafkv,
    KafkvFetch,
    Tansu,
}

impl BrokerPaths {
    fn name(self) -> &'static str {
        match self {
            BrokerPaths::Kafkv => "kafkv",
            BrokerPaths::KafkvFetch => "kafkv-fetch",
            BrokerPaths::Tansu => "tansu",
        }
    }

    /// The flags that select it, for `kafkv broker` and `kafkv serve`.
    fn flags(self) -> [&'static str; 2] {
        ["--broker-paths", self.name()]
    }
}

impl BenchConfig {
    /// The flags of every broker the bench starts, for `kafkv broker` and
    /// `kafkv serve` alike.
    fn broker_flags(&self) -> Vec<&str> {
        let mut flags = self.paths_now.flags().to_vec();
        flags.extend(["--broker-sync", self.broker_sync.as_str()]);
        flags
    }
}

/// A group of measurements `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// Sequential write latency beside raw produce+ack.
    Writes,
    /// Bootstrap beside a raw consumer.
    Bootstrap,
    /// redis-benchmark against kafkv's RESP port and redis-server.
    Resp,
    /// redis-benchmark's list, set, hash and sorted-set tests against kafkv's
    /// RESP port and redis-server.
    Collections,
    /// HTTP GET and PUT throughput and latency at `--concurrency` (no peer).
    Http,
    /// Write throughput at `--concurrency`: HTTP PUT beside raw produce.
    Throughput,
    /// Memory per key of a `kafkv serve` process beside redis-server.
    Memory,
    /// An idle `kafkv serve`'s CPU on its embedded broker, and how soon a
    /// write through another instance is visible on it (no peer).
    Idle,
    /// CPU per 1,000 acknowledged writes of a `kafkv serve` child and of its
    /// `kafkv broker`, beside a raw producer's at the same concurrency.
    Cpu,
    /// Change streams: write-to-event latency on this and another instance
    /// beside read visibility, fan-out to 1 and 100 watchers, memory per
    /// idle watcher (no peer).
    Watch,
    /// Read-modify-write: INCR beside SET at 1 client (alone and with another
    /// instance writing) and at 50 clients on one key (throughput, records
    /// per INCR, a `kafkv serve` child's CPU), each with its goal.
    Rmw,
    /// Expiry: memory per volatile key beside redis-server; a bulk expiry
    /// through three instances (reads, sweep time, SWEEPs per key, GET p99,
    /// CPU); steady-state sweep delay and CPU per swept key; each with its goal.
    Expiry,
}

impl Section {
    /// Sections that start their own broker (and need the kafkv binary).
    fn runs_own_broker(self) -> bool {
        matches!(self, Section::Idle | Section::Cpu)
    }

    /// Sections that run the kafkv binary (a broker or `kafkv serve`).
    fn runs_kafkv(self) -> bool {
        self.runs_own_broker() || matches!(self, Section::Memory | Section::Rmw | Section::Expiry)
    }
}

/// One progress line on stderr; the table goes to stdout.
fn progress(text: impl AsRef<str>) {
    eprintln!("bench: {}", text.as_ref());
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(BenchConfig::parse()).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafkv-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every chosen measurement once per `--broker-paths`, prints the
/// table and writes the JSON.
async fn run(config: BenchConfig) -> Result<Report> {
    let mut passes = Vec::new();
    for paths in config.broker_paths.clone() {
        let pass = BenchConfig {
            paths_now: paths,
            ..config.clone()
        };
        progress(format!("brokers serve --broker-paths {}", paths.name()));
        let mut report = run_pass(pass).await?;
        if paths != BrokerPaths::Kafkv {
            for row in &mut report.rows {
                row.measurement = format!("[{}] {}", paths.name(), row.measurement);
            }
        }
        passes.push(report);
    }
    let mut report = passes.pop().expect("at least one --broker-paths");
    for earlier in passes.into_iter().rev() {
        report.rows.splice(0..0, earlier.rows);
    }
    report.print_table();
    if let Some(path) = &config.json {
        report.write_json(path)?;
    }
    Ok(report)
}

/// Runs every chosen measurement once.
async fn run_pass(config: BenchConfig) -> Result<Report> {
    let kafkv = kafkv_binary(config.kafkv_bin.as_deref())?;
    let needs_kafkv = config.brokers.is_none() || config.sections.iter().any(|s| s.runs_kafkv());
    if needs_kafkv && !kafkv.is_file() {
        return Err(Error::NoKafkv(kafkv));
    }
    // Kept until the end: dropping it stops the broker and removes its data.
    let mut own_broker = None;
    // The idle and CPU sections run their own brokers; every other one uses this.
    let needs_broker = config.sections.iter().any(|s| !s.runs_own_broker());
    let (brokers, broker) = match &config.brokers {
        Some(brokers) => (brokers.clone(), format!("external ({brokers})")),
        None if !needs_broker => (String::new(), "their own (idle, cpu sections)".to_owned()),
        None => {
            progress(format!("starting {} broker", kafkv.display()));
            let started = BrokerProcess::start_with_args(
                &kafkv,
                Duration::from_secs(3600),
                &config.broker_flags(),
            )
            .await?;
            let address = started.address();
            own_broker = Some(started);
            (
                address,
                format!(
                    "kafkv broker: tansu 0.6.0 (SQLite), --sync {}",
                    config.broker_sync
                ),
            )
        }
    };
    let run_id = std::process::id();
    let mut rows = Vec::new();
    let mut produced = 0;

    if config.sections.contains(&Section::Writes) {
        rows.extend(writes::compare(&brokers, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Bootstrap) {
        let (records, bootstrap_rows) = bootstrap::compare(&brokers, run_id, &config).await?;
        produced = records;
        rows.extend(bootstrap_rows);
    }
    if config.sections.contains(&Section::Resp) {
        rows.extend(redis_peer::compare(&brokers, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Collections) {
        rows.extend(collections::compare(&brokers, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Http) {
        rows.extend(http_load::measure(&brokers, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Throughput) {
        rows.extend(throughput::compare(&brokers, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Memory) {
        rows.extend(memory::compare(&kafkv, &brokers, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Idle) {
        rows.extend(idle::measure(&kafkv, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Cpu) {
        rows.extend(cpu::measure(&kafkv, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Watch) {
        rows.extend(watch::measure(&brokers, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Rmw) {
        rows.extend(rmw::measure(&kafkv, &brokers, run_id, &config).await?);
    }
    if config.sections.contains(&Section::Expiry) {
        // The broker's CPU is measured too when the bench started it.
        let broker_pid = own_broker.as_ref().and_then(BrokerProcess::pid);
        rows.extend(expiry::measure(&kafkv, &brokers, broker_pid, run_id, &config).await?);
    }

    drop(own_broker);
    Ok(Report {
        broker,
        records: produced,
        writes: config.writes,
        rows,
    })
}

/// The `kafkv` binary to run: `--kafkv-bin`, else `kafkv` beside this
/// executable (where `cargo build` puts it). Whether it exists is checked
/// where it is needed.
fn kafkv_binary(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path.to_owned()),
        None => Ok(std::env::current_exe()?.with_file_name("kafkv")),
    }
}
