//! `kafkv serve`'s RESP threads as Linux schedules them
//! (`kafkv::scheduling`): real-time on contended CPUs, ordinary with
//! `--request-priority normal`; and without `CAP_SYS_NICE` or an
//! `RLIMIT_RTPRIO`, a warning that says what to grant and a store that
//! serves all the same. (The grant by `RLIMIT_RTPRIO` alone cannot be
//! tested here: raising the limit takes `CAP_SYS_RESOURCE`, which this
//! machine's root lacks; `scheduling.rs`'s tests check the flag that route
//! depends on.)

use std::{process::Stdio, time::Duration};

use redis::AsyncCommands as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::harness::{
    KAFKV, Kafka, ServeProcess, eventually, free_port, redis_connection, unique_topic,
};

/// SCHED_FIFO's number in `/proc/<pid>/task/<tid>/stat`.
const SCHED_FIFO: u32 = 1;

/// What the log says when real-time scheduling was granted.
const GRANTED: &str = "RESP threads run at real-time priority";

/// What it says when it was not.
const REFUSED: &str = "RESP threads run at normal priority";

/// Whether this process has `CAP_SYS_NICE` (bit 23 of its effective set),
/// and so whether it can drop it for a child (with `CAP_SETPCAP`, bit 8).
fn capabilities() -> (bool, bool) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|bits| u64::from_str_radix(bits.trim(), 16).ok())
        .unwrap_or(0);
    (effective & (1 << 23) != 0, effective & (1 << 8) != 0)
}

/// The scheduling policy of `pid`'s thread named `name`: field 41 of its
/// `stat` (0: SCHED_OTHER, 1: SCHED_FIFO).
fn policy_of(pid: u32, name: &str) -> Option<u32> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        // Fields from the third on follow the name's closing parenthesis.
        let after_name = &stat[stat.rfind(')')? + 1..];
        return after_name.split_whitespace().nth(41 - 3)?.parse().ok();
    }
    None
}

/// Busy processes under `SCHED_IDLE`, one more than there are CPUs, until
/// dropped: a task always waits for a CPU (the pressure kafkv reads), yet
/// every other test's threads run ahead of them.
struct Contention(Vec<std::process::Child>);

impl Contention {
    fn start() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spinners = (0..=cpus)
            .map(|_| {
                std::process::Command::new("chrt")
                    .args(["--idle", "0", "sh", "-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("chrt (util-linux) runs a spinner")
            })
            .collect();
        Self(spinners)
    }
}

impl Drop for Contention {
    fn drop(&mut self) {
        for spinner in &mut self.0 {
            let _ = spinner.kill();
            let _ = spinner.wait();
        }
    }
}

async fn serve_with_resp(
    dir: &std::path::Path,
    brokers: &str,
    extra: &[&str],
) -> (ServeProcess, std::net::SocketAddr) {
    let resp: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let topic = unique_topic("scheduling");
    let resp_text = resp.to_string();
    let mut args = vec![
        "--brokers",
        brokers,
        "--topic",
        &topic,
        "--resp-listen",
        &resp_text,
    ];
    args.extend_from_slice(extra);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    (ServeProcess::start(dir, &args).await, resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp_threads_run_realtime_on_contended_cpus_unless_told_normal() {
    let kafka = Kafka::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (realtime, realtime_resp) = serve_with_resp(dir.path(), &kafka.brokers(), &[]).await;
    let (normal, normal_resp) = serve_with_resp(
        dir.path(),
        &kafka.brokers(),
        &["--request-priority", "normal"],
    )
    .await;
    let log = realtime.log();
    if !log.contains(GRANTED) {
        // Only a process without the privilege may be refused it (CI runs
        // as root, where this must not happen), and it says what to grant.
        assert!(!capabilities().0, "refused despite CAP_SYS_NICE: {log}");
        assert!(
            log.contains(REFUSED) && log.contains("LimitRTPRIO=1"),
            "{log}"
        );
        return;
    }
    assert!(!normal.log().contains(GRANTED), "{}", normal.log());
    let mut to_realtime = redis_connection(realtime_resp).await.unwrap();
    let mut to_normal = redis_connection(normal_resp).await.unwrap();
    let _contention = Contention::start();
    // Each GET wakes the threads, and their sleeps read the pressure.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while policy_of(realtime.pid(), "kafkv-resp-0") != Some(SCHED_FIFO) {
        assert!(
            std::time::Instant::now() < deadline,
            "the RESP thread did not turn real-time on contended CPUs within 30 s"
        );
        let _: Option<String> = to_realtime.get("k").await.unwrap();
        let _: Option<String> = to_normal.get("k").await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The same contention, the same requests: `normal` stays ordinary.
    for _ in 0..50 {
        let _: Option<String> = to_normal.get("k").await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(policy_of(normal.pid(), "kafkv-resp-0"), Some(0));
}

/// `kafkv serve` without the privilege of real-time scheduling: an
/// `RLIMIT_RTPRIO` of 0 and, where this process has it, without
/// `CAP_SYS_NICE`; returns what it logged up to listening, and its HTTP
/// address.
async fn serve_unprivileged(
    dir: &std::path::Path,
    brokers: &str,
) -> (tokio::process::Child, Vec<String>, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let topic = unique_topic("unprivileged");
    let mut command = tokio::process::Command::new("prlimit");
    command.args(["--rtprio=0", "--"]);
    let (has_nice, can_drop) = capabilities();
    if has_nice {
        assert!(
            can_drop,
            "this test must drop CAP_SYS_NICE for kafkv: run it as root or without the capability"
        );
        command.args([
            "setpriv",
            "--inh-caps=-sys_nice",
            "--bounding-set=-sys_nice",
            "--",
        ]);
    }
    let mut child = command
        .arg(KAFKV)
        .args([
            "serve",
            "--brokers",
            brokers,
            "--topic",
            &topic,
            "--http-listen",
            &http,
        ])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("prlimit and setpriv (util-linux) and kafkv start");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logged = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let listening = line.contains("HTTP API listening");
            logged.push(line);
            if listening {
                return;
            }
        }
        panic!("kafkv serve exited before listening: {logged:?}");
    })
    .await
    .expect("kafkv serve listens within two minutes");
    (child, logged, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_privilege_kafkv_says_what_to_grant_and_serves() {
    let kafka = Kafka::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, logged, http) = serve_unprivileged(dir.path(), &kafka.brokers()).await;
    let warning = logged
        .iter()
        .find(|line| line.contains(REFUSED))
        .unwrap_or_else(|| panic!("a warning that real-time scheduling was refused: {logged:#?}"));
    assert!(
        warning.contains("CAP_SYS_NICE")
            && warning.contains("LimitRTPRIO=1")
            && warning.contains("--request-priority normal"),
        "{warning}"
    );
    // It serves all the same.
    let client = reqwest::Client::new();
    eventually("the unprivileged instance is ready", || {
        let client = client.clone();
        let http = http.clone();
        async move {
            client
                .get(format!("http://{http}/readyz"))
                .send()
                .await
                .is_ok_and(|answer| answer.status().is_success())
        }
    })
    .await;
    let url = format!("http://{http}/v1/kv/k");
    let put = client.put(&url).body("v").send().await.unwrap();
    assert!(put.status().is_success(), "{put:?}");
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "v"
    );
    child.kill().await.unwrap();
}
