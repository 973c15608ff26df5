//! Read-modify-write commands (docs/rmw.md) against real broker processes:
//! counters stay linearizable across a killed instance and a paused broker,
//! `SET NX` has one winner, a writer that dies before its repair is repaired
//! by the others and compaction then loses nothing, a topic without the
//! timing margin refuses them, and every instance computes the same replies.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use kafkv::{Consistency, StoreConfig, store::MIN_TIMING_MARGIN};
use redis::{FromRedisValue, aio::MultiplexedConnection};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

use crate::harness::{
    BrokerProcess, Kafka, Kafkv, ServeProcess, end_offset_total, eventually, free_port, read_topic,
    redis_connection, test_config, unique_topic,
};

/// Sends one command and returns its reply; panics on an error reply.
async fn run<T: FromRedisValue>(c: &mut MultiplexedConnection, args: &[&[u8]]) -> T {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    match cmd.query_async(c).await {
        Ok(reply) => reply,
        Err(e) => panic!("{}: {e}", String::from_utf8_lossy(&args.join(&b' '))),
    }
}

async fn connect(address: SocketAddr) -> MultiplexedConnection {
    redis_connection(address)
        .await
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"))
}

/// `key`'s value and version as `kv` holds them after catching up.
async fn strong(kv: &Kafkv, key: &[u8]) -> Option<(Vec<u8>, i64)> {
    kv.store
        .get(key, Consistency::Strong)
        .await
        .expect("strong read")
        .map(|v| (v.value.to_vec(), v.offset))
}

/// The last `lines` lines of a log, for failure messages.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// 1. A counter's history is linearizable.

/// The sequential specification of a counter that only `INCR`s.
#[derive(Clone, Debug, Default)]
struct Counter(i64);

#[derive(Clone, Debug)]
struct Incr;

impl SequentialSpec for Counter {
    type Op = Incr;
    type Ret = i64;

    fn invoke(&mut self, _: &Incr) -> i64 {
        self.0 += 1;
        self.0
    }
}

/// One `INCR` as its client saw it. `invoked` and the return's position are
/// drawn from one sequence shared by every client, taken just before the
/// request is sent and just after the reply arrives, so "returned before
/// invoked" in that sequence means it really did.
#[derive(Clone, Debug)]
struct Call {
    /// The client's logical thread: a new one after each unknown outcome,
    /// since the tester allows one call in flight per thread.
    thread: (usize, usize),
    invoked: u64,
    outcome: CallOutcome,
}

#[derive(Clone, Debug)]
enum CallOutcome {
    Returned {
        at: u64,
        value: i64,
    },
    /// May or may not have taken effect: invoked, never returned.
    Unknown(String),
}

/// What an error reply or a failure says about whether the command ran.
enum Verdict {
    /// Nothing was written: the call can be left out of the history.
    NotWritten,
    Unknown,
}

fn verdict(e: &redis::RedisError) -> Verdict {
    // No error code: the connection broke or the reply timed out.
    if e.code().is_none() {
        return Verdict::Unknown;
    }
    let text = e.to_string();
    if text.contains("may have") || text.contains("result is unknown") {
        Verdict::Unknown
    } else if text.contains("nothing was written")
        || text.contains("was not sent")
        || text.contains("Nothing reached the log")
    {
        Verdict::NotWritten
    } else {
        panic!("an error reply that says neither 'not written' nor 'unknown': {text}")
    }
}

/// Shared by the clients and the fault schedule.
struct Run {
    /// The RESP addresses of the three instances: a restarted one moves, a
    /// killed one is `None` (its clients notice and drop their connections).
    instances: RwLock<[Option<SocketAddr>; 3]>,
    sequence: AtomicU64,
    stop: AtomicBool,
    /// Successful calls in all, and per instance.
    succeeded: AtomicUsize,
    succeeded_at: [AtomicUsize; 3],
}

/// The most calls one client makes, whatever the fault schedule does.
const MAX_CALLS_PER_CLIENT: usize = 400;

/// Sends `INCR key` until told to stop, each call to the next instance in
/// turn (skipping one that refuses connections: nothing was sent).
async fn counter_client(id: usize, key: &'static str, run: Arc<Run>) -> (Vec<Call>, usize) {
    let mut connections: [Option<(SocketAddr, MultiplexedConnection)>; 3] = [None, None, None];
    let mut thread = (id, 0);
    let mut calls = Vec::new();
    let mut not_written = 0;
    for i in 0..MAX_CALLS_PER_CLIENT {
        if run.stop.load(Ordering::Acquire) {
            break;
        }
        let mut target = None;
        for slot in (0..3).map(|k| (id + i + k) % 3) {
            let Some(address) = run.instances.read().unwrap()[slot] else {
                connections[slot] = None;
                continue;
            };
            match &connections[slot] {
                Some((at, _)) if *at == address => {}
                _ => match redis_connection(address).await {
                    Ok(c) => connections[slot] = Some((address, c)),
                    Err(_) => {
                        connections[slot] = None;
                        continue;
                    }
                },
            }
            target = Some(slot);
            break;
        }
        let Some(slot) = target else { continue };
        let connection = &mut connections[slot].as_mut().unwrap().1;
        let invoked = run.sequence.fetch_add(1, Ordering::SeqCst);
        let reply: redis::RedisResult<i64> =
            redis::cmd("INCR").arg(key).query_async(connection).await;
        match reply {
            Ok(value) => {
                let at = run.sequence.fetch_add(1, Ordering::SeqCst);
                calls.push(Call {
                    thread,
                    invoked,
                    outcome: CallOutcome::Returned { at, value },
                });
                run.succeeded.fetch_add(1, Ordering::AcqRel);
                run.succeeded_at[slot].fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                if e.code().is_none() {
                    connections[slot] = None;
                }
                match verdict(&e) {
                    Verdict::NotWritten => not_written += 1,
                    Verdict::Unknown => {
                        calls.push(Call {
                            thread,
                            invoked,
                            outcome: CallOutcome::Unknown(e.to_string()),
                        });
                        thread.1 += 1;
                    }
                }
            }
        }
    }
    (calls, not_written)
}

/// Feeds the calls to stateright's tester in the order of the shared
/// sequence and returns a linearization, if there is one.
///
/// The tester searches depth first, trying threads in the order of their
/// ids, and a call still in flight can be tried anywhere after its
/// invocation. Threads that end in such a call get the highest ids, so it
/// is tried only where no returned call fits: the search stays linear
/// instead of trying every unknown call at every step.
fn linearize(calls: &[Call]) -> Option<Vec<(Incr, i64)>> {
    let unknown: BTreeSet<(usize, usize)> = calls
        .iter()
        .filter(|c| matches!(c.outcome, CallOutcome::Unknown(_)))
        .map(|c| c.thread)
        .collect();
    // (ends in an unknown call, client, epoch)
    type Thread = (bool, usize, usize);
    let id = |thread: (usize, usize)| -> Thread {
        let (client, epoch) = thread;
        (unknown.contains(&thread), client, epoch)
    };
    // (position in the shared sequence, thread, the reply if a return)
    let mut events: Vec<(u64, Thread, Option<i64>)> = Vec::new();
    for call in calls {
        events.push((call.invoked, id(call.thread), None));
        if let CallOutcome::Returned { at, value } = call.outcome {
            events.push((at, id(call.thread), Some(value)));
        }
    }
    events.sort_by_key(|(at, _, _)| *at);
    let mut tester = LinearizabilityTester::new(Counter::default());
    for (_, thread, returned) in events {
        match returned {
            None => tester.on_invoke(thread, Incr).map(|_| ()),
            Some(value) => tester.on_return(thread, value).map(|_| ()),
        }
        .expect("a well-formed history");
    }
    tester.serialized_history()
}

/// The history check itself, on histories written by hand: a reply older
/// than one the client could already know is caught even when every reply
/// is distinct, and calls with unknown outcomes fill gaps, or not.
#[test]
fn the_counter_history_check_catches_stale_replies_and_allows_unknown_calls() {
    let returned = |thread, invoked, at, value| Call {
        thread: (thread, 0),
        invoked,
        outcome: CallOutcome::Returned { at, value },
    };
    let unknown = |thread, invoked| Call {
        thread: (thread, 0),
        invoked,
        outcome: CallOutcome::Unknown("lost".into()),
    };
    // Client 1 starts after client 0 saw 2, and gets 1.
    assert!(linearize(&[returned(0, 0, 1, 2), returned(1, 2, 3, 1)]).is_none());
    // Overlapping, the same replies are fine.
    assert!(linearize(&[returned(0, 0, 2, 2), returned(1, 1, 3, 1)]).is_some());
    // A gap at 2 that no call explains, then one an unknown call explains,
    // and an unknown call that never happened.
    let gap = [returned(0, 0, 1, 1), returned(1, 4, 5, 3)];
    assert!(linearize(&gap).is_none());
    let explained = [gap[0].clone(), unknown(2, 2), gap[1].clone(), unknown(3, 6)];
    assert!(linearize(&explained).is_some());
    // An unknown call invoked after the gap's reply cannot fill it.
    let late = [gap[0].clone(), gap[1].clone(), unknown(2, 6)];
    assert!(linearize(&late).is_none());
}

/// The RESP address and `kafkv serve` arguments for the child instance.
fn serve_args(brokers: &str, topic: &str) -> (SocketAddr, Vec<std::ffi::OsString>) {
    let resp = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args = ["--brokers", brokers, "--topic", topic, "--resp-listen"]
        .into_iter()
        .map(Into::into)
        .chain([resp.to_string().into()])
        .collect();
    (resp, args)
}

async fn start_serve(dir: &std::path::Path, args: &[std::ffi::OsString]) -> ServeProcess {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(AsRef::as_ref).collect();
    ServeProcess::start(dir, &args).await
}

/// 6 clients `INCR` one key through three instances (two in this process,
/// one `kafkv serve`), while the child is SIGKILLed and later restarted and
/// the broker is paused for a second. Every reply is distinct, the history
/// is linearizable for a counter (calls with unknown outcomes may or may not
/// have happened), every instance ends at the same value and version, and
/// so does a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_are_linearizable_through_a_killed_instance_and_a_paused_broker() {
    const KEY: &str = "counter";
    const CLIENTS: usize = 6;
    let started = Instant::now();
    let broker = BrokerProcess::start().await;
    let brokers = broker.address();
    let topic = unique_topic("rmw-counter");
    let config = test_config(&brokers, &topic);
    let a = Kafkv::start(config.clone()).await;
    let b = Kafkv::start(config.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (c_resp, c_args) = serve_args(&brokers, &topic);
    let c = start_serve(dir.path(), &c_args).await;

    let run = Arc::new(Run {
        instances: RwLock::new([Some(a.resp), Some(b.resp), Some(c_resp)]),
        sequence: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        succeeded: AtomicUsize::new(0),
        succeeded_at: Default::default(),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(counter_client(id, KEY, run.clone())))
        .collect();

    // The fault schedule, each step once the clients made progress.
    let progress = |n: usize| {
        let run = &run;
        async move {
            eventually(&format!("{n} successful INCRs"), || async {
                run.succeeded.load(Ordering::Acquire) >= n
            })
            .await;
        }
    };
    progress(40).await;
    run.instances.write().unwrap()[2] = None;
    let killed_log = c.kill9();
    progress(80).await;
    broker.pause();
    // The fault lasts a second; this is its duration, not a synchronization.
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.resume();
    progress(120).await;
    let (c_resp, c_args) = serve_args(&brokers, &topic);
    let c = start_serve(dir.path(), &c_args).await;
    let through_c = run.succeeded_at[2].load(Ordering::Acquire);
    run.instances.write().unwrap()[2] = Some(c_resp);
    eventually("20 INCRs through the restarted child", || async {
        run.succeeded_at[2].load(Ordering::Acquire) >= through_c + 20
    })
    .await;
    run.stop.store(true, Ordering::Release);

    let mut calls = Vec::new();
    let mut not_written = 0;
    for client in clients {
        let (mine, refused) = client.await.expect("client task");
        calls.extend(mine);
        not_written += refused;
    }
    let returned: Vec<i64> = calls
        .iter()
        .filter_map(|c| match c.outcome {
            CallOutcome::Returned { value, .. } => Some(value),
            CallOutcome::Unknown(_) => None,
        })
        .collect();
    let unknown: Vec<String> = calls
        .iter()
        .filter_map(|c| match &c.outcome {
            CallOutcome::Unknown(why) => Some(why.clone()),
            CallOutcome::Returned { .. } => None,
        })
        .collect();
    println!(
        "{} INCRs returned, {} unknown, {not_written} not written; unknown: {unknown:?}",
        returned.len(),
        unknown.len()
    );
    let distinct: BTreeSet<i64> = returned.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        returned.len(),
        "two INCRs got the same reply"
    );

    let checked = Instant::now();
    let calls = Arc::new(calls);
    let history = calls.clone();
    // The tester recurses once per call: a thread with room for that.
    let linearization = tokio::task::spawn_blocking(move || {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || linearize(&history))
            .unwrap()
            .join()
            .unwrap()
    })
    .await
    .unwrap();
    println!("linearizability check: {:?}", checked.elapsed());
    assert!(
        linearization.is_some(),
        "the INCR history is not linearizable: {calls:#?}\nkilled child's log:\n{}",
        tail(&killed_log, 40)
    );

    // Every live instance ends at the same value and version.
    let final_a = strong(&a, KEY.as_bytes())
        .await
        .expect("the counter exists");
    assert_eq!(strong(&b, KEY.as_bytes()).await, Some(final_a.clone()));
    let http = reqwest::Client::new();
    let from_c = http
        .get(c.url(&format!("/v1/kv/{KEY}?consistency=strong")))
        .send()
        .await
        .unwrap();
    let c_offset: i64 = from_c.headers()["x-kafkv-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        (from_c.bytes().await.unwrap().to_vec(), c_offset),
        final_a,
        "the restarted child"
    );
    let value: i64 = std::str::from_utf8(&final_a.0).unwrap().parse().unwrap();
    assert!(
        value >= returned.len() as i64 && value <= (returned.len() + unknown.len()) as i64,
        "final value {value} outside [{}, {}]",
        returned.len(),
        returned.len() + unknown.len()
    );

    // Once writes stop, repairs settle every key, the killed child's
    // unrepaired operations included (the others' backstop).
    for kv in [&a, &b] {
        eventually("every key is settled", || async {
            kv.store.unsettled_keys() == 0
        })
        .await;
    }
    let fresh = Kafkv::start(config).await;
    assert_eq!(strong(&fresh, KEY.as_bytes()).await, Some(final_a));
    let (status, log) = tokio::task::spawn_blocking(move || c.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{}", tail(&log, 40));
    for kv in [a, b, fresh] {
        kv.stop().await;
    }
    println!("took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// 2. SET NX: one winner per round.

/// In each of 20 rounds, clients of three instances send `SET lock:<round>
/// <client> NX` at once: exactly one gets OK, the others nil, and every
/// instance then holds the winner's value at the same version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_nx_has_exactly_one_winner_per_round_and_every_instance_agrees() {
    const ROUNDS: usize = 20;
    let kafka = Kafka::start().await;
    let topic = unique_topic("rmw-lock");
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Kafkv::start(kafka.config(&topic)).await);
    }
    let mut connections = Vec::new();
    for kv in &instances {
        connections.push(connect(kv.resp).await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    for round in 0..ROUNDS {
        let key = format!("lock:{round}");
        let attempts = connections.iter().enumerate().map(|(client, c)| {
            let (mut c, key, barrier) = (c.clone(), key.clone(), barrier.clone());
            tokio::spawn(async move {
                let name = format!("client-{client}");
                barrier.wait().await;
                let reply: Option<String> =
                    run(&mut c, &[b"SET", key.as_bytes(), name.as_bytes(), b"NX"]).await;
                (name, reply)
            })
        });
        let mut replies = Vec::new();
        for attempt in attempts.collect::<Vec<_>>() {
            replies.push(attempt.await.unwrap());
        }
        let winners: Vec<&String> = replies
            .iter()
            .filter(|(_, reply)| reply.as_deref() == Some("OK"))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {replies:?}");
        assert!(
            replies
                .iter()
                .all(|(_, reply)| reply.is_none() || reply.as_deref() == Some("OK")),
            "round {round}: {replies:?}"
        );
        let held = strong(&instances[0], key.as_bytes()).await;
        assert_eq!(
            held.as_ref().map(|(value, _)| value.as_slice()),
            Some(winners[0].as_bytes()),
            "round {round}"
        );
        for kv in &instances[1..] {
            assert_eq!(strong(kv, key.as_bytes()).await, held, "round {round}");
        }
    }
    for kv in instances {
        kv.stop().await;
    }
}

// ---------------------------------------------------------------------------
// 3. A writer killed between its operation and its repair.

/// The writer (repairs off: it stands for one killed right after its
/// operations) INCRs a key that had a plain base value; the other instances
/// repair it after their backstop. Compaction then removes the base and the
/// operations, and a fresh instance holds exactly the value and version the
/// running ones hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_dead_before_its_repair_is_repaired_by_the_others_and_compaction_loses_nothing() {
    const KEY: &[u8] = b"hits";
    // The smallest margin the protocol accepts, and a little more.
    let margin = MIN_TIMING_MARGIN + Duration::from_secs(1);
    let broker = BrokerProcess::start_with(Duration::from_secs(1)).await;
    let brokers = broker.address();
    let topic = unique_topic("rmw-repair");
    let config = StoreConfig {
        min_compaction_lag: margin,
        delete_retention: margin,
        ..test_config(&brokers, &topic)
    };
    let writer = Kafkv::start(StoreConfig {
        repairs: false,
        ..config.clone()
    })
    .await;
    let repairing = StoreConfig {
        repair_backstop: Duration::from_millis(200),
        ..config.clone()
    };
    let others = [
        Kafkv::start(repairing.clone()).await,
        Kafkv::start(repairing).await,
    ];

    let mut c = connect(writer.resp).await;
    let ok: String = run(&mut c, &[b"SET", KEY, b"10"]).await;
    assert_eq!(ok, "OK");
    for expected in 11..=15 {
        let value: i64 = run(&mut c, &[b"INCR", KEY]).await;
        assert_eq!(value, expected);
    }

    for kv in others.iter().chain([&writer]) {
        kv.store.catch_up().await.unwrap();
        eventually("the others repaired the writer's operations", || async {
            kv.store.unsettled_keys() == 0
        })
        .await;
    }
    // The log: the base, the five operations, then a repair (or one from
    // each of the others) restating the value; the writer wrote none.
    let records: Vec<_> = read_topic(&brokers, &topic)
        .await
        .into_iter()
        .filter(|r| r.key.as_deref() == Some(KEY))
        .collect();
    let values: Vec<Option<&[u8]>> = records.iter().map(|r| r.value.as_deref()).collect();
    assert_eq!(values[0], Some(&b"10"[..]), "{records:?}");
    let operations = &records[1..6];
    assert!(
        operations
            .iter()
            .all(|r| r.value.as_deref() != Some(&b"15"[..])),
        "{records:?}"
    );
    assert!(
        records.len() >= 7 && values[6..].iter().all(|v| *v == Some(&b"15"[..])),
        "after the operations, only repairs of the value 15: {records:?}"
    );
    let version = operations[4].offset;
    let expected = Some((b"15".to_vec(), version));
    for kv in others.iter().chain([&writer]) {
        assert_eq!(strong(kv, KEY).await, expected);
    }

    // Compaction removes the base and the operations once they are older
    // than the lag (the broker compacts every second).
    let compacted = Instant::now();
    eventually(
        "compaction removed the key's superseded records",
        || async {
            let left: Vec<_> = read_topic(&brokers, &topic)
                .await
                .into_iter()
                .filter(|r| r.key.as_deref() == Some(KEY))
                .collect();
            left.len() == 1
        },
    )
    .await;
    println!("compacted after {:?}", compacted.elapsed());
    let left: Vec<_> = read_topic(&brokers, &topic).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].offset > version, "{left:?}");
    assert_eq!(left[0].value.as_deref(), Some(&b"15"[..]));

    // A fresh instance bootstraps from the repair alone: same value, same version.
    let fresh = Kafkv::start(config).await;
    assert_eq!(
        strong(&fresh, KEY).await,
        expected,
        "a fresh instance on the compacted log (it started at {:?}; the topic now: {:?})",
        fresh.store.progress(),
        read_topic(&brokers, &topic).await
    );
    for kv in others.iter().chain([&writer]) {
        assert_eq!(strong(kv, KEY).await, expected);
    }
    // And it evaluates new operations on that state like everyone else.
    let mut f = connect(fresh.resp).await;
    let value: i64 = run(&mut f, &[b"INCR", KEY]).await;
    assert_eq!(value, 16);
    let after = strong(&fresh, KEY).await;
    assert_eq!(after.as_ref().map(|(v, _)| v.as_slice()), Some(&b"16"[..]));
    assert_eq!(strong(&others[0], KEY).await, after);
    for kv in others.into_iter().chain([writer, fresh]) {
        kv.stop().await;
    }
}

// ---------------------------------------------------------------------------
// 4. Too short a lag.

/// On an existing topic whose min.compaction.lag.ms is 1 s, read-modify-write
/// commands are refused with an error naming the setting, and write nothing;
/// plain SET, GET and DEL still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_with_too_short_a_compaction_lag_refuses_read_modify_write_but_not_plain_writes() {
    let kafka = Kafka::start().await;
    let brokers = kafka.brokers();
    let topic = unique_topic("rmw-short-lag");
    let creator = Kafkv::start(StoreConfig {
        min_compaction_lag: Duration::from_secs(1),
        ..kafka.config(&topic)
    })
    .await;
    creator.stop().await;
    // An instance with the default settings: the topic keeps its own.
    let kv = Kafkv::start(kafka.config(&topic)).await;
    let mut c = connect(kv.resp).await;
    let ok: String = run(&mut c, &[b"SET", b"plain", b"1"]).await;
    assert_eq!(ok, "OK");
    let before = end_offset_total(&brokers, &topic).await;

    let refused: [&[&[u8]]; 11] = [
        &[b"INCR", b"n"],
        &[b"INCRBY", b"n", b"5"],
        &[b"DECR", b"n"],
        &[b"INCRBYFLOAT", b"n", b"1.5"],
        &[b"APPEND", b"s", b"x"],
        &[b"SETRANGE", b"s", b"2", b"x"],
        &[b"SETBIT", b"s", b"3", b"1"],
        &[b"SETNX", b"lock", b"me"],
        &[b"SET", b"lock", b"me", b"NX"],
        &[b"SET", b"plain", b"2", b"XX"],
        &[b"INCR", b"plain"],
    ];
    for args in refused {
        let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let reply: redis::RedisResult<redis::Value> = cmd.query_async(&mut c).await;
        let error = match reply {
            Err(e) if e.code().is_some() => e.to_string(),
            other => panic!(
                "{} was not refused: {other:?}",
                String::from_utf8_lossy(&args.join(&b' '))
            ),
        };
        assert!(
            error.contains("read-modify-write commands are refused on this topic")
                && error.contains("min.compaction.lag.ms")
                && error.contains("nothing was written"),
            "{}: {error}",
            String::from_utf8_lossy(&args.join(&b' '))
        );
    }
    assert_eq!(
        end_offset_total(&brokers, &topic).await,
        before,
        "a refused command wrote a record"
    );
    for key in [&b"n"[..], b"s", b"lock"] {
        let value: Option<Vec<u8>> = run(&mut c, &[b"GET", key]).await;
        assert_eq!(value, None);
    }

    // Plain writes and reads still work.
    let value: String = run(&mut c, &[b"GET", b"plain"]).await;
    assert_eq!(value, "1");
    let ok: String = run(&mut c, &[b"SET", b"plain", b"2"]).await;
    assert_eq!(ok, "OK");
    let value: String = run(&mut c, &[b"GET", b"plain"]).await;
    assert_eq!(value, "2");
    let deleted: i64 = run(&mut c, &[b"DEL", b"plain"]).await;
    assert_eq!(deleted, 1);
    let value: Option<String> = run(&mut c, &[b"GET", b"plain"]).await;
    assert_eq!(value, None);
    assert_eq!(end_offset_total(&brokers, &topic).await, before + 2);
    kv.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Every instance computes the same replies.

/// Sequences of INCRBYFLOAT, APPEND, SETRANGE, SETBIT, GETSET and GETDEL on
/// one instance answer as Redis does; a second running instance and a fresh
/// one hold the same values at the same versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_modify_write_replies_and_results_agree_across_instances() {
    let kafka = Kafka::start().await;
    let topic = unique_topic("rmw-agree");
    let a = Kafkv::start(kafka.config(&topic)).await;
    let b = Kafkv::start(kafka.config(&topic)).await;
    let mut c = connect(a.resp).await;

    // INCRBYFLOAT (Redis's documented example).
    let _: String = run(&mut c, &[b"SET", b"float", b"10.50"]).await;
    let reply: String = run(&mut c, &[b"INCRBYFLOAT", b"float", b"0.1"]).await;
    assert_eq!(reply, "10.6");
    let reply: String = run(&mut c, &[b"INCRBYFLOAT", b"float", b"-5"]).await;
    assert_eq!(reply, "5.6");
    let _: String = run(&mut c, &[b"SET", b"exp", b"5.0e3"]).await;
    let reply: String = run(&mut c, &[b"INCRBYFLOAT", b"exp", b"2.0e2"]).await;
    assert_eq!(reply, "5200");
    let reply: String = run(&mut c, &[b"INCRBYFLOAT", b"new-float", b"0.25"]).await;
    assert_eq!(reply, "0.25");

    // APPEND.
    let len: i64 = run(&mut c, &[b"APPEND", b"greeting", b"Hello"]).await;
    assert_eq!(len, 5);
    let len: i64 = run(&mut c, &[b"APPEND", b"greeting", b" World"]).await;
    assert_eq!(len, 11);

    // SETRANGE, over a value and on a missing key (zero-padded).
    let _: String = run(&mut c, &[b"SET", b"range", b"Hello World"]).await;
    let len: i64 = run(&mut c, &[b"SETRANGE", b"range", b"6", b"Redis"]).await;
    assert_eq!(len, 11);
    let len: i64 = run(&mut c, &[b"SETRANGE", b"padded", b"6", b"Redis"]).await;
    assert_eq!(len, 11);

    // SETBIT: the reply is the old bit.
    let old: i64 = run(&mut c, &[b"SETBIT", b"bits", b"7", b"1"]).await;
    assert_eq!(old, 0);
    let old: i64 = run(&mut c, &[b"SETBIT", b"bits", b"7", b"0"]).await;
    assert_eq!(old, 1);
    let old: i64 = run(&mut c, &[b"SETBIT", b"bits", b"1", b"1"]).await;
    assert_eq!(old, 0);
    let old: i64 = run(&mut c, &[b"SETBIT", b"bits", b"20", b"1"]).await;
    assert_eq!(old, 0);

    // GETSET and GETDEL.
    let old: Option<String> = run(&mut c, &[b"GETSET", b"swap", b"first"]).await;
    assert_eq!(old, None);
    let old: Option<String> = run(&mut c, &[b"GETSET", b"swap", b"second"]).await;
    assert_eq!(old.as_deref(), Some("first"));
    let _: String = run(&mut c, &[b"SET", b"gone", b"bye"]).await;
    let old: Option<String> = run(&mut c, &[b"GETDEL", b"gone"]).await;
    assert_eq!(old.as_deref(), Some("bye"));
    let old: Option<String> = run(&mut c, &[b"GETDEL", b"gone"]).await;
    assert_eq!(old, None);

    let expected: [(&[u8], Option<&[u8]>); 10] = [
        (b"float", Some(b"5.6")),
        (b"exp", Some(b"5200")),
        (b"new-float", Some(b"0.25")),
        (b"greeting", Some(b"Hello World")),
        (b"range", Some(b"Hello Redis")),
        (b"padded", Some(b"\0\0\0\0\0\0Redis")),
        // Bits 1 and 20: 0x40, 0x00, 0x08.
        (b"bits", Some(&[0x40, 0x00, 0x08])),
        (b"swap", Some(b"second")),
        (b"gone", None),
        (b"never", None),
    ];
    let fresh = Kafkv::start(kafka.config(&topic)).await;
    for (key, value) in expected {
        let at_a = strong(&a, key).await;
        assert_eq!(
            at_a.as_ref().map(|(v, _)| v.as_slice()),
            value,
            "{}",
            String::from_utf8_lossy(key)
        );
        let from_resp: Option<Vec<u8>> = run(&mut c, &[b"GET", key]).await;
        assert_eq!(from_resp.as_deref(), value);
        assert_eq!(
            strong(&b, key).await,
            at_a,
            "{}",
            String::from_utf8_lossy(key)
        );
        assert_eq!(
            strong(&fresh, key).await,
            at_a,
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    for kv in [a, b, fresh] {
        kv.stop().await;
    }
}
