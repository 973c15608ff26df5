//! Per-command and per-error counters for `INFO commandstats` and `INFO
//! errorstats`, shared by every connection.
//!
//! Commands are counted under their row of the command table (an alias under
//! its own name); the counters are atomics in one slice indexed by that row,
//! so counting a call takes no lock. Errors are rare and counted by their
//! prefix (`ERR`, `NOAUTH`, ...) under a lock.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use parking_lot::Mutex;

use super::frame::Frame;

/// One command's counters, as Redis reports them.
#[derive(Default)]
struct Counters {
    /// Runs, failed or not.
    calls: AtomicU64,
    /// Time until the reply, in microseconds (for a write: until Kafka
    /// acknowledged it).
    usec: AtomicU64,
    /// Refused before running: malformed, before `AUTH`, in subscribe mode.
    rejected: AtomicU64,
    /// Ran and answered an error.
    failed: AtomicU64,
}

pub struct Stats {
    names: Vec<&'static str>,
    commands: Box<[Counters]>,
    errors: Mutex<BTreeMap<String, u64>>,
    error_replies: AtomicU64,
}

impl Stats {
    /// Counters for each of `names` (the command table's, in its order).
    pub fn new(names: Vec<&'static str>) -> Self {
        let commands = names.iter().map(|_| Counters::default()).collect();
        Self {
            names,
            commands,
            errors: Mutex::default(),
            error_replies: AtomicU64::new(0),
        }
    }

    fn counters(&self, name: &str) -> Option<&Counters> {
        let row = self.names.binary_search(&name).ok()?;
        Some(&self.commands[row])
    }

    /// A run of `name` that took `took` and answered `reply`.
    pub fn called(&self, name: &str, took: Duration, reply: &Frame) {
        if let Some(counters) = self.counters(name) {
            counters.calls.fetch_add(1, Ordering::Relaxed);
            counters
                .usec
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
            if matches!(reply, Frame::Error(_)) {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `name` was refused before it ran.
    pub fn rejected(&self, name: &str) {
        if let Some(counters) = self.counters(name) {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts `reply` if it is an error, under its first word.
    pub fn replied(&self, reply: &Frame) {
        if let Frame::Error(text) = reply {
            self.error_replies.fetch_add(1, Ordering::Relaxed);
            let prefix = text.split(' ').next().unwrap_or_default();
            *self.errors.lock().entry(prefix.to_owned()).or_default() += 1;
        }
    }

    /// Error replies sent since start (`INFO stats`).
    pub fn error_replies(&self) -> u64 {
        self.error_replies.load(Ordering::Relaxed)
    }

    /// The `INFO commandstats` lines of commands run or refused at least once.
    pub fn write_commands(&self, text: &mut String) {
        for (name, counters) in self.names.iter().zip(self.commands.iter()) {
            let calls = counters.calls.load(Ordering::Relaxed);
            let rejected = counters.rejected.load(Ordering::Relaxed);
            if calls == 0 && rejected == 0 {
                continue;
            }
            let usec = counters.usec.load(Ordering::Relaxed);
            let per_call = if calls == 0 {
                0.0
            } else {
                usec as f64 / calls as f64
            };
            let _ = write!(
                text,
                "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
                 rejected_calls={rejected},failed_calls={}\r\n",
                counters.failed.load(Ordering::Relaxed),
            );
        }
    }

    /// The `INFO errorstats` lines.
    pub fn write_errors(&self, text: &mut String) {
        for (prefix, count) in self.errors.lock().iter() {
            let _ = write!(text, "errorstat_{prefix}:count={count}\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_failures_rejections_and_errors() {
        let stats = Stats::new(vec!["get", "set"]);
        stats.called("get", Duration::from_micros(10), &Frame::Null);
        stats.called("get", Duration::from_micros(30), &Frame::error("ERR no"));
        stats.rejected("set");
        stats.called("nosuch", Duration::from_micros(5), &Frame::Null);
        for reply in [
            Frame::error("ERR no"),
            Frame::error("NOAUTH x"),
            Frame::ok(),
        ] {
            stats.replied(&reply);
        }
        let mut text = String::new();
        stats.write_commands(&mut text);
        assert_eq!(
            text,
            "cmdstat_get:calls=2,usec=40,usec_per_call=20.00,rejected_calls=0,failed_calls=1\r\n\
             cmdstat_set:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n"
        );
        let mut text = String::new();
        stats.write_errors(&mut text);
        assert_eq!(
            text,
            "errorstat_ERR:count=1\r\nerrorstat_NOAUTH:count=1\r\n"
        );
        assert_eq!(stats.error_replies(), 2);
    }
}
