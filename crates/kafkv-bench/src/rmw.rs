//! Read-modify-write (docs/rmw.md): INCR beside SET, each pair measured in
//! the same run, with issue 17's goals and whether this run met them in the
//! row labels.
//!
//! - **One client, one instance.** kafkv served in this process (RESP) on a
//!   fresh topic. One connection sends `SET rmw:set`, `INCR rmw:counter`,
//!   and the store gets a library put, in rotating order, `--writes` of each
//!   after 100 warm-ups; a SET or INCR is timed from sending it to its reply,
//!   a put from its acknowledgement until this instance applied it (ack →
//!   applied: what an INCR waits for beyond a SET, whose reply needs only
//!   the acknowledgement). Goal: INCR p50 ≤ 1.2 × SET p50.
//! - **One client, another instance writing.** The same on another fresh
//!   topic while a second instance in this process puts other keys, one at a
//!   time, without pause. Goal: INCR p50 ≤ SET p50 + ack → applied p50.
//! - **A header's cost.** One librdkafka producer with kafkv's settings
//!   sends raw records one at a time to a fresh topic, alternating one with
//!   an operation's `kafkv.op` header and one without, `--writes` of each:
//!   the produce+ack p50 and p99 of each (no goal; it is what the broker
//!   charges an operation record beyond a put, docs/design.md (n)).
//! - **50 clients, one key**, against a `kafkv serve --brokers` child
//!   process, so that its CPU time is its own (`/proc/<pid>/stat`):
//!   `redis-benchmark -c 50 -n --rmw-requests -t set` and `-t incr`,
//!   without `-r`, so every request goes to one key (`key:__rand_int__`,
//!   `counter:__rand_int__`), `--rmw-rounds` runs of each in the order SET,
//!   INCR, INCR, SET, SET, INCR, … After each run, the bench waits until the
//!   topic's end offset has not moved for 0.5 s (the repairs settled). Each
//!   test's runs are pooled: requests per second over all of them (goal:
//!   INCR ≥ 0.8 × SET); records written per acknowledged request, from the
//!   topic's end offsets before and after each run (goal: INCR ≤ 1.1); the
//!   child's CPU time per 1,000 acknowledged requests, settling included
//!   (goal: INCR ≤ 1.3 × SET), and the part of it spent in librdkafka's
//!   threads (`/proc/<pid>/task/*`, names `rdk:…`; its idempotent
//!   producer's thread spins while records wait behind its in-flight limit,
//!   see `log/window.rs` in the library); the median of the runs' p50s.
//!   The counter must then read rounds × `--rmw-requests`: every INCR was
//!   acknowledged once. Why rounds: one SET run then one INCR run put the
//!   machine's drift between them into the ratios (SET's own rate moved
//!   from 12,700 to 16,400 req/s between runs of the bench); interleaved,
//!   a drift weighs on both tests alike.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use kafkv::Store;
use kafkv_testkit::{ServeProcess, free_port};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::FutureRecord,
    util::Timeout as RdTimeout,
};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    BenchConfig,
    cpu_time::{cpu_seconds, threads_cpu_seconds},
    error::{Error, Result},
    kafka::{EndOffsets, create_topic, raw_producer, serve, store_config},
    progress,
    redis_peer::{Figures, missing, redis_benchmark, which},
    report::{Row, p50_p99_rows, percentile, with_goal},
    resp_client::{Reply, RespClient},
    serve_child::{metric, serve_resp},
};

/// Operations of each kind not measured, before the measured ones.
const WARMUP: usize = 100;
/// Requests of the warm-up before the 50-client runs.
const WARMUP_REQUESTS: usize = 1_000;
/// redis-benchmark's client count in the one-key runs.
const CLIENTS: &str = "50";
/// How long the topic's end offset must stay put for the repairs to count
/// as settled: the writer's repair comes 10 ms after its operation.
const SETTLE: Duration = Duration::from_millis(500);
const SETTLE_POLL: Duration = Duration::from_millis(25);
/// How long one wait (applied, settled, ready) may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(30);
/// The name prefix of librdkafka's threads (`rdk:main`, `rdk:broker<id>`).
const LIBRDKAFKA_THREADS: &str = "rdk:";

pub async fn measure(
    kafkv: &Path,
    brokers: &str,
    run_id: u32,
    config: &BenchConfig,
) -> Result<Vec<Row>> {
    if which("redis-benchmark").is_none() {
        return Err(missing("redis-benchmark", "rmw"));
    }
    let mut rows = one_client(brokers, run_id, config).await?;
    rows.extend(header_cost(brokers, run_id, config).await?);
    let dir = std::env::temp_dir().join(format!("kafkv-bench-rmw-{run_id}"));
    std::fs::create_dir_all(&dir)?;
    let hot = one_key(kafkv, &dir, brokers, run_id, config).await;
    let _ = std::fs::remove_dir_all(&dir);
    rows.extend(hot?);
    Ok(rows)
}

// ---------------------------------------------------------------------------
// One client.

/// One client's latencies on one instance.
struct Latencies {
    set: Vec<Duration>,
    incr: Vec<Duration>,
    /// From a put's acknowledgement until this instance applied it.
    applied: Vec<Duration>,
}

async fn one_client(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    let value = Bytes::from(vec![b'v'; config.value_bytes]);
    progress(format!(
        "rmw: {} SET, INCR and put, 1 client, one instance",
        config.writes
    ));
    let alone = latencies(
        brokers,
        &format!("bench-rmw-alone-{run_id}"),
        false,
        config.writes,
        &value,
    )
    .await?;
    progress(format!(
        "rmw: {} SET, INCR and put, 1 client, another instance writing",
        config.writes
    ));
    let busy = latencies(
        brokers,
        &format!("bench-rmw-busy-{run_id}"),
        true,
        config.writes,
        &value,
    )
    .await?;

    let p50 = |samples: &[Duration]| percentile(samples, 0.50);
    let p99 = |samples: &[Duration]| percentile(samples, 0.99);
    let (incr, set) = (p50(&alone.incr), p50(&alone.set));
    let (busy_incr, busy_set, busy_applied) = (p50(&busy.incr), p50(&busy.set), p50(&busy.applied));
    let set_peer = "SET, 1 client";
    Ok(vec![
        Row {
            measurement: with_goal("rmw: INCR p50, 1 client", "≤ 1.2× SET", incr <= 1.2 * set),
            unit: "ms".into(),
            kafkv: incr,
            peer: set_peer.into(),
            raw: set,
        },
        Row {
            measurement: "rmw: INCR p99, 1 client".into(),
            unit: "ms".into(),
            kafkv: p99(&alone.incr),
            peer: set_peer.into(),
            raw: p99(&alone.set),
        },
        Row::without_peer(
            "rmw: put ack → applied here p50, 1 client".into(),
            "ms",
            p50(&alone.applied),
        ),
        Row {
            measurement: "rmw: INCR p50, 1 client, other instance writing".into(),
            unit: "ms".into(),
            kafkv: busy_incr,
            peer: set_peer.into(),
            raw: busy_set,
        },
        Row::without_peer(
            "rmw: put ack → applied here p50, other instance writing".into(),
            "ms",
            busy_applied,
        ),
        Row {
            measurement: with_goal(
                "rmw: INCR p50, other instance writing",
                "≤ SET + applied",
                busy_incr <= busy_set + busy_applied,
            ),
            unit: "ms".into(),
            kafkv: busy_incr,
            peer: "SET + applied p50".into(),
            raw: busy_set + busy_applied,
        },
    ])
}

/// Serves a store on `topic` over RESP in this process and measures one
/// client's SETs and INCRs, and its puts' ack → applied, interleaved; with
/// `other_writer`, while a second instance on the topic writes other keys.
async fn latencies(
    brokers: &str,
    topic: &str,
    other_writer: bool,
    samples: usize,
    value: &Bytes,
) -> Result<Latencies> {
    let store = Store::open(store_config(brokers, topic)).await?;
    let here = store.clone();
    let served = serve(store, Some(TcpListener::bind("127.0.0.1:0").await?)).await?;
    let mut client = RespClient::connect(served.resp_address().expect("RESP is on")).await?;
    let other = if other_writer {
        let store = Store::open(store_config(brokers, topic)).await?;
        Some(OtherWriter::start(store, value.clone()))
    } else {
        None
    };

    let mut measured = Latencies {
        set: Vec::with_capacity(samples),
        incr: Vec::with_capacity(samples),
        applied: Vec::with_capacity(samples),
    };
    let mut increments = 0;
    for i in 0..WARMUP + samples {
        let keep = i >= WARMUP;
        // Rotate the order so that none of the three always follows another.
        for step in 0..3 {
            match (i + step) % 3 {
                0 => {
                    let started = Instant::now();
                    let reply = client.call(&[b"SET", b"rmw:set", value]).await?;
                    let took = started.elapsed();
                    reply.expect(Reply::Simple("OK".into()))?;
                    if keep {
                        measured.set.push(took);
                    }
                }
                1 => {
                    let started = Instant::now();
                    let reply = client.call(&[b"INCR", b"rmw:counter"]).await?;
                    let took = started.elapsed();
                    increments += 1;
                    reply.expect(Reply::Integer(increments))?;
                    if keep {
                        measured.incr.push(took);
                    }
                }
                _ => {
                    let receipt = here.put(b"rmw:put", value.clone()).await?;
                    let acknowledged = Instant::now();
                    if !here
                        .wait_for_offset(receipt.partition, receipt.offset, PATIENCE)
                        .await
                    {
                        return Err(Error::Failed("rmw: a put was not applied in time".into()));
                    }
                    if keep {
                        measured.applied.push(acknowledged.elapsed());
                    }
                }
            }
        }
    }
    if let Some(other) = other {
        let (writes, per_second) = other.stop().await?;
        progress(format!(
            "rmw: the other instance wrote {writes} keys meanwhile ({per_second:.0}/s)"
        ));
    }
    served.stop().await;
    Ok(measured)
}

/// A second instance putting keys of its own, one at a time, until stopped.
struct OtherWriter {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<usize>>,
    started: Instant,
}

impl OtherWriter {
    fn start(store: Store, value: Bytes) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut writes = 0;
            while !stopped.load(Ordering::Relaxed) {
                let key = format!("other-{}", writes % 10_000);
                store.put(key.as_bytes(), value.clone()).await?;
                writes += 1;
            }
            store.close().await;
            Ok(writes)
        });
        Self {
            stop,
            task,
            started: Instant::now(),
        }
    }

    /// Stops it: the writes it made, and their rate.
    async fn stop(self) -> Result<(usize, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        let writes = self.task.await.expect("the other writer does not panic")?;
        Ok((writes, writes as f64 / elapsed.as_secs_f64()))
    }
}

// ---------------------------------------------------------------------------
// What a header costs the broker.

/// An operation record's header as kafkv writes it (`kafkv.op`, the
/// writer's id folded in), without its meaning: the broker stores it as
/// any other header.
fn operation_header(i: usize) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: "kafkv.op",
        value: Some(&format!("1:{:016x}", 0x5eed_0000_0000_0000_u64 + i as u64)),
    })
}

/// One librdkafka producer with kafkv's settings sends one record at a time
/// to a fresh topic, alternating a record with an operation's header and one
/// without (key and value alike): the produce-to-acknowledgement time a
/// header adds, broker and client together, apart from anything kafkv's
/// instance does. On the embedded broker that is a row of tansu's `header`
/// table and one of kafkv's index on it (docs/design.md (n)): about half of
/// what an INCR's p50 costs beyond a SET's at one client.
async fn header_cost(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    progress(format!(
        "rmw: {} raw produces with an operation's header and {0} without",
        config.writes
    ));
    let topic = format!("bench-rmw-header-{run_id}");
    create_topic(brokers, &topic).await?;
    let producer = raw_producer(brokers)?;
    let value = b"1";
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + config.writes {
        let keep = i >= WARMUP;
        // Alternate which goes first, as the one-client rows rotate.
        for headed in [i % 2 == 0, i % 2 == 1] {
            let key = format!("counter-{}", i % 16);
            let mut record = FutureRecord::to(&topic).key(&key).payload(&value[..]);
            if headed {
                record = record.headers(operation_header(i));
            }
            let started = Instant::now();
            producer
                .send(record, RdTimeout::After(PATIENCE))
                .await
                .map_err(|(e, _)| Error::Kafka(e))?;
            if keep {
                if headed { &mut with } else { &mut without }.push(started.elapsed());
            }
        }
    }
    Ok(p50_p99_rows(
        |name| format!("rmw: raw produce+ack {name}, record with an operation's header"),
        &with,
        "without",
        &without,
    ))
}

// ---------------------------------------------------------------------------
// Fifty clients on one key.

/// One redis-benchmark run on one key, with what it cost.
struct OneKeyRun {
    figures: Figures,
    /// Records the topic grew by, settled.
    records: i64,
    /// The `kafkv serve` child's CPU seconds, settling included.
    cpu: f64,
    /// Of which librdkafka's threads (its producer's and consumer's).
    librdkafka_cpu: f64,
    /// `kafkv_repairs_written_total` of the child grew by this much.
    repairs: f64,
}

async fn one_key(
    kafkv: &Path,
    dir: &Path,
    brokers: &str,
    run_id: u32,
    config: &BenchConfig,
) -> Result<Vec<Row>> {
    let requests = config.rmw_requests;
    let topic = format!("bench-rmw-one-key-{run_id}");
    let resp_port = free_port()?;
    progress("rmw: kafkv serve --brokers, 50 clients on one key");
    let served = serve_resp(kafkv, dir, brokers, &topic, resp_port).await?;
    let ends = EndOffsets::new(brokers, &topic).await?;
    one_key_benchmark(resp_port, "set", WARMUP_REQUESTS).await?;
    let rounds = config.rmw_rounds;
    let (mut sets, mut incrs) = (Vec::new(), Vec::new());
    for test in interleaved(rounds) {
        progress(format!(
            "rmw: {} x {requests}, 50 clients, one key",
            test.to_uppercase()
        ));
        let run = one_key_run(&served, &ends, resp_port, test, requests).await?;
        progress(format!(
            "rmw: {:.0} req/s, {} records, {} repairs, {:.3} CPU-s",
            run.figures.rps, run.records, run.repairs, run.cpu
        ));
        if test == "set" { &mut sets } else { &mut incrs }.push(run);
    }
    let mut client =
        RespClient::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, resp_port))).await?;
    client
        .call(&[b"GET", b"counter:__rand_int__"])
        .await?
        .expect(Reply::Bulk(Some(
            (rounds * requests).to_string().into_bytes(),
        )))?;
    drop(client);
    tokio::task::spawn_blocking(move || served.terminate(STOP_GRACE))
        .await
        .expect("terminate does not panic")?;

    let (set, incr) = (Pooled::of(&sets, requests), Pooled::of(&incrs, requests));
    let records = incr.records_per_request;
    let round_ratios = |figure: fn(&OneKeyRun) -> f64| {
        let ratios: Vec<String> = incrs
            .iter()
            .zip(&sets)
            .map(|(i, s)| format!("{:.2}", figure(i) / figure(s)))
            .collect();
        ratios.join(", ")
    };
    progress(format!(
        "rmw: INCR/SET by round: req/s {}; CPU {}",
        round_ratios(|run| run.figures.rps),
        round_ratios(|run| run.cpu),
    ));
    let runs = format!("{rounds} runs each, interleaved");
    Ok(vec![
        Row {
            measurement: with_goal(
                &format!("rmw: INCR/s, 50 clients, one key, {runs}"),
                "≥ 0.8× SET",
                incr.rps >= 0.8 * set.rps,
            ),
            unit: "req/s".into(),
            kafkv: incr.rps,
            peer: "SET, 50 clients".into(),
            raw: set.rps,
        },
        Row {
            measurement: "rmw: INCR p50, 50 clients, one key, median of runs".into(),
            unit: "ms".into(),
            kafkv: incr.p50,
            peer: "SET, 50 clients".into(),
            raw: set.p50,
        },
        Row {
            measurement: with_goal("rmw: records per INCR, one key", "≤ 1.1", records <= 1.1),
            unit: "records".into(),
            kafkv: records,
            peer: "SET".into(),
            raw: set.records_per_request,
        },
        Row {
            measurement: with_goal(
                &format!("rmw: kafkv CPU per 1,000 INCR, {runs}"),
                "≤ 1.3× SET",
                incr.cpu_per_thousand <= 1.3 * set.cpu_per_thousand,
            ),
            unit: "CPU-ms".into(),
            kafkv: incr.cpu_per_thousand,
            peer: "SET, 50 clients".into(),
            raw: set.cpu_per_thousand,
        },
        Row {
            measurement: "rmw: of which librdkafka's threads".into(),
            unit: "CPU-ms".into(),
            kafkv: incr.librdkafka_per_thousand,
            peer: "SET, 50 clients".into(),
            raw: set.librdkafka_per_thousand,
        },
    ])
}

/// The order of `rounds` runs of each test: SET, INCR, INCR, SET, SET, INCR,
/// … — each pair reversed from the one before, so that a steady drift of
/// the machine's speed favours neither test.
fn interleaved(rounds: usize) -> Vec<&'static str> {
    (0..rounds)
        .flat_map(|round| {
            if round % 2 == 0 {
                ["set", "incr"]
            } else {
                ["incr", "set"]
            }
        })
        .collect()
}

/// One test's runs, pooled.
struct Pooled {
    /// All requests over the time all runs took.
    rps: f64,
    /// The median of the runs' p50s.
    p50: f64,
    records_per_request: f64,
    cpu_per_thousand: f64,
    librdkafka_per_thousand: f64,
}

impl Pooled {
    /// `runs`, of `requests` requests each.
    fn of(runs: &[OneKeyRun], requests: usize) -> Self {
        let total = (runs.len() * requests) as f64;
        let seconds: f64 = runs
            .iter()
            .map(|run| requests as f64 / run.figures.rps)
            .sum();
        let mut p50s: Vec<f64> = runs.iter().map(|run| run.figures.p50).collect();
        p50s.sort_by(f64::total_cmp);
        let sum = |figure: fn(&OneKeyRun) -> f64| runs.iter().map(figure).sum::<f64>();
        Self {
            rps: total / seconds,
            p50: p50s[p50s.len() / 2],
            records_per_request: sum(|run| run.records as f64) / total,
            cpu_per_thousand: sum(|run| run.cpu) * 1e3 / total * 1e3,
            librdkafka_per_thousand: sum(|run| run.librdkafka_cpu) * 1e3 / total * 1e3,
        }
    }
}

/// `redis-benchmark -c 50 -t <test>` without `-r`: every request on one key.
async fn one_key_benchmark(port: u16, test: &str, requests: usize) -> Result<Figures> {
    redis_benchmark(
        port,
        test,
        &["-n", &requests.to_string(), "-c", CLIENTS, "-e"],
        "rmw",
    )
    .await
}

async fn one_key_run(
    served: &ServeProcess,
    ends: &EndOffsets,
    port: u16,
    test: &str,
    requests: usize,
) -> Result<OneKeyRun> {
    let repairs = repairs_written(served).await?;
    let before = settled(ends).await?;
    let cpu = cpu_seconds(served.pid())?;
    let librdkafka_cpu = threads_cpu_seconds(served.pid(), LIBRDKAFKA_THREADS)?;
    let figures = one_key_benchmark(port, test, requests).await?;
    let after = settled(ends).await?;
    Ok(OneKeyRun {
        figures,
        records: after - before,
        cpu: cpu_seconds(served.pid())? - cpu,
        librdkafka_cpu: threads_cpu_seconds(served.pid(), LIBRDKAFKA_THREADS)? - librdkafka_cpu,
        repairs: repairs_written(served).await? - repairs,
    })
}

/// Waits until the topic's end offsets have not moved for [`SETTLE`];
/// returns their sum.
async fn settled(ends: &EndOffsets) -> Result<i64> {
    let deadline = Instant::now() + PATIENCE;
    let mut last = ends.total().await?;
    let mut since = Instant::now();
    while since.elapsed() < SETTLE {
        if Instant::now() > deadline {
            return Err(Error::Failed(format!(
                "rmw: the topic was still growing after {}s",
                PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(SETTLE_POLL).await;
        let now = ends.total().await?;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(last)
}

/// The child's `kafkv_repairs_written_total` (0 before its first repair).
async fn repairs_written(served: &ServeProcess) -> Result<f64> {
    Ok(metric(served, "kafkv_repairs_written_total")
        .await?
        .unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_which_test_goes_first() {
        assert_eq!(interleaved(1), ["set", "incr"]);
        assert_eq!(
            interleaved(3),
            ["set", "incr", "incr", "set", "set", "incr"]
        );
        let runs = interleaved(4);
        let position_sum = |test| -> usize {
            runs.iter()
                .enumerate()
                .filter(|(_, t)| **t == test)
                .map(|(i, _)| i)
                .sum()
        };
        // An even number of rounds puts both tests at the same mean position.
        assert_eq!(position_sum("set"), position_sum("incr"));
    }

    fn run(rps: f64, p50: f64, records: i64, cpu: f64) -> OneKeyRun {
        OneKeyRun {
            figures: Figures { rps, p50, p99: 0.0 },
            records,
            cpu,
            librdkafka_cpu: cpu / 2.0,
            repairs: 0.0,
        }
    }

    #[test]
    fn pooling_weighs_each_run_by_the_time_it_took() {
        // 1,000 requests at 1,000/s (1 s) and at 250/s (4 s): 2,000 in 5 s.
        let runs = [run(1_000.0, 1.0, 1_000, 0.5), run(250.0, 3.0, 1_010, 1.5)];
        let pooled = Pooled::of(&runs, 1_000);
        assert!((pooled.rps - 400.0).abs() < 1e-9, "{}", pooled.rps);
        assert_eq!(pooled.p50, 3.0, "the upper median of two");
        assert!((pooled.records_per_request - 1.005).abs() < 1e-9);
        // 2 CPU-s over 2,000 requests: 1,000 CPU-ms per 1,000.
        assert!((pooled.cpu_per_thousand - 1_000.0).abs() < 1e-9);
        assert!((pooled.librdkafka_per_thousand - 500.0).abs() < 1e-9);
    }
}
