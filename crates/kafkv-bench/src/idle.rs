//! What the embedded broker costs a `kafkv serve` that is doing nothing, and
//! how soon a write made elsewhere is visible on it — the two figures the
//! embedded broker's fetch behaviour decides.
//!
//! - **Idle CPU.** `kafkv serve` with its embedded broker (the zero-setup
//!   default) as a child process on a fresh data dir, ready and untouched;
//!   its user + system CPU time from `/proc/<pid>/stat` over `--idle-seconds`,
//!   as a percentage of one core.
//! - **Visibility.** A second `kafkv serve --brokers <the first's broker>` on
//!   the same topic. Each sample PUTs a fresh key through the second and
//!   polls `GET` on the first every millisecond until it answers 200: the
//!   time from the PUT's acknowledgement to the first 200, p50 and p99 over
//!   `--visibility-writes` sequential writes.
//!
//! Both children run with their default settings (`--fetch-wait 10ms`). No
//! peer runs beside these rows; the goals (issue 10) are under 2% of a core
//! idle, and 50 ms p50 / 200 ms p99 to visibility.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use kafkv_testkit::{ServeProcess, free_port};

use crate::{
    BenchConfig,
    cpu_time::cpu_seconds,
    error::{Error, Result},
    progress,
    report::{Row, percentile},
    serve_child::READY_TIMEOUT,
};

/// How long a child may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long one write may take to become visible before the run fails.
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The poll interval on the reading instance: the figures' resolution.
const POLL: Duration = Duration::from_millis(1);

pub async fn measure(kafkv: &Path, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("kafkv-bench-idle-{run_id}"));
    std::fs::create_dir_all(&dir)?;
    let measured = measure_in(kafkv, &dir, config).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (idle_percent, visible) = measured?;
    let seconds = config.idle_seconds.as_secs_f64();
    let writes = visible.len();
    let mut rows = vec![Row::without_peer(
        format!("idle kafkv serve, embedded broker: CPU over {seconds:.0}s"),
        "% of a core",
        idle_percent,
    )];
    for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
        rows.push(Row::without_peer(
            format!("write via another instance visible here, {name} ({writes})"),
            "ms",
            percentile(&visible, q),
        ));
    }
    Ok(rows)
}

async fn measure_in(
    kafkv: &Path,
    dir: &Path,
    config: &BenchConfig,
) -> Result<(f64, Vec<Duration>)> {
    let broker = format!("127.0.0.1:{}", free_port()?);
    progress("idle: kafkv serve with its embedded broker");
    let embedded = ServeProcess::start(
        kafkv,
        dir,
        ["--broker-listen", &broker, "--data-dir", "embedded"]
            .into_iter()
            .chain(config.broker_flags()),
        READY_TIMEOUT,
    )
    .await?;
    // Let start-up work (topic creation, the first fetches) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu_seconds(embedded.pid())?;
    let started = Instant::now();
    tokio::time::sleep(config.idle_seconds).await;
    let used = cpu_seconds(embedded.pid())? - before;
    let idle_percent = 100.0 * used / started.elapsed().as_secs_f64();
    progress(format!(
        "idle: {used:.2} CPU-s in {:.1}s ({idle_percent:.1}% of a core)",
        started.elapsed().as_secs_f64()
    ));

    progress(format!(
        "visibility: {} writes through a second instance",
        config.visibility_writes
    ));
    let other = ServeProcess::start(
        kafkv,
        dir,
        ["--brokers", &broker, "--data-dir", "other"],
        READY_TIMEOUT,
    )
    .await?;
    let client = reqwest::Client::new();
    let mut visible = Vec::with_capacity(config.visibility_writes);
    for i in 0..config.visibility_writes {
        let key = format!("visible-{i:06}");
        client
            .put(other.url(&format!("/v1/kv/{key}")))
            .body("v")
            .send()
            .await?
            .error_for_status()?;
        let written = Instant::now();
        let url = embedded.url(&format!("/v1/kv/{key}"));
        loop {
            if client.get(&url).send().await?.status().is_success() {
                visible.push(written.elapsed());
                break;
            }
            if written.elapsed() > VISIBLE_TIMEOUT {
                return Err(Error::Failed(format!(
                    "{key}, written through one instance, was not visible on the other after {}s",
                    VISIBLE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    for child in [other, embedded] {
        tokio::task::spawn_blocking(move || child.terminate(STOP_GRACE))
            .await
            .expect("terminate does not panic")?;
    }
    Ok((idle_percent, visible))
}
