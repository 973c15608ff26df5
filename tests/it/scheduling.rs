//! `kafkv serve`'s request threads as Linux schedules them
//! (`kafkv::scheduling`): real-time while the CPUs are contended, ordinary
//! with `--request-priority normal`, and without the privilege a warning
//! that says what to grant and a store that serves all the same.

use std::{
    os::unix::fs::MetadataExt as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::AsyncCommands as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::harness::{
    KAFKV, Kafka, ServeProcess, eventually, free_port, redis_connection, unique_topic,
};

/// SCHED_FIFO's number in `/proc/<pid>/task/<tid>/sched`.
const SCHED_FIFO: u32 = 1;

/// What the log says when real-time scheduling was granted.
const GRANTED: &str = "request threads run at real-time priority";

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == 0)
}

/// The scheduling policy of `pid`'s thread named `name` (0: SCHED_OTHER,
/// 1: SCHED_FIFO), from its `sched` file.
fn policy_of(pid: u32, name: &str) -> Option<u32> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let sched = std::fs::read_to_string(task.join("sched")).ok()?;
        return sched
            .lines()
            .find(|line| line.starts_with("policy"))?
            .split(':')
            .nth(1)?
            .trim()
            .parse()
            .ok();
    }
    None
}

/// Busy threads, one more than there are CPUs, until dropped: every CPU
/// has a task waiting for it.
struct Contention {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Contention {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..=cpus)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Contention {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
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
async fn request_threads_run_realtime_while_the_cpus_are_contended_unless_told_normal() {
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
        assert!(
            !running_as_root(),
            "root was refused real-time scheduling: {log}"
        );
        assert!(log.contains("LimitRTPRIO=1"), "{log}");
        return;
    }
    assert!(!normal.log().contains(GRANTED), "{}", normal.log());
    let mut to_realtime = redis_connection(realtime_resp).await.unwrap();
    let mut to_normal = redis_connection(normal_resp).await.unwrap();
    let _contention = Contention::start();
    // Each GET wakes the threads, and their sleeps read the pressure.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while policy_of(realtime.pid(), "kafkv-resp-0") != Some(SCHED_FIFO) {
        assert!(
            std::time::Instant::now() < deadline,
            "the RESP thread did not turn real-time on contended CPUs within a minute"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_privilege_kafkv_says_what_to_grant_and_serves() {
    let kafka = Kafka::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let topic = unique_topic("unprivileged");
    let kafkv_args = [
        "serve",
        "--brokers",
        &kafka.brokers(),
        "--topic",
        &topic,
        "--http-listen",
        &http,
    ];
    // Root loses CAP_SYS_NICE (and its RLIMIT_RTPRIO is 0); another user
    // never had either.
    let mut command = if running_as_root() {
        let mut command = tokio::process::Command::new("setpriv");
        command
            .args(["--inh-caps=-sys_nice", "--bounding-set=-sys_nice", "--"])
            .arg(KAFKV)
            .args(kafkv_args);
        command
    } else {
        let mut command = tokio::process::Command::new(KAFKV);
        command.args(kafkv_args);
        command
    };
    let mut child = command
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("setpriv (util-linux) and kafkv start");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut warning = None;
    let listening = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("request threads run at normal priority") {
                warning = Some(line);
            } else if line.contains("HTTP API listening") {
                return true;
            }
        }
        false
    })
    .await
    .expect("kafkv serve starts within two minutes");
    assert!(listening, "kafkv serve exited before listening");
    let warning = warning.expect("a warning that real-time scheduling was refused");
    assert!(
        warning.contains("CAP_SYS_NICE") && warning.contains("--request-priority normal"),
        "{warning}"
    );
    // It serves all the same.
    let client = reqwest::Client::new();
    let url = format!("http://{http}/v1/kv/k");
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
    let put = client.put(&url).body("v").send().await.unwrap();
    assert!(put.status().is_success(), "{put:?}");
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "v"
    );
    child.kill().await.unwrap();
}
