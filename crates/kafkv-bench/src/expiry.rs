//! Expiry (docs/expiry.md, "Bench"): what a key with a time to live costs,
//! how a million keys expiring in the same second leave every instance and
//! the topic, and how soon keys expiring one by one are swept. Each row with
//! a goal names it and whether this run met it.
//!
//! Keys are the bench's 16-byte `key-{i:012}` with `--value-bytes` values,
//! written over RESP, so the topic holds exactly what `SET … EX/PXAT/PX`
//! writes (`redis-cli --pipe` for bulk loads).
//!
//! - **Memory per volatile key.** `--expiry-memory-keys` keys are written
//!   through a `kafkv serve` child with plain `SET` to one topic and with
//!   `SET … EX 3600` to another; a fresh child then reads each topic to ready
//!   and its RSS is taken as memory.rs takes it. The figure is (RSS with
//!   expiries − RSS without) / keys (goal ≤ 16 bytes), beside redis-server
//!   loaded the same two ways (the difference of `INFO memory`'s
//!   `used_memory` deltas). A fresh child is measured rather than the one
//!   written through, so that the write path's buffers and the allocator's
//!   leftovers from them do not blur a figure of a few bytes per key; for
//!   the same reason the measured children run with one malloc arena
//!   ([`one_arena`]). Even so the figure moves by about ±3 bytes a key from
//!   run to run at 1,000,000 keys (12.2 to 18.5 in three runs).
//! - **Bulk expiry.** Three `kafkv serve` children on one topic. First
//!   `--expiry-other-keys` keys without expiry (round robin, pipelined),
//!   whose load also times the three instances' write rate; then
//!   `--expiry-bulk-keys` keys `SET … PXAT <T>`, round robin, one
//!   `redis-cli --pipe` per instance at once, for a whole second `T` far
//!   enough ahead for the load (`--expiry-bulk-lead`; by default 1.5 times
//!   what the load should take, estimated from the other keys' rate and
//!   the memory loads', plus 10 s). Once every instance holds every
//!   key, a sequential client GETs other keys on the three instances in turn
//!   (1 ms apart, on a thread of its own scheduled as kafkv's RESP threads
//!   are, `kafkv::scheduling`: it stands for a client on another machine,
//!   and on two busy cores it would otherwise time its own wait for a CPU)
//!   until the sweep is over: its p99 before `T` (idle) and
//!   from `T` until every SWEEP is in (during the sweep), goal ≤ 2× idle. At
//!   `T` the bench polls each instance with `EXISTS` of 1,000 sampled keys
//!   and `DBSIZE`: the time from `T` until the samples read absent on all
//!   three, and until DBSIZE dropped by the bulk everywhere (goal ≤ 10 ms
//!   each: reads hide an expired key by the local clock). Then it waits
//!   until the instances have no expired key left to sweep (their
//!   `kafkv_expiry_due_keys`, where exported; otherwise until the topic has
//!   grown by the bulk and stopped growing for 2 s) and reads the topic
//!   from where it ended at `T`: every record with `kafkv.expired` is a
//!   SWEEP. Per key, its first SWEEP at or after its expiry is the one that
//!   deleted it; the last of those, from `T`, is the time until every key
//!   was swept (goal ≤ 30 s), and SWEEPs over the keys swept is the
//!   tombstones per key (goal ≤ 1.1). The wait ends after 60 s plus 100 µs per key even if the
//!   sweep is not over; the rows then say how many keys were swept. The
//!   children's and the broker's CPU from just before `T` to the end of the
//!   wait, over the keys swept, is the CPU per swept key (no goal; nothing
//!   else is written meanwhile).
//! - **Steady state.** On three fresh instances and topic (a bulk sweep
//!   cut short by its wait must not weigh on it), `--expiry-steady-rate` keys a
//!   second for `--expiry-steady-seconds`, round robin, each written once:
//!   first plain `SET`s, then `SET … PX 1000`, each run followed by the same
//!   3 s (the TTL, the default `--expiry-sweep-within` of 1 s, and 1 s to
//!   spare). The sweep delay of a key is its first deleting SWEEP's
//!   timestamp minus the expiry the SWEEP names (`<e>` of `kafkv.expired:
//!   <sweeper>:<r>:<e>`): p50 and p99 (goal ≤ 1 s). CPU per swept key is the
//!   children's CPU over the TTL run minus the plain run's, over the keys,
//!   beside the plain run's CPU per SET.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::future::try_join_all;
use kafkv_testkit::{ServeProcess, free_port};
use rdkafka::{
    Message, Timestamp,
    message::{BorrowedMessage, Headers},
};
use tokio::task::JoinHandle;

use crate::{
    BenchConfig,
    cpu_time::cpu_seconds,
    error::{Error, Result},
    kafka::{EndOffsets, key_name, read_from},
    memory::{mib, pipe_sets, redis_load_delta, serve_and_measure},
    progress,
    redis_peer::{missing, redis_version, which},
    report::{Row, percentile, with_goal},
    resp_client::{Reply, RespClient},
    serve_child::{metric, serve_resp},
};

/// Where progress lines and tool errors say they come from.
const SECTION: &str = "expiry";
/// The memory comparison's expiry: far beyond the measurement.
const MEMORY_EXPIRY: [&[u8]; 2] = [b"EX", b"3600"];
/// Keys sampled at the expiry second.
const SAMPLES: usize = 1_000;
/// The steady state's time to live, ms.
const STEADY_TTL_MS: u64 = 1_000;
/// After each steady run: the TTL, the default sweep window (1 s) and 1 s to
/// spare, so both runs' CPU windows are alike and the sweeps are in.
const STEADY_TAIL: Duration = Duration::from_secs(3);
/// Pause between the GETs that sample other keys' latency.
const GET_PAUSE: Duration = Duration::from_millis(1);
/// How often the end of a sweep is looked for.
const SWEEP_POLL: Duration = Duration::from_millis(250);
/// Without `kafkv_expiry_due_keys`, a sweep is over when the topic has not
/// grown for this long.
const QUIET: Duration = Duration::from_secs(2);
/// How long an instance may take to apply a load it acknowledged.
const APPLY_PATIENCE: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(30);

pub async fn measure(
    kafkv: &Path,
    brokers: &str,
    broker_pid: Option<u32>,
    run_id: u32,
    config: &BenchConfig,
) -> Result<Vec<Row>> {
    for tool in ["redis-server", "redis-cli"] {
        if which(tool).is_none() {
            return Err(missing(tool, SECTION));
        }
    }
    let dir = std::env::temp_dir().join(format!("kafkv-bench-expiry-{run_id}"));
    std::fs::create_dir_all(&dir)?;
    let rows = async {
        let (memory_row, rates) = memory(kafkv, brokers, run_id, config, &dir).await?;
        let mut rows = vec![memory_row];
        let topic = format!("bench-expiry-bulk-{run_id}");
        let mut cluster = Cluster::start(kafkv, brokers, broker_pid, &topic, &dir).await?;
        rows.extend(bulk(&mut cluster, config, &rates).await?);
        cluster.stop().await?;
        // Instances of their own, so that a bulk sweep still running (or
        // left to the instances) cannot weigh on the steady figures.
        let topic = format!("bench-expiry-steady-{run_id}");
        let mut cluster = Cluster::start(kafkv, brokers, broker_pid, &topic, &dir).await?;
        rows.extend(steady(&mut cluster, config).await?);
        cluster.stop().await?;
        Ok::<_, Error>(rows)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

// ---------------------------------------------------------------------------
// Memory per volatile key.

/// The write rates a `kafkv serve` child took the memory loads at, keys/s:
/// what the bulk's lead is estimated from.
struct LoadRates {
    plain: f64,
    volatile: f64,
}

/// The memory row, and the loads' rates.
async fn memory(
    kafkv: &Path,
    brokers: &str,
    run_id: u32,
    config: &BenchConfig,
    dir: &Path,
) -> Result<(Row, LoadRates)> {
    let keys = config.expiry_memory_keys;
    let one_arena = one_arena(kafkv, dir)?;
    let mut rss = Vec::new();
    let mut rates = Vec::new();
    for (name, extra) in [("plain", &[][..]), ("volatile", &MEMORY_EXPIRY[..])] {
        let topic = format!("bench-expiry-{name}-{run_id}");
        let dir = dir.join(name);
        let set = if extra.is_empty() {
            "SET"
        } else {
            "SET … EX 3600"
        };
        progress(format!(
            "expiry: {keys} keys {set} through a kafkv serve child"
        ));
        let load_dir = dir.join("load");
        std::fs::create_dir_all(&load_dir)?;
        let port = free_port()?;
        let loader = serve_resp(kafkv, &load_dir, brokers, &topic, port).await?;
        let took = fan_out(&[port], 0..keys, config.value_bytes, extra, false).await?;
        let rate = keys as f64 / took.as_secs_f64();
        progress(format!(
            "expiry: {name}: written in {:.1}s ({rate:.0} keys/s)",
            took.as_secs_f64()
        ));
        rates.push(rate);
        terminate(loader).await?;
        progress(format!(
            "expiry: a fresh kafkv serve child (one malloc arena) reads the {name} topic"
        ));
        let measure = dir.join("measure");
        let served = serve_and_measure(&one_arena, brokers, &topic, &measure, keys).await?;
        progress(format!(
            "expiry: {name}: ready in {:.2}s, RSS {} ({:.1} bytes/key)",
            served.ready.as_secs_f64(),
            mib(served.rss),
            served.rss as f64 / keys as f64
        ));
        rss.push(served.rss);
    }
    let kafkv_extra = (rss[1] as f64 - rss[0] as f64) / keys as f64;

    progress(format!(
        "expiry: redis-server, {keys} keys plain, then with EX 3600"
    ));
    let mut used = Vec::new();
    for extra in [&[][..], &MEMORY_EXPIRY[..]] {
        let (before, after) = redis_load_delta(0..keys, config.value_bytes, extra, SECTION).await?;
        used.push(after.used as f64 - before.used as f64);
    }
    let redis_extra = (used[1] - used[0]) / keys as f64;
    let row = Row {
        measurement: with_goal(
            &format!(
                "expiry: memory per volatile key, {keys} keys (EX − plain, RSS, one malloc arena)"
            ),
            "≤ 16",
            kafkv_extra <= 16.0,
        ),
        unit: "bytes/key".into(),
        kafkv: kafkv_extra,
        peer: format!("{} used_memory", redis_version().await),
        raw: redis_extra,
    };
    let rates = LoadRates {
        plain: rates[0],
        volatile: rates[1],
    };
    Ok((row, rates))
}

/// A script in `dir` that runs `kafkv` with `MALLOC_ARENA_MAX=1`. With
/// glibc's default of an arena per thread (up to 8 per core), the RSS of a
/// child that read the same topic varied by 11 MiB from run to run (60.7 to
/// 71.8 MiB for 200,000 keys): where each thread's freed buffers end up
/// interleaved with the entries it allocated. With one arena it varied by
/// 0.4 MiB, which a difference of a few bytes per key needs.
fn one_arena(kafkv: &Path, dir: &Path) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("kafkv-one-malloc-arena");
    let quoted = kafkv.to_string_lossy().replace('\'', r"'\''");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nMALLOC_ARENA_MAX=1 exec '{quoted}' \"$@\"\n"),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

// ---------------------------------------------------------------------------
// Three instances on one topic.

/// One `kafkv serve` child of the three.
struct Instance {
    served: ServeProcess,
    resp: SocketAddr,
    /// For the bench's own checks (EXISTS, DBSIZE), apart from the sampler's.
    client: RespClient,
}

struct Cluster {
    instances: Vec<Instance>,
    ends: EndOffsets,
    brokers: String,
    topic: String,
    broker_pid: Option<u32>,
}

impl Cluster {
    async fn start(
        kafkv: &Path,
        brokers: &str,
        broker_pid: Option<u32>,
        topic: &str,
        dir: &Path,
    ) -> Result<Self> {
        progress(format!("expiry: three kafkv serve children on {topic}"));
        let mut instances = Vec::new();
        for n in 0..3 {
            let dir = dir.join(format!("{topic}-{n}"));
            std::fs::create_dir_all(&dir)?;
            let port = free_port()?;
            let served = serve_resp(kafkv, &dir, brokers, topic, port).await?;
            let resp = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let client = RespClient::connect(resp).await?;
            instances.push(Instance {
                served,
                resp,
                client,
            });
        }
        Ok(Self {
            instances,
            ends: EndOffsets::new(brokers, topic).await?,
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            broker_pid,
        })
    }

    /// `SET key-{i} <value> <extra>` for every `i` of `keys`, round robin
    /// (key `i` through instance `i % 3`). Returns how long it took.
    async fn load(
        &self,
        keys: std::ops::Range<usize>,
        value_bytes: usize,
        extra: &[&[u8]],
        shuffled: bool,
    ) -> Result<Duration> {
        let ports: Vec<u16> = self.instances.iter().map(|i| i.resp.port()).collect();
        fan_out(&ports, keys, value_bytes, extra, shuffled).await
    }

    /// Waits until every instance's DBSIZE is `keys`.
    async fn wait_dbsize(&mut self, keys: usize) -> Result<()> {
        let deadline = Instant::now() + APPLY_PATIENCE;
        for (n, instance) in self.instances.iter_mut().enumerate() {
            loop {
                let size = instance.client.integer(&[b"DBSIZE"]).await?;
                if size == keys as i64 {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::Failed(format!(
                        "expiry: instance {n} holds {size} keys, not {keys}, after {}s",
                        APPLY_PATIENCE.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// CPU seconds so far: the three children's sum, and the broker's
    /// (NaN when the bench did not start it).
    fn cpu(&self) -> Result<(f64, f64)> {
        let mut children = 0.0;
        for instance in &self.instances {
            children += cpu_seconds(instance.served.pid())?;
        }
        let broker = match self.broker_pid {
            Some(pid) => cpu_seconds(pid)?,
            None => f64::NAN,
        };
        Ok((children, broker))
    }

    /// The sum over the instances of a metric; `None` if one exports none.
    async fn metric_sum(&self, name: &str) -> Result<Option<f64>> {
        let mut sum = Some(0.0);
        for value in self.metric_each(name).await? {
            sum = sum.zip(value).map(|(sum, value)| sum + value);
        }
        Ok(sum)
    }

    /// A metric of each instance.
    async fn metric_each(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let mut values = Vec::new();
        for instance in &self.instances {
            values.push(metric(&instance.served, name).await?);
        }
        Ok(values)
    }

    /// Waits until at least `records` records were written after the end
    /// offsets `from` and no instance has an expired key left to sweep
    /// (`kafkv_expiry_due_keys` 0 everywhere; without that metric, until the
    /// topic stops growing for [`QUIET`]). False if `timeout` ran out first.
    /// Says how it goes every 10 s.
    async fn wait_swept(&self, from: i64, records: usize, timeout: Duration) -> Result<bool> {
        let started = Instant::now();
        let (mut last, mut since) = (self.ends.total().await?, Instant::now());
        let mut told = Instant::now();
        loop {
            let total = self.ends.total().await?;
            if total != last {
                (last, since) = (total, Instant::now());
            }
            let due = self.metric_each("kafkv_expiry_due_keys").await?;
            if total - from >= records as i64 {
                let done = match due.iter().copied().collect::<Option<Vec<f64>>>() {
                    Some(due) => due.iter().all(|&d| d == 0.0),
                    None => since.elapsed() >= QUIET,
                };
                if done {
                    return Ok(true);
                }
            }
            if told.elapsed() >= Duration::from_secs(10) {
                told = Instant::now();
                // How far each instance's consumer is behind the topic.
                let applied = self.metric_each("kafkv_applied_offset").await?;
                let behind: Vec<Option<f64>> = applied
                    .iter()
                    .map(|a| a.map(|a| total as f64 - a))
                    .collect();
                progress(format!(
                    "expiry: {:.0}s: {} records since; by instance, expired keys not yet \
                     swept {due:?}, records not yet applied {behind:?}",
                    started.elapsed().as_secs_f64(),
                    total - from,
                ));
            }
            if started.elapsed() > timeout {
                return Ok(false);
            }
            tokio::time::sleep(SWEEP_POLL).await;
        }
    }

    /// Reads the SWEEPs written after `from` (end offsets by partition) of
    /// the keys `keys`.
    async fn sweeps(&self, from: Vec<i64>, keys: std::ops::Range<usize>) -> Result<Sweeps> {
        let sweeps = Sweeps::new(keys);
        read_from(&self.brokers, &self.topic, from, sweeps, Sweeps::visit).await
    }

    async fn stop(self) -> Result<()> {
        for instance in self.instances {
            terminate(instance.served).await?;
        }
        Ok(())
    }
}

/// `redis-cli --pipe` processes per port in a load: kafkv answers a
/// connection's pipeline a batch (≤ 1,024 requests) at a time, each batch
/// once all its writes are acknowledged, so one connection leaves the
/// broker idle between batches; several keep it busy.
const PIPES_PER_PORT: usize = 6;

/// `SET key-{i} <value> <extra>` for every `i` of `keys`, through
/// [`PIPES_PER_PORT`] `redis-cli --pipe` per port at once: key `i` goes to
/// lane `i % lanes`, and lane `l` to port `l % ports`, so with three ports
/// key `i` goes through the `i % 3`-th. Returns how long it took.
async fn fan_out(
    ports: &[u16],
    keys: std::ops::Range<usize>,
    value_bytes: usize,
    extra: &[&[u8]],
    shuffled: bool,
) -> Result<Duration> {
    let started = Instant::now();
    let lanes = ports.len() * PIPES_PER_PORT;
    let shuffle = Shuffle::of(keys.len());
    try_join_all((0..lanes).map(|lane| {
        let first = keys.start + (lane + lanes - keys.start % lanes) % lanes;
        let start = keys.start;
        let mine = (first..keys.end.max(first)).step_by(lanes).map(move |key| {
            if shuffled {
                start + shuffle.position(key - start)
            } else {
                key
            }
        });
        pipe_sets(ports[lane % ports.len()], mine, value_bytes, extra, SECTION)
    }))
    .await?;
    Ok(started.elapsed())
}

/// An order of `0..len` unrelated to key order: `i ↦ i · stride mod len`,
/// with a stride coprime with `len` and far from 1, visits each once.
#[derive(Clone, Copy)]
struct Shuffle {
    len: usize,
    stride: usize,
}

impl Shuffle {
    fn of(len: usize) -> Self {
        const PRIMES: [usize; 3] = [1_000_003, 999_983, 7_919];
        let stride = PRIMES
            .into_iter()
            .find(|prime| !len.is_multiple_of(*prime))
            .expect("a multiple of all three would be over 7.9 × 10^15 keys");
        Self { len, stride }
    }

    /// Where the `i`-th key of the load goes, `i < len`.
    fn position(self, i: usize) -> usize {
        (i * self.stride) % self.len
    }
}

/// SIGTERM, and a clean exit.
async fn terminate(served: ServeProcess) -> Result<()> {
    let (status, log) = tokio::task::spawn_blocking(move || served.terminate(STOP_GRACE))
        .await
        .expect("terminate does not panic")?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "expiry: a kafkv serve child exited with {status} after SIGTERM; its log:\n{log}"
        )));
    }
    Ok(())
}

/// The SWEEPs read back from the topic for a range of key numbers.
struct Sweeps {
    keys: std::ops::Range<usize>,
    /// SWEEPs per key (by key number − `keys.start`).
    count: Vec<u32>,
    /// The timestamp and expiry of each key's first SWEEP at or after its
    /// expiry (the one that deleted it); `i64::MIN` while none.
    deleted: Vec<(i64, i64)>,
    /// Per key, which sweepers (bits, by index in `sweepers`) swept it.
    swept_by: Vec<u8>,
    /// Each sweeper seen (the first 8 get a bit) and its SWEEPs.
    sweepers: Vec<(u32, u64)>,
    /// SWEEPs of a key by a sweeper that had swept it already (retries).
    repeated: u64,
    /// SWEEPs of a key by a sweeper that had not, after another had.
    crossed: u64,
    /// SWEEPs by the second of their timestamp, and how many deleted.
    by_second: std::collections::BTreeMap<i64, (u64, u64)>,
    /// SWEEPs timestamped before the expiry they name (they delete nothing).
    early: usize,
    /// SWEEPs of keys outside the range.
    outside: usize,
    /// Records after `from` that are no SWEEP (repairs, say).
    others: usize,
}

impl Sweeps {
    fn new(keys: std::ops::Range<usize>) -> Self {
        Self {
            count: vec![0; keys.len()],
            deleted: vec![(i64::MIN, 0); keys.len()],
            swept_by: vec![0; keys.len()],
            keys,
            sweepers: Vec::new(),
            repeated: 0,
            crossed: 0,
            by_second: Default::default(),
            early: 0,
            outside: 0,
            others: 0,
        }
    }

    fn visit(&mut self, message: &BorrowedMessage<'_>) {
        let expired = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|header| header.key == "kafkv.expired")
                .and_then(|header| parse_expired(header.value?))
        });
        let (Some((sweeper, expires_at)), None) = (expired, message.payload()) else {
            self.others += 1;
            return;
        };
        let index = message
            .key()
            .and_then(key_number)
            .filter(|i| self.keys.contains(i))
            .map(|i| i - self.keys.start);
        let Some(index) = index else {
            self.outside += 1;
            return;
        };
        self.count[index] += 1;
        let timestamp = match message.timestamp() {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
            Timestamp::NotAvailable => 0,
        };
        let second = self
            .by_second
            .entry(timestamp.div_euclid(1000))
            .or_default();
        second.0 += 1;
        if timestamp < expires_at {
            self.early += 1;
        } else if self.deleted[index].0 == i64::MIN {
            self.deleted[index] = (timestamp, expires_at);
            second.1 += 1;
        }
        let who = match self.sweepers.iter().position(|(id, _)| *id == sweeper) {
            Some(who) => who,
            None => {
                self.sweepers.push((sweeper, 0));
                self.sweepers.len() - 1
            }
        };
        self.sweepers[who].1 += 1;
        let bit = if who < 8 { 1u8 << who } else { 0 };
        let before = self.swept_by[index];
        if before & bit != 0 {
            self.repeated += 1;
        } else if before != 0 {
            self.crossed += 1;
        }
        self.swept_by[index] |= bit;
    }

    /// All SWEEPs of the range's keys.
    fn total(&self) -> u64 {
        self.count.iter().map(|&c| u64::from(c)).sum()
    }

    /// Keys with a deleting SWEEP.
    fn swept(&self) -> usize {
        self.deleted.iter().filter(|d| d.0 != i64::MIN).count()
    }

    /// The deleting SWEEPs' timestamps.
    fn deleted_at(&self) -> impl Iterator<Item = i64> + '_ {
        self.deleted.iter().map(|d| d.0).filter(|&t| t != i64::MIN)
    }

    /// Each swept key's delay from its expiry to its deleting SWEEP.
    fn delays(&self) -> Vec<Duration> {
        self.deleted
            .iter()
            .filter(|d| d.0 != i64::MIN)
            .map(|&(at, expiry)| Duration::from_millis((at - expiry) as u64))
            .collect()
    }

    fn summary(&self) -> String {
        let sweepers: Vec<String> = self
            .sweepers
            .iter()
            .map(|(id, n)| format!("{id:x}: {n}"))
            .collect();
        format!(
            "{} SWEEPs of {} keys, {} keys swept; {} by a sweeper that had swept the key \
             already, {} after another had; by sweeper [{}]; {} early, {} of other keys, \
             {} other records",
            self.total(),
            self.keys.len(),
            self.swept(),
            self.repeated,
            self.crossed,
            sweepers.join(", "),
            self.early,
            self.outside,
            self.others
        )
    }

    /// SWEEPs (deleting ones in parentheses) per `step` seconds from `from`
    /// (ms since the epoch), as one line.
    fn timeline(&self, from: i64, step: i64) -> String {
        let mut buckets: std::collections::BTreeMap<i64, (u64, u64)> = Default::default();
        for (second, (all, deleting)) in &self.by_second {
            let bucket = buckets
                .entry((second * 1000 - from).div_euclid(step * 1000) * step)
                .or_default();
            bucket.0 += all;
            bucket.1 += deleting;
        }
        let parts: Vec<String> = buckets
            .iter()
            .map(|(at, (all, deleting))| format!("+{at}s: {all} ({deleting})"))
            .collect();
        parts.join(", ")
    }
}

/// `(<sweeper>, <e>)` of a `kafkv.expired: <sweeper>:<r>:<e>` header.
fn parse_expired(value: &[u8]) -> Option<(u32, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut fields = text.split(':');
    let (sweeper, _restates, expiry) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    Some((u32::from_str_radix(sweeper, 16).ok()?, expiry.parse().ok()?))
}

/// `i` of a key `key-{i:012}`.
fn key_number(key: &[u8]) -> Option<usize> {
    std::str::from_utf8(key.strip_prefix(b"key-")?)
        .ok()?
        .parse()
        .ok()
}

/// Milliseconds since the epoch, with the fraction.
fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Sleeps until the wall clock reads `at` ms since the epoch: a timer to 2
/// ms before, then yields, so that the first look comes right at `at`.
async fn sleep_until_wall(at: i64) {
    let early = at as f64 - wall_ms() - 2.0;
    if early > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(early / 1e3)).await;
    }
    while wall_ms() < at as f64 {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------
// Bulk expiry.

/// GETs of keys that do not expire, on the instances in turn, one at a time,
/// until stopped: when each was sent and how long it took.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<Vec<(Instant, Duration)>>>,
}

impl Sampler {
    fn start(addresses: Vec<SocketAddr>, keys: std::ops::Range<usize>, value_bytes: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        // Its own thread, scheduled as the instances' request threads are:
        // it stands for a client on another machine, and on a machine whose
        // cores the instances keep busy it would otherwise measure its own
        // wait for a CPU (kafkv::scheduling). Before and during the sweep
        // alike, so its idle p99 is measured the same way.
        if let Err(error) = kafkv::scheduling::enable_realtime() {
            progress(format!(
                "expiry: the GET sampler runs at normal priority: {error}"
            ));
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("bench-sampler".into())
            .spawn(move || {
                kafkv::scheduling::RequestThread::start();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_park(kafkv::scheduling::RequestThread::parking)
                    .on_thread_unpark(kafkv::scheduling::RequestThread::unparked)
                    .build()
                    .expect("a runtime");
                let _ = done.send(runtime.block_on(sample(addresses, keys, value_bytes, stopped)));
            });
        spawned.expect("a thread for the sampler");
        let task = tokio::spawn(async move { result.await.expect("the sampler thread answers") });
        Self { stop, task }
    }

    async fn stop(self) -> Result<Vec<(Instant, Duration)>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the sampler does not panic")
    }
}

/// The sampler's loop (see [`Sampler`]).
async fn sample(
    addresses: Vec<SocketAddr>,
    keys: std::ops::Range<usize>,
    value_bytes: usize,
    stopped: Arc<AtomicBool>,
) -> Result<Vec<(Instant, Duration)>> {
    let mut clients = Vec::new();
    for address in addresses {
        clients.push(RespClient::connect(address).await?);
    }
    let value = Reply::Bulk(Some(vec![b'v'; value_bytes]));
    let mut samples = Vec::new();
    let mut n = 0usize;
    while !stopped.load(Ordering::Relaxed) {
        // A stride through the keys, so that each GET reads another.
        let key = key_name(keys.start + (n * 7_919) % keys.len());
        let client = &mut clients[n % 3];
        let sent = Instant::now();
        let reply = client.call(&[b"GET", key.as_bytes()]).await?;
        samples.push((sent, sent.elapsed()));
        if reply != value {
            return Err(Error::Failed(format!(
                "expiry: GET {key} answered {reply:?}"
            )));
        }
        n += 1;
        tokio::time::sleep(GET_PAUSE).await;
    }
    Ok(samples)
}

async fn bulk(cluster: &mut Cluster, config: &BenchConfig, rates: &LoadRates) -> Result<Vec<Row>> {
    let bulk = config.expiry_bulk_keys;
    let others = bulk..bulk + config.expiry_other_keys;
    progress(format!(
        "expiry: bulk: {} keys without expiry, round robin",
        others.len()
    ));
    let took = cluster
        .load(others.clone(), config.value_bytes, &[], false)
        .await?;
    let others_rate = others.len() as f64 / took.as_secs_f64();
    // Plain keys through three instances, slowed as the memory load was by
    // the expiry (the embedded broker stores each record's header as a row
    // of its own); half as much time again, since a short load's rate is
    // no promise for a long one, and 10 s to apply it everywhere.
    let rate = others_rate * (rates.volatile / rates.plain).min(1.0);
    progress(format!(
        "expiry: bulk: {others_rate:.0} keys/s without expiry, {rate:.0} keys/s expected with"
    ));
    let lead = config.expiry_bulk_lead.unwrap_or_else(|| {
        Duration::from_secs_f64(1.5 * bulk as f64 / rate) + Duration::from_secs(10)
    });
    let expiry = ((wall_ms() as i64 + lead.as_millis() as i64) / 1000 + 1) * 1000;
    progress(format!(
        "expiry: bulk: {bulk} keys PXAT {expiry}, {:.1}s ahead",
        (expiry as f64 - wall_ms()) / 1e3
    ));
    let pxat = expiry.to_string();
    let took = cluster
        .load(
            0..bulk,
            config.value_bytes,
            &[b"PXAT", pxat.as_bytes()],
            config.expiry_bulk_shuffled,
        )
        .await?;
    progress(format!(
        "expiry: bulk: loaded in {:.1}s ({:.0} keys/s)",
        took.as_secs_f64(),
        bulk as f64 / took.as_secs_f64()
    ));
    let too_late = || {
        let ahead = (expiry as f64 - wall_ms()) / 1e3;
        (ahead < 1.0).then(|| {
            Error::Failed(format!(
                "expiry: the bulk load was over only {ahead:.1}s before its expiry second: \
                 pass a longer --expiry-bulk-lead (or fewer --expiry-bulk-keys)"
            ))
        })
    };
    if let Some(error) = too_late() {
        return Err(error);
    }
    cluster.wait_dbsize(bulk + others.len()).await?;
    if let Some(error) = too_late() {
        return Err(error);
    }
    progress(format!(
        "expiry: bulk: every instance holds every key; GETs of other keys until the sweep \
         is over; the second comes in {:.1}s",
        (expiry as f64 - wall_ms()) / 1e3
    ));
    let addresses = cluster.instances.iter().map(|i| i.resp).collect();
    let sampler = Sampler::start(addresses, others.clone(), config.value_bytes);

    let samples = SAMPLES.min(bulk);
    let sampled: Vec<String> = (0..samples).map(|k| key_name(k * bulk / samples)).collect();
    let mut exists: Vec<&[u8]> = vec![b"EXISTS"];
    exists.extend(sampled.iter().map(|key| key.as_bytes()));
    sleep_until_wall(expiry - 300).await;
    for (n, instance) in cluster.instances.iter_mut().enumerate() {
        let present = instance.client.integer(&exists).await?;
        if present != samples as i64 {
            return Err(Error::Failed(format!(
                "expiry: instance {n} holds {present} of the {samples} sampled keys before they expire"
            )));
        }
    }
    let from = cluster.ends.each().await?;
    let from_total: i64 = from.iter().sum();
    let written = cluster.metric_sum("kafkv_sweeps_written_total").await?;
    let cpu = cluster.cpu()?;

    sleep_until_wall(expiry).await;
    let second = Instant::now();
    let (absent_ms, shrunk_ms) = at_the_second(cluster, &exists, others.len(), expiry).await?;
    progress(format!(
        "expiry: bulk: sampled keys absent everywhere {absent_ms:.1} ms after the second, \
         DBSIZE down everywhere {shrunk_ms:.1} ms after; waiting for the sweep"
    ));
    let timeout = Duration::from_secs(60) + Duration::from_micros(100 * bulk as u64);
    let finished = cluster.wait_swept(from_total, bulk, timeout).await?;
    let over = Instant::now();
    let cpu_after = cluster.cpu()?;
    let latencies = sampler.stop().await?;
    let written_after = cluster.metric_sum("kafkv_sweeps_written_total").await?;
    if !finished {
        progress(format!(
            "expiry: bulk: the sweep was not over {}s after the second",
            timeout.as_secs()
        ));
    }
    let sweeps = cluster.sweeps(from, 0..bulk).await?;
    progress(format!("expiry: bulk: {}", sweeps.summary()));
    progress(format!(
        "expiry: bulk: SWEEPs (deleting) by timestamp after the second: {}",
        sweeps.timeline(expiry, 5)
    ));
    if let (Some(before), Some(after)) = (written, written_after) {
        progress(format!(
            "expiry: bulk: kafkv_sweeps_written_total grew by {} over the instances",
            after - before
        ));
    }

    let idle: Vec<Duration> = latencies
        .iter()
        .filter(|(sent, _)| *sent < second)
        .map(|s| s.1)
        .collect();
    let during: Vec<Duration> = latencies
        .iter()
        .filter(|(sent, _)| *sent >= second && *sent <= over)
        .map(|s| s.1)
        .collect();
    progress(format!(
        "expiry: bulk: {} GETs idle, {} during the sweep ({:.1}s)",
        idle.len(),
        during.len(),
        over.duration_since(second).as_secs_f64()
    ));
    let swept = sweeps.swept();
    let last = sweeps
        .deleted_at()
        .max()
        .map_or(f64::NAN, |at| (at - expiry) as f64 / 1e3);
    // Every SWEEP came after its key's expiry, or `early` says otherwise:
    // a key with any SWEEP is swept, so these are the swept keys' SWEEPs.
    let per_key = sweeps.total() as f64 / swept as f64;
    let (p99, idle_p99) = (percentile(&during, 0.99), percentile(&idle, 0.99));
    // Where the slow GETs of the window are (beyond twice the idle p99): by
    // second since the expiry and by instance (the sampler takes them in
    // turn), to tell a steady tail from stalls.
    let slow_bound = Duration::from_secs_f64(2.0 * idle_p99 / 1e3);
    let mut slow_by_second: BTreeMap<u64, usize> = BTreeMap::new();
    let mut slow_by_instance = [0usize; 3];
    for (n, (sent, took)) in latencies.iter().enumerate() {
        if *sent >= second && *sent <= over && *took > slow_bound {
            *slow_by_second
                .entry(sent.duration_since(second).as_secs())
                .or_default() += 1;
            slow_by_instance[n % 3] += 1;
        }
    }
    progress(format!(
        "expiry: bulk: GETs slower than {slow_bound:?} by second after the expiry \
         {slow_by_second:?}, by instance {slow_by_instance:?}"
    ));
    // Over the keys swept by the end of the window (all, unless it ran out).
    let cpu_per_key = |before: f64, after: f64| (after - before) * 1e6 / swept as f64;
    progress(format!(
        "expiry: bulk: CPU over the sweep: children {:.1} s, broker {:.1} s; \
         per SWEEP written {:.0} and {:.0} µs",
        cpu_after.0 - cpu.0,
        cpu_after.1 - cpu.1,
        (cpu_after.0 - cpu.0) * 1e6 / sweeps.total() as f64,
        (cpu_after.1 - cpu.1) * 1e6 / sweeps.total() as f64,
    ));
    let order = if config.expiry_bulk_shuffled {
        " loaded shuffled"
    } else {
        ""
    };
    let label = |what: &str| format!("expiry bulk, {bulk} keys{order}, 3 instances: {what}");
    let all_swept = if swept == bulk {
        String::new()
    } else {
        format!(" (only {swept} swept)")
    };
    let mut rows = vec![
        Row::without_peer(
            with_goal(
                &label("1,000 sampled keys absent on all, after the second"),
                "≤ 10 ms",
                absent_ms <= 10.0,
            ),
            "ms",
            absent_ms,
        ),
        Row::without_peer(
            with_goal(
                &label(&format!("DBSIZE down by {bulk} on all, after the second")),
                "≤ 10 ms",
                shrunk_ms <= 10.0,
            ),
            "ms",
            shrunk_ms,
        ),
        Row::without_peer(
            with_goal(
                &label(&format!(
                    "every key has a SWEEP, after the second{all_swept}"
                )),
                "≤ 30 s",
                swept == bulk && last <= 30.0,
            ),
            "s",
            last,
        ),
        Row::without_peer(
            label("keys swept per second"),
            "keys/s",
            swept as f64 / last,
        ),
        Row::without_peer(
            with_goal(&label("SWEEPs per swept key"), "≤ 1.1", per_key <= 1.1),
            "records",
            per_key,
        ),
        Row {
            measurement: with_goal(
                &label("GET p99 on other keys during the sweep"),
                "≤ 2× idle",
                p99 <= 2.0 * idle_p99,
            ),
            unit: "ms".into(),
            kafkv: p99,
            peer: "idle, before it".into(),
            raw: idle_p99,
        },
        Row {
            measurement: label("GET p50 on other keys during the sweep"),
            unit: "ms".into(),
            kafkv: percentile(&during, 0.50),
            peer: "idle, before it".into(),
            raw: percentile(&idle, 0.50),
        },
        Row::without_peer(
            label("kafkv serve CPU per swept key, 3 children"),
            "CPU-µs",
            cpu_per_key(cpu.0, cpu_after.0),
        ),
    ];
    if cluster.broker_pid.is_some() {
        rows.push(Row::without_peer(
            label("broker CPU per swept key"),
            "CPU-µs",
            cpu_per_key(cpu.1, cpu_after.1),
        ));
    }
    Ok(rows)
}

/// From the expiry second on: how long (ms after it) until the sampled keys
/// (the `EXISTS` command) read absent on every instance, and until every
/// DBSIZE is `left`; NaN where that took over 10 s. Each round asks the
/// three instances at once, both questions pipelined, and counts from the
/// second to the answer: what a client would have seen by then.
async fn at_the_second(
    cluster: &mut Cluster,
    exists: &[&[u8]],
    left: usize,
    expiry: i64,
) -> Result<(f64, f64)> {
    let started = Instant::now();
    let (mut absent, mut shrunk) = ([f64::NAN; 3], [f64::NAN; 3]);
    let (mut absent_ms, mut shrunk_ms) = (f64::NAN, f64::NAN);
    while absent_ms.is_nan() || shrunk_ms.is_nan() {
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        let rounds = cluster.instances.iter_mut().map(|instance| async move {
            let client = &mut instance.client;
            client.queue(exists);
            client.queue(&[b"DBSIZE"]);
            client.flush().await?;
            let (present, size) = (client.read_reply().await?, client.read_reply().await?);
            let at = wall_ms() - expiry as f64;
            Ok::<_, Error>((
                present == Reply::Integer(0),
                size == Reply::Integer(left as i64),
                at,
            ))
        });
        for (n, answer) in try_join_all(rounds).await?.into_iter().enumerate() {
            let (gone, down, at) = answer;
            if gone && absent[n].is_nan() {
                absent[n] = at;
            }
            if down && shrunk[n].is_nan() {
                shrunk[n] = at;
            }
        }
        let latest = |times: &[f64; 3]| {
            times
                .iter()
                .all(|t| !t.is_nan())
                .then(|| times.iter().copied().fold(f64::MIN, f64::max))
        };
        absent_ms = latest(&absent).unwrap_or(f64::NAN);
        shrunk_ms = latest(&shrunk).unwrap_or(f64::NAN);
        // Back to back for the first 50 ms, where the goal is; then gently,
        // so as not to weigh on the sweep.
        if started.elapsed() > Duration::from_millis(50) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok((absent_ms, shrunk_ms))
}

// ---------------------------------------------------------------------------
// Steady state.

async fn steady(cluster: &mut Cluster, config: &BenchConfig) -> Result<Vec<Row>> {
    let rate = config.expiry_steady_rate;
    let seconds = config.expiry_steady_seconds;
    let keys = ((rate as f64 * seconds.as_secs_f64()).round() as usize).max(1);
    let first = config.expiry_bulk_keys + config.expiry_other_keys;
    let (plain, volatile) = (first..first + keys, first + keys..first + 2 * keys);
    let px = STEADY_TTL_MS.to_string();

    progress(format!(
        "expiry: steady: {keys} plain SETs at {rate}/s, round robin, then {}s",
        STEADY_TAIL.as_secs()
    ));
    let plain_cpu = paced_run(cluster, plain, rate, config.value_bytes, &[], seconds).await?;
    progress(format!(
        "expiry: steady: {keys} SET … PX {px} at {rate}/s, round robin, then {}s",
        STEADY_TAIL.as_secs()
    ));
    let from = cluster.ends.each().await?;
    let from_total: i64 = from.iter().sum();
    let volatile_cpu = paced_run(
        cluster,
        volatile.clone(),
        rate,
        config.value_bytes,
        &[b"PX", px.as_bytes()],
        seconds,
    )
    .await?;
    // SWEEPs are records too: the topic grows by the puts and the sweeps.
    if !cluster
        .wait_swept(from_total, 2 * keys, Duration::from_secs(30))
        .await?
    {
        progress("expiry: steady: the sweep was not over 30 s after the run");
    }
    let sweeps = cluster.sweeps(from, volatile).await?;
    progress(format!("expiry: steady: {}", sweeps.summary()));
    let delays = sweeps.delays();
    let (p50, p99) = (percentile(&delays, 0.50), percentile(&delays, 0.99));
    let per_key = sweeps.total() as f64 / keys as f64;
    let per_set = |cpu: f64| cpu * 1e6 / keys as f64;
    progress(format!(
        "expiry: steady: broker CPU per swept key {:.0} µs (per plain SET {:.0} µs)",
        per_set(volatile_cpu.1 - plain_cpu.1),
        per_set(plain_cpu.1)
    ));
    let label = |what: &str| format!("expiry steady, PX {px} at {rate}/s, 3 instances: {what}");
    let swept = sweeps.swept();
    let all_swept = if swept == keys {
        String::new()
    } else {
        format!(" (only {swept} of {keys} swept)")
    };
    Ok(vec![
        Row::without_peer(label("sweep delay p50"), "ms", p50),
        Row::without_peer(
            with_goal(
                &label(&format!("sweep delay p99{all_swept}")),
                "≤ 1 s",
                swept == keys && p99 <= 1000.0,
            ),
            "ms",
            p99,
        ),
        Row::without_peer(
            with_goal(&label("SWEEPs per key"), "≤ 1.1", per_key <= 1.1),
            "records",
            per_key,
        ),
        Row {
            measurement: label("kafkv serve CPU per swept key, 3 children"),
            unit: "CPU-µs".into(),
            kafkv: per_set(volatile_cpu.0 - plain_cpu.0),
            peer: "plain SET, per key".into(),
            raw: per_set(plain_cpu.0),
        },
    ])
}

/// `SET key-{i} <value> <extra>` for every `i` of `keys` at `rate` a second,
/// round robin over the instances (a batch every 10 ms, pipelined), then
/// [`STEADY_TAIL`] more; returns the children's and the broker's CPU
/// seconds over that time.
async fn paced_run(
    cluster: &mut Cluster,
    keys: std::ops::Range<usize>,
    rate: usize,
    value_bytes: usize,
    extra: &[&[u8]],
    seconds: Duration,
) -> Result<(f64, f64)> {
    let value = vec![b'v'; value_bytes];
    let cpu = cluster.cpu()?;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut next = keys.start;
    while next < keys.end {
        ticker.tick().await;
        let due = keys.start + (started.elapsed().as_secs_f64() * rate as f64) as usize;
        let upto = due.min(keys.end);
        let mut waiting = [0usize; 3];
        for i in next..upto {
            let key = key_name(i);
            let mut args: Vec<&[u8]> = vec![b"SET", key.as_bytes(), &value];
            args.extend_from_slice(extra);
            cluster.instances[i % 3].client.queue(&args);
            waiting[i % 3] += 1;
        }
        next = upto;
        for (instance, &count) in cluster.instances.iter_mut().zip(&waiting) {
            instance.client.flush().await?;
            for _ in 0..count {
                instance
                    .client
                    .read_reply()
                    .await?
                    .expect(Reply::Simple("OK".into()))?;
            }
        }
    }
    let sending = started.elapsed();
    if sending > seconds + Duration::from_secs(1) {
        progress(format!(
            "expiry: steady: sending took {:.1}s, not {:.1}s",
            sending.as_secs_f64(),
            seconds.as_secs_f64()
        ));
    }
    tokio::time::sleep_until((started + sending.max(seconds) + STEADY_TAIL).into()).await;
    let after = cluster.cpu()?;
    Ok((after.0 - cpu.0, after.1 - cpu.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sweeper_and_expiry_a_sweep_names() {
        assert_eq!(
            parse_expired(b"1a2b:41:1767225600000"),
            Some((0x1a2b, 1_767_225_600_000))
        );
        assert_eq!(parse_expired(b"1a2b:41"), None);
        assert_eq!(parse_expired(b"1a2b:41:x"), None);
        assert_eq!(parse_expired(b"zz:41:5"), None);
        assert_eq!(parse_expired(b"1a2b:41:5:6"), None);
    }

    #[test]
    fn reads_key_numbers() {
        assert_eq!(key_number(key_name(42).as_bytes()), Some(42));
        assert_eq!(key_number(b"other"), None);
    }

    #[test]
    fn a_shuffled_load_sets_every_key_once() {
        for len in [1, 2, 7_919, 10_000, 1_000_003, 2_000_006] {
            let shuffle = Shuffle::of(len);
            let mut seen = vec![false; len];
            for i in 0..len {
                let key = shuffle.position(i);
                assert!(!seen[key], "key {key} of {len} twice");
                seen[key] = true;
            }
        }
    }
}
