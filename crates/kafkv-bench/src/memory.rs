//! Memory per key: `kafkv serve` as a child process, once on an empty topic
//! and once on a topic of `--memory-keys` distinct keys (16-byte keys,
//! `--value-bytes` values), each read from `/proc/<pid>/status` (VmRSS) once
//! ready; beside a `redis-server` without persistence loaded with the same
//! keys and values through `redis-cli --pipe`, measured by `INFO memory`.
//!
//! kafkv's figure is (RSS loaded − RSS empty) / N; redis-server's are the
//! same difference of `used_memory_rss`, and of `used_memory` (what its
//! allocator hands out, without fragmentation) for reference. Both sides
//! settle for a second before they are measured.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use kafkv_testkit::ServeProcess;
use tokio::{io::AsyncWriteExt, process::Command};

use crate::{
    BenchConfig,
    error::{Error, Result},
    kafka::{key_name, produce_topic},
    progress,
    redis_peer::{RedisServer, missing, redis_version, which},
    report::Row,
    resp_client::append_command,
};

/// Pause between ready (or loaded) and measuring, so that both sides' memory
/// figures are current: redis-server refreshes `used_memory_rss` in its cron.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);
/// How long a `kafkv serve` child may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Bytes of SET commands written to `redis-cli --pipe` at a time.
const PIPE_CHUNK: usize = 1 << 20;

/// Runs the comparison; `kafkv` is the binary run as `kafkv serve`.
pub async fn compare(
    kafkv: &Path,
    brokers: &str,
    run_id: u32,
    config: &BenchConfig,
) -> Result<Vec<Row>> {
    for tool in ["redis-server", "redis-cli"] {
        if which(tool).is_none() {
            return Err(missing(tool, "memory"));
        }
    }
    let keys = config.memory_keys;
    let dir = std::env::temp_dir().join(format!("kafkv-bench-memory-{run_id}"));
    let kafkv = measure_kafkv(kafkv, brokers, run_id, config, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let kafkv = kafkv?;

    progress(format!("memory: redis-server loaded with {keys} keys"));
    let (before, after) = redis_load_delta(0..keys, config.value_bytes, &[], "memory").await?;

    let per_key = |before: u64, after: u64| (after as f64 - before as f64) / keys as f64;
    let version = redis_version().await;
    Ok(vec![
        Row {
            measurement: format!("memory per key, {keys} keys (RSS delta)"),
            unit: "bytes/key".into(),
            kafkv,
            peer: version.clone(),
            raw: per_key(before.rss, after.rss),
        },
        Row {
            measurement: format!("memory per key, {keys} keys (vs redis used_memory)"),
            unit: "bytes/key".into(),
            kafkv,
            peer: version,
            raw: per_key(before.used, after.used),
        },
    ])
}

/// `INFO memory` of a fresh `redis-server` before and after `SET key-{i:012}
/// <value_bytes> <extra>` for each `i` of `keys` (through `redis-cli
/// --pipe`), each after [`SETTLE`]; for `section`'s progress lines.
pub(crate) async fn redis_load_delta(
    keys: impl ExactSizeIterator<Item = usize>,
    value_bytes: usize,
    extra: &[&[u8]],
    section: &'static str,
) -> Result<(RedisMemory, RedisMemory)> {
    let redis = RedisServer::start(section).await?;
    tokio::time::sleep(SETTLE).await;
    let before = info_memory(redis.port, section).await?;
    let count = keys.len();
    let took = pipe_sets(redis.port, keys, value_bytes, extra, section).await?;
    progress(format!(
        "{section}: redis-cli --pipe wrote {count} keys in {:.2}s",
        took.as_secs_f64()
    ));
    tokio::time::sleep(SETTLE).await;
    let after = info_memory(redis.port, section).await?;
    redis.stop().await;
    progress(format!(
        "{section}: redis used_memory {} -> {}, used_memory_rss {} -> {}",
        mib(before.used),
        mib(after.used),
        mib(before.rss),
        mib(after.rss)
    ));
    Ok((before, after))
}

/// kafkv's bytes per key: the RSS of a `kafkv serve` child on a topic of
/// `memory_keys` keys minus that of one on an empty topic, over the keys.
/// The children's data dirs go under `dir`.
async fn measure_kafkv(
    kafkv: &Path,
    brokers: &str,
    run_id: u32,
    config: &BenchConfig,
    dir: &Path,
) -> Result<f64> {
    let keys = config.memory_keys;

    progress("memory: kafkv serve child on an empty topic");
    let empty = serve_and_measure(
        kafkv,
        brokers,
        &format!("bench-memory-empty-{run_id}"),
        &dir.join("empty"),
        0,
    )
    .await?;
    progress(format!(
        "memory: empty: ready in {:.2}s, RSS {}",
        empty.ready.as_secs_f64(),
        mib(empty.rss)
    ));

    let topic = format!("bench-memory-{run_id}");
    progress(format!("memory: producing {keys} distinct keys"));
    produce_topic(brokers, &topic, keys, config.value_bytes, "memory", |i| {
        (i, false)
    })
    .await?;
    progress(format!(
        "memory: kafkv serve child on the topic of {keys} keys"
    ));
    let loaded = serve_and_measure(kafkv, brokers, &topic, &dir.join("loaded"), keys).await?;
    progress(format!(
        "memory: loaded: ready in {:.2}s, RSS {}",
        loaded.ready.as_secs_f64(),
        mib(loaded.rss)
    ));
    Ok((loaded.rss as f64 - empty.rss as f64) / keys as f64)
}

/// What one `kafkv serve` child measured.
pub(crate) struct Served {
    pub ready: Duration,
    pub rss: u64,
}

/// Runs `kafkv serve` on `topic` (in `data_dir`, which holds its log too)
/// until ready, checks it applied `records`, reads its RSS and stops it.
pub(crate) async fn serve_and_measure(
    kafkv: &Path,
    brokers: &str,
    topic: &str,
    data_dir: &Path,
    records: usize,
) -> Result<Served> {
    std::fs::create_dir_all(data_dir)?;
    let mut child = ServeProcess::spawn(
        kafkv,
        data_dir,
        [
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--replication-factor",
            "1",
            "--data-dir",
            ".",
        ],
    )?;
    // Generous for a debug build: a minute plus a millisecond per record.
    let timeout = Duration::from_secs(60) + Duration::from_millis(records as u64);
    let ready = child.wait_ready(timeout).await?;
    let readyz: serde_json::Value = reqwest::get(child.url("/readyz"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let applied = readyz["records_applied"].as_u64();
    if applied != Some(records as u64) {
        return Err(Error::Failed(format!(
            "the kafkv serve child on {topic} applied {applied:?} records, not {records}"
        )));
    }
    tokio::time::sleep(SETTLE).await;
    let rss = child.rss_bytes()?;
    let (status, log) = tokio::task::spawn_blocking(move || child.terminate(STOP_GRACE))
        .await
        .expect("terminate does not panic")?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "the kafkv serve child on {topic} exited with {status} after SIGTERM; its log:\n{log}"
        )));
    }
    Ok(Served { ready, rss })
}

/// `used_memory` and `used_memory_rss` from `INFO memory`.
pub(crate) struct RedisMemory {
    pub used: u64,
    pub rss: u64,
}

async fn info_memory(port: u16, section: &'static str) -> Result<RedisMemory> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "INFO", "memory"])
        .output()
        .await
        .map_err(|_| missing("redis-cli", section))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match (
        info_field(&text, "used_memory"),
        info_field(&text, "used_memory_rss"),
    ) {
        (Some(used), Some(rss)) if output.status.success() => Ok(RedisMemory { used, rss }),
        _ => Err(Error::Failed(format!(
            "unexpected INFO memory answer:\n{text}{}",
            String::from_utf8_lossy(&output.stderr)
        ))),
    }
}

/// Sends `SET key-{i:012} <value_bytes bytes> <extra>` for each `i` of
/// `keys` through `redis-cli --pipe` to the Redis protocol on `port`
/// (redis-server's or kafkv's) and checks every one was answered without
/// error (`section` names a missing tool). Returns how long it took.
pub(crate) async fn pipe_sets(
    port: u16,
    keys: impl ExactSizeIterator<Item = usize>,
    value_bytes: usize,
    extra: &[&[u8]],
    section: &'static str,
) -> Result<Duration> {
    let started = Instant::now();
    let count = keys.len();
    let mut cli = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|_| missing("redis-cli", section))?;
    let mut stdin = cli.stdin.take().expect("stdin is piped");
    let value = vec![b'v'; value_bytes];
    let mut buffer = Vec::with_capacity(PIPE_CHUNK + value_bytes + 64);
    for i in keys {
        let key = key_name(i);
        let mut args: Vec<&[u8]> = vec![b"SET", key.as_bytes(), &value];
        args.extend_from_slice(extra);
        append_command(&mut buffer, &args);
        if buffer.len() >= PIPE_CHUNK {
            stdin.write_all(&buffer).await?;
            buffer.clear();
        }
    }
    stdin.write_all(&buffer).await?;
    drop(stdin);
    let output = cli.wait_with_output().await?;
    let text = String::from_utf8_lossy(&output.stdout);
    match pipe_summary(&text) {
        Some((0, replies)) if output.status.success() && replies == count as u64 => {
            Ok(started.elapsed())
        }
        _ => Err(Error::Failed(format!(
            "redis-cli --pipe did not store {count} keys on port {port}:\n{text}{}",
            String::from_utf8_lossy(&output.stderr)
        ))),
    }
}

/// `(errors, replies)` from redis-cli --pipe's last line,
/// `errors: 0, replies: 1000`.
fn pipe_summary(output: &str) -> Option<(u64, u64)> {
    let line = output.lines().rev().find(|l| l.starts_with("errors:"))?;
    let (errors, replies) = line.split_once(',')?;
    let number = |field: &str, name: &str| -> Option<u64> {
        field.trim().strip_prefix(name)?.trim().parse().ok()
    };
    Some((number(errors, "errors:")?, number(replies, "replies:")?))
}

/// A `name:value` number from `INFO` output.
fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (field, value) = line.trim_end().split_once(':')?;
        (field == name).then(|| value.parse().ok())?
    })
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pipe_summary() {
        let output = "All data transferred. Waiting for the last reply...\n\
                      Last reply received from server.\n\
                      errors: 0, replies: 20000\n";
        assert_eq!(pipe_summary(output), Some((0, 20000)));
        assert_eq!(pipe_summary("errors: 3, replies: 7"), Some((3, 7)));
        assert_eq!(pipe_summary("ERR connection refused"), None);
    }

    #[test]
    fn reads_info_memory_fields() {
        let info = "# Memory\r\nused_memory:1056000\r\nused_memory_human:1.01M\r\n\
                    used_memory_rss:7512064\r\nused_memory_rss_human:7.16M\r\n";
        assert_eq!(info_field(info, "used_memory"), Some(1_056_000));
        assert_eq!(info_field(info, "used_memory_rss"), Some(7_512_064));
        assert_eq!(info_field(info, "used_memory_peak"), None);
    }
}
