//! `kafkv broker` as a child process: the embedded broker on a free
//! loopback port with a data dir of its own, the way the tests and the bench
//! get a real Kafka-protocol broker without Docker.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use crate::{
    error::{Error, Result},
    free_port,
    process::{self, failed, signal},
};

/// Attempts at a free port before giving up: another process can take the
/// probed port before the broker binds it.
const PORT_ATTEMPTS: usize = 5;
/// How long a (re)started broker may take to accept connections.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `kafkv broker`, killed (resumed first if paused) when dropped.
pub struct BrokerProcess {
    kafkv: PathBuf,
    child: Option<Child>,
    /// The port it listens on, kept across restarts.
    pub port: u16,
    /// Holds `data/` (the SQLite database) and `broker.log`; removed on drop.
    pub dir: tempfile::TempDir,
    /// How often it compacts.
    maintenance: Duration,
    /// More `kafkv broker` flags.
    extra_args: Vec<String>,
}

impl BrokerProcess {
    /// Starts `kafkv broker` (the binary at `kafkv`) on a free loopback port,
    /// compacting every `maintenance`, and waits until it accepts connections.
    pub async fn start(kafkv: &Path, maintenance: Duration) -> Result<Self> {
        Self::start_with_args(kafkv, maintenance, &[]).await
    }

    /// [`start`](Self::start), with more `kafkv broker` flags.
    pub async fn start_with_args(
        kafkv: &Path,
        maintenance: Duration,
        extra_args: &[&str],
    ) -> Result<Self> {
        let mut broker = BrokerProcess {
            kafkv: kafkv.to_owned(),
            child: None,
            port: 0,
            dir: tempfile::tempdir()?,
            maintenance,
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        for _ in 0..PORT_ATTEMPTS {
            broker.port = free_port()?;
            broker.spawn()?;
            if broker.wait_listening().await {
                return Ok(broker);
            }
            broker.kill();
        }
        Err(broker.failed("did not start"))
    }

    fn spawn(&mut self) -> Result<()> {
        let (address, data) = (self.address(), self.dir.path().join("data"));
        let maintenance = format!("{}ms", self.maintenance.as_millis());
        let args: Vec<&std::ffi::OsStr> = [
            "broker".as_ref(),
            "--listen".as_ref(),
            address.as_ref(),
            "--data-dir".as_ref(),
            data.as_ref(),
            "--maintenance-interval".as_ref(),
            maintenance.as_ref(),
        ]
        .into_iter()
        .chain(self.extra_args.iter().map(|arg| arg.as_ref()))
        .collect();
        self.child = Some(process::spawn(
            &self.kafkv,
            self.dir.path(),
            args,
            &self.log_path(),
        )?);
        Ok(())
    }

    /// The broker binds only once its schema and key index exist, so a
    /// successful connect means it is ready. False if it exits or times out.
    async fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            if tokio::net::TcpStream::connect(self.address()).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id; `None` after [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// Everything the broker logged, over all its restarts.
    pub fn log(&self) -> String {
        process::read_log(&self.log_path())
    }

    /// SIGKILL: the broker vanishes mid-whatever.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// Kills the broker and starts it again on the same port and data.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()?;
        if self.wait_listening().await {
            Ok(())
        } else {
            Err(self.failed("did not come back after a restart"))
        }
    }

    /// SIGSTOP: connections stay open, nothing is answered.
    pub fn pause(&self) -> Result<()> {
        signal(self.running()?, "-STOP")
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) -> Result<()> {
        signal(self.running()?, "-CONT")
    }

    fn running(&self) -> Result<u32> {
        self.pid()
            .ok_or_else(|| self.failed("is not running (killed earlier)"))
    }

    fn failed(&self, what: &str) -> Error {
        failed(
            format!("kafkv broker (port {})", self.port),
            what.to_owned(),
            &self.log_path(),
        )
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A paused broker must be resumed to die cleanly.
            let _ = signal(pid, "-CONT");
        }
        self.kill();
    }
}
