//! What both process kinds share: spawning `kafkv <subcommand>` with its
//! output in a log file, signals, and quoting the end of the log.

use std::{
    ffi::OsStr,
    fs::File,
    path::Path,
    process::{Child, Command, Stdio},
};

use crate::error::{Error, Result};

/// Lines of a process's log an [`Error::Process`] quotes.
const LOG_TAIL_LINES: usize = 40;

/// Starts `kafkv <args>` in `cwd` with `RUST_LOG=info`, its stdout and stderr
/// appended to `log`.
pub(crate) fn spawn<S: AsRef<OsStr>>(
    kafkv: &Path,
    cwd: &Path,
    args: impl IntoIterator<Item = S>,
    log: &Path,
) -> Result<Child> {
    let file = File::options().create(true).append(true).open(log)?;
    Command::new(kafkv)
        .current_dir(cwd)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: kafkv.to_owned(),
            source,
        })
}

/// Sends `signal` (`-TERM`, `-KILL`, `-STOP`, `-CONT`) to `pid` with kill(1).
pub(crate) fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Io(std::io::Error::other(format!(
            "kill {signal} {pid} failed ({status})"
        ))))
    }
}

/// Kills `child` unless it already exited, and reaps it.
pub(crate) fn kill(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The whole log at `path`; empty if it cannot be read.
pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// An [`Error::Process`] about `process`, quoting the end of its log.
pub(crate) fn failed(process: String, what: String, log: &Path) -> Error {
    let text = read_log(log);
    let lines: Vec<&str> = text.lines().collect();
    Error::Process {
        process,
        what,
        path: log.to_owned(),
        log: lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n"),
    }
}
