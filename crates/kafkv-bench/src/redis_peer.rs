//! The RESP comparison: `redis-benchmark` against kafkv's Redis front end and
//! against a `redis-server` started here without persistence, in the same run
//! on the same machine. Both sides get the same load: 50 clients, random keys
//! from a space of 100,000, SET first (so GETs find values), with and without
//! 16-command pipelines.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{
    net::TcpListener,
    process::{Child, Command},
};

use kafkv::Store;

use crate::{
    BenchConfig,
    error::{Error, Result},
    kafka::{serve, store_config},
    progress,
    report::Row,
};

const CLIENTS: &str = "50";
const KEYSPACE: &str = "100000";

/// The error for a missing Redis tool that `section` of `--only` needs.
pub fn missing(tool: &'static str, section: &'static str) -> Error {
    Error::MissingTool { tool, section }
}

/// A `redis-server` without persistence on a free loopback port, killed when
/// dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts it and waits until it accepts connections.
    pub async fn start(section: &'static str) -> Result<Self> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|_| missing("redis-server", section))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(Error::Failed("redis-server did not start".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self { child, port })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// One redis-benchmark test's figures.
pub(crate) struct Figures {
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
}

pub async fn compare(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    for tool in ["redis-benchmark", "redis-server"] {
        if which(tool).is_none() {
            return Err(missing(tool, "resp"));
        }
    }

    // kafkv with its RESP front end on a free port.
    let mut kafkv_config = store_config(brokers, &format!("bench-resp-{run_id}"));
    kafkv_config.fetch_wait = config.resp_fetch_wait;
    let store = Store::open(kafkv_config).await?;
    let resp = TcpListener::bind("127.0.0.1:0").await?;
    let served = serve(store, Some(resp)).await?;
    let kafkv_port = served.resp_address().expect("RESP is on").port();

    // redis-server without persistence on another free port.
    let redis = RedisServer::start("resp").await?;
    let redis_port = redis.port;
    let version = redis_version().await;

    let mut rows = Vec::new();
    for pipeline in ["1", "16"] {
        for (test, requests) in [
            ("set", config.resp_set_requests),
            ("get", config.resp_get_requests),
        ] {
            progress(format!(
                "resp: {} x {requests}, -P {pipeline}, kafkv then redis-server",
                test.to_uppercase()
            ));
            let kafkv = run_benchmark(kafkv_port, test, requests, pipeline).await?;
            let redis = run_benchmark(redis_port, test, requests, pipeline).await?;
            let label = format!(
                "RESP {} (50 clients, -P {pipeline}, fetch wait {})",
                test.to_uppercase(),
                humantime::format_duration(config.resp_fetch_wait)
            );
            rows.extend(side_by_side(&label, &kafkv, &redis, &version));
        }
    }

    redis.stop().await;
    served.stop().await;
    Ok(rows)
}

/// Throughput, p50 and p99 of one redis-benchmark test, kafkv's beside the
/// peer's, as rows named `label …`.
pub(crate) fn side_by_side(
    label: &str,
    kafkv: &Figures,
    peer: &Figures,
    version: &str,
) -> Vec<Row> {
    [
        ("throughput", "req/s", kafkv.rps, peer.rps),
        ("latency p50", "ms", kafkv.p50, peer.p50),
        ("latency p99", "ms", kafkv.p99, peer.p99),
    ]
    .into_iter()
    .map(|(what, unit, k, r)| Row {
        measurement: format!("{label} {what}"),
        unit: unit.into(),
        kafkv: k,
        peer: version.to_owned(),
        raw: r,
    })
    .collect()
}

pub(crate) async fn run_benchmark(
    port: u16,
    test: &str,
    requests: usize,
    pipeline: &str,
) -> Result<Figures> {
    let requests = requests.to_string();
    let args = [
        "-n", &requests, "-c", CLIENTS, "-r", KEYSPACE, "-P", pipeline,
    ];
    redis_benchmark(port, test, &args, "resp").await
}

/// `redis-benchmark -t <test> <args> --csv` against `port`, for `section`.
pub(crate) async fn redis_benchmark(
    port: u16,
    test: &str,
    args: &[&str],
    section: &'static str,
) -> Result<Figures> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", test])
        .args(args)
        .arg("--csv")
        .output()
        .await
        .map_err(|_| missing("redis-benchmark", section))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || stderr.contains("ERR") || stdout.contains("ERR") {
        return Err(Error::Failed(format!(
            "redis-benchmark against port {port} failed:\n{stdout}\n{stderr}"
        )));
    }
    parse_csv(&stdout, test)
        .ok_or_else(|| Error::Failed(format!("unexpected redis-benchmark output:\n{stdout}")))
}

/// Reads `"SET","rps","avg","min","p50","p95","p99","max"` rows.
fn parse_csv(csv: &str, test: &str) -> Option<Figures> {
    csv.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
        // LRANGE_100's row is "LRANGE_100 (first 100 elements)"; the
        // LPUSH that fills its list first is another test's.
        let name = fields[0].to_ascii_lowercase();
        let named = name == test.to_ascii_lowercase()
            || name.starts_with(&format!("{} (first ", test.to_ascii_lowercase()));
        if fields.len() < 7 || !named {
            return None;
        }
        Some(Figures {
            rps: fields[1].parse().ok()?,
            p50: fields[4].parse().ok()?,
            p99: fields[6].parse().ok()?,
        })
    })
}

/// "redis 7.0.15", from `redis-server --version`.
pub async fn redis_version() -> String {
    let output = Command::new("redis-server").arg("--version").output().await;
    output
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(|v| format!("redis {v}")))
        })
        .unwrap_or_else(|| "redis-server".into())
}

/// The first `tool` on the PATH.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmark_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"86956.52\",\"0.309\",\"0.096\",\"0.295\",\"0.463\",\"0.631\",\"1.319\"\n";
        let figures = parse_csv(csv, "set").unwrap();
        assert_eq!(figures.rps, 86956.52);
        assert_eq!(figures.p50, 0.295);
        assert_eq!(figures.p99, 0.631);
        assert!(parse_csv(csv, "get").is_none());
        let lrange = "\"LPUSH (needed to benchmark LRANGE)\",\"1.0\",\"0\",\"0\",\"1\",\"0\",\"2\",\"0\"\n\
                      \"LRANGE_100 (first 100 elements)\",\"5.0\",\"0\",\"0\",\"3\",\"0\",\"4\",\"0\"\n";
        let figures = parse_csv(lrange, "lrange_100").unwrap();
        assert_eq!((figures.rps, figures.p50, figures.p99), (5.0, 3.0, 4.0));
        assert!(parse_csv(lrange, "lpush").is_none());
    }
}
