//! `kafkv serve` as a child process, as a user runs it: for tests of the
//! binary itself (signals, data dirs, kill -9) and for measurements that need
//! kafkv in a process of its own (its resident memory, its time to ready).
//!
//! [`ServeProcess::spawn`] starts `kafkv serve --http-listen 127.0.0.1:<free
//! port>` followed by the caller's arguments, in a working directory of the
//! caller's, logging to a file there; [`ServeProcess::wait_ready`] polls `GET
//! /readyz` until it answers 200 and says how long that took from the spawn;
//! [`ServeProcess::rss_bytes`] reads its resident set;
//! [`ServeProcess::terminate`] sends SIGTERM and waits for the graceful
//! shutdown; [`ServeProcess::kill9`] sends SIGKILL. One dropped without
//! either is killed.

use std::{
    ffi::{OsStr, OsString},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

use crate::{
    error::{Error, Result},
    free_port,
    process::{self, failed, signal},
};

/// How often [`ServeProcess::wait_ready`] asks `/readyz`: the resolution of
/// the time it returns.
const READY_POLL: Duration = Duration::from_millis(10);
/// How often [`ServeProcess::terminate`] looks whether the process exited.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// A running `kafkv serve`.
pub struct ServeProcess {
    child: Child,
    pid: u32,
    http: SocketAddr,
    /// Its stdout and stderr: `serve-<http port>.log` in its working directory.
    log: PathBuf,
    /// When the process was spawned: the start of the time to ready.
    spawned: Instant,
    client: reqwest::Client,
}

impl ServeProcess {
    /// Starts `kafkv serve --http-listen 127.0.0.1:<free port> <args>` (the
    /// binary at `kafkv`) in `cwd`. Without `--brokers` in `args`, it starts
    /// its embedded broker (pass `--broker-listen` to keep it off 9092).
    pub fn spawn<S: AsRef<OsStr>>(
        kafkv: &Path,
        cwd: &Path,
        args: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let http = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let log = cwd.join(format!("serve-{}.log", http.port()));
        let mut argv: Vec<OsString> = vec!["serve".into(), "--http-listen".into()];
        argv.push(http.to_string().into());
        argv.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let spawned = Instant::now();
        let child = process::spawn(kafkv, cwd, &argv, &log)?;
        Ok(Self {
            pid: child.id(),
            child,
            http,
            log,
            spawned,
            client: reqwest::Client::new(),
        })
    }

    /// [`spawn`](Self::spawn), then [`wait_ready`](Self::wait_ready).
    pub async fn start<S: AsRef<OsStr>>(
        kafkv: &Path,
        cwd: &Path,
        args: impl IntoIterator<Item = S>,
        timeout: Duration,
    ) -> Result<Self> {
        let mut serve = Self::spawn(kafkv, cwd, args)?;
        serve.wait_ready(timeout).await?;
        Ok(serve)
    }

    /// Polls `GET /readyz` until it answers 200 and returns the time from the
    /// spawn to that answer (to within 10 ms). Fails if the process exits
    /// first, or if it is not ready `timeout` after this call.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        let url = self.url("/readyz");
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(self.failed(format!("exited ({status}) before it was ready")));
            }
            let request = self.client.get(&url).timeout(Duration::from_secs(5));
            let last_answer = match request.send().await {
                Ok(answer) if answer.status().is_success() => return Ok(self.spawned.elapsed()),
                Ok(answer) => {
                    let status = answer.status();
                    format!("{status}: {}", answer.text().await.unwrap_or_default())
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(self.failed(format!(
                    "was not ready within {} (last /readyz: {last_answer})",
                    humantime::format_duration(timeout)
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The address of its HTTP API.
    pub fn http_address(&self) -> SocketAddr {
        self.http
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        process::read_log(&self.log)
    }

    /// Where its log is.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its resident set size (VmRSS in `/proc/<pid>/status`), bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        parse_vm_rss(&status).ok_or_else(|| {
            Error::Io(std::io::Error::other(format!(
                "no VmRSS line in /proc/{}/status",
                self.pid
            )))
        })
    }

    /// Sends SIGTERM and waits up to `grace` for it to exit; returns its exit
    /// status (a failed exit is the caller's to judge) and its log. Fails if
    /// it had exited already, or did not exit within `grace` (it is then
    /// killed). Blocks the calling thread: async callers use `spawn_blocking`.
    pub fn terminate(mut self, grace: Duration) -> Result<(ExitStatus, String)> {
        if let Some(status) = self.child.try_wait()? {
            return Err(self.failed(format!("had already exited ({status})")));
        }
        signal(self.pid, "-TERM")?;
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, self.log()));
            }
            if Instant::now() > deadline {
                process::kill(&mut self.child);
                return Err(self.failed(format!(
                    "did not stop within {} of SIGTERM and was killed",
                    humantime::format_duration(grace)
                )));
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// SIGKILL: no shutdown code runs. Returns its exit status and its log.
    pub fn kill9(mut self) -> Result<(ExitStatus, String)> {
        self.child.kill()?;
        let status = self.child.wait()?;
        Ok((status, self.log()))
    }

    fn failed(&self, what: String) -> Error {
        failed(
            format!("kafkv serve (pid {}, http {})", self.pid, self.http),
            what,
            &self.log,
        )
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        process::kill(&mut self.child);
    }
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
