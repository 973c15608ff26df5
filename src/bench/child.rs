//! `kafkv serve` as a child process, for measurements that need kafkv in a
//! process of its own: its resident memory, or its time from start to ready.
//!
//! [`ServeChild::spawn`] starts this executable as `kafkv serve --http-listen
//! 127.0.0.1:<free port>` followed by the caller's arguments (brokers, topic,
//! state options...); [`ServeChild::wait_ready`] polls `GET /readyz` until it
//! answers 200 and says how long that took from the spawn;
//! [`ServeChild::rss_bytes`] reads the child's resident set; and
//! [`ServeChild::stop`] sends SIGTERM, waits for the graceful shutdown and
//! kills the child if it does not come. A child dropped without `stop` is
//! killed, so a failed measurement leaves no process behind.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::error::{Error, Result};

/// Lines of the child's stderr kept to explain a failure.
const LOG_TAIL_LINES: usize = 30;
/// How often [`ServeChild::wait_ready`] asks `/readyz`: the resolution of the
/// time it returns.
const READY_POLL: Duration = Duration::from_millis(10);

/// A running `kafkv serve` child.
pub struct ServeChild {
    child: Child,
    pid: u32,
    http: SocketAddr,
    /// When the process was spawned: the start of the time to ready.
    spawned: Instant,
    /// The child's last stderr lines (its log), drained by a task so the pipe
    /// never fills, and quoted when the child fails.
    log_tail: Arc<Mutex<VecDeque<String>>>,
    /// The task filling `log_tail`; it ends when the child closes stderr.
    log_reader: Option<tokio::task::JoinHandle<()>>,
    client: reqwest::Client,
}

impl ServeChild {
    /// Starts this executable as `kafkv serve --http-listen 127.0.0.1:<free
    /// port> <extra_args>`. Pass at least `--brokers` and `--topic` unless the
    /// child should start its own embedded broker on the default port.
    pub fn spawn(extra_args: &[&str]) -> Result<Self> {
        Self::spawn_program(&std::env::current_exe()?, extra_args)
    }

    /// Like [`spawn`](Self::spawn) with another `kafkv` binary (for example
    /// `env!("CARGO_BIN_EXE_kafkv")` in an integration test).
    pub fn spawn_program(program: &Path, extra_args: &[&str]) -> Result<Self> {
        let http = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let spawned = Instant::now();
        let mut child = Command::new(program)
            .arg("serve")
            .args(["--http-listen", &http.to_string()])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                failure(format!(
                    "cannot start {} serve: {e}",
                    program.to_string_lossy()
                ))
            })?;
        let pid = child
            .id()
            .ok_or_else(|| failure("the kafkv serve child exited at once".into()))?;
        let log_tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL_LINES)));
        let log_reader = child.stderr.take().map(|stderr| {
            let log_tail = log_tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut tail = log_tail.lock();
                    if tail.len() == LOG_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
        });
        Ok(Self {
            child,
            pid,
            http,
            spawned,
            log_tail,
            log_reader,
            client: reqwest::Client::new(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The address of the child's HTTP API.
    pub fn http_address(&self) -> SocketAddr {
        self.http
    }

    /// Polls `GET /readyz` until it answers 200 and returns the time from the
    /// spawn to that answer (to within its 10 ms polling interval). Fails if the child
    /// exits first, or if it is not ready `timeout` after this call.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}/readyz", self.http);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(self
                    .failed(&format!("exited ({status}) before it was ready"))
                    .await);
            }
            let last_answer = match self
                .client
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(answer) if answer.status().is_success() => return Ok(self.spawned.elapsed()),
                Ok(answer) => {
                    let status = answer.status();
                    format!("{status}: {}", answer.text().await.unwrap_or_default())
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(self
                    .failed(&format!(
                        "was not ready within {} (last /readyz: {last_answer})",
                        humantime::format_duration(timeout)
                    ))
                    .await);
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The child's resident set size (VmRSS in `/proc/<pid>/status`), bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        parse_vm_rss(&status)
            .ok_or_else(|| failure(format!("no VmRSS line in /proc/{}/status", self.pid)))
    }

    /// Sends SIGTERM and waits up to `grace` for a clean exit; after that the
    /// child is killed. Fails if the child had already exited, exits with an
    /// error, or had to be killed.
    pub async fn stop(mut self, grace: Duration) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            return Err(self.failed(&format!("had already exited ({status})")).await);
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await?;
        if !sent.success() {
            return Err(self.failed("could not be sent SIGTERM").await);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if status.success() {
                    Ok(())
                } else {
                    Err(self
                        .failed(&format!("exited with {status} after SIGTERM"))
                        .await)
                }
            }
            Err(_) => {
                let _ = self.child.kill().await;
                Err(self
                    .failed(&format!(
                        "did not stop within {} of SIGTERM and was killed",
                        humantime::format_duration(grace)
                    ))
                    .await)
            }
        }
    }

    /// An error about the child, quoting the end of its log (all of it, if
    /// the child has exited).
    async fn failed(&mut self, what: &str) -> Error {
        if matches!(self.child.try_wait(), Ok(Some(_)))
            && let Some(reader) = self.log_reader.take()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        let tail = self.log_tail.lock();
        let log: Vec<&str> = tail.iter().map(String::as_str).collect();
        failure(format!(
            "kafkv serve child (pid {}, http {}) {what}; its last log lines:\n{}",
            self.pid,
            self.http,
            log.join("\n")
        ))
    }
}

fn failure(text: String) -> Error {
    Error::Io(std::io::Error::other(text))
}

/// Reads `VmRSS:   123456 kB` from a `/proc/<pid>/status` text, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let amount: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(amount * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_from_proc_status() {
        let status = "Name:\tkafkv\nVmPeak:\t  900000 kB\nVmHWM:\t   50000 kB\nVmRSS:\t   41236 kB\nRssAnon:\t   30000 kB\n";
        assert_eq!(parse_vm_rss(status), Some(41236 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkafkv\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn reads_this_process_rss() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(parse_vm_rss(&status).unwrap() > 0);
    }
}
