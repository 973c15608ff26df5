//! What the view learns, from the records it applies, about the other
//! instances and about how far it has read: the sweeper's inputs
//! (`store/sweeper.rs`, docs/expiry.md "Who sweeps, and when").
//!
//! Two clocks, each where it is sound:
//! - **Local instants** for membership ("heard within the last hour"), so a
//!   skewed clock cannot drop an instance from the ranking.
//! - **Log time** (record timestamps: broker append time on a topic that
//!   passed the read-modify-write check) to judge what the other instances
//!   did *as far as this instance has read*. A consumer that lags a bulk
//!   expiry by seconds must not conclude that the instance first in line
//!   did not sweep a key when it simply has not read that far yet.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, AtomicI64, Ordering},
};

use parking_lot::Mutex;

/// An instance heard through records applied here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    pub id: u32,
    /// When this process applied the newest such record (local clock).
    pub applied_at: std::time::Instant,
    /// That record's time in the log (ms since the epoch, broker clock).
    pub record_time: i64,
}

/// Which instances this process has heard sweeping, and writing expiring
/// puts.
#[derive(Debug, Default)]
pub(super) struct Roster {
    /// Named by the SWEEPs applied here (this instance's own included).
    sweepers: Mutex<HashMap<u32, Heard>>,
    /// Named by the expiring puts applied here (`kafkv.ttl`'s `<writer>`):
    /// instances that will sweep, known before they have swept anything,
    /// so a bulk expiry's first sweeps are already shared out.
    writers: Mutex<HashMap<u32, Heard>>,
}

impl Roster {
    /// Notes one applied batch's sweepers and writers, as `(id, record
    /// time)` in log order.
    pub fn note(&self, sweepers: &[(u32, i64)], writers: &[(u32, i64)]) {
        let applied_at = std::time::Instant::now();
        for (heard, ids) in [(&self.sweepers, sweepers), (&self.writers, writers)] {
            if ids.is_empty() {
                continue;
            }
            let mut heard = heard.lock();
            for &(id, record_time) in ids {
                let entry = heard.entry(id).or_insert(Heard {
                    id,
                    applied_at,
                    record_time,
                });
                entry.applied_at = applied_at;
                entry.record_time = entry.record_time.max(record_time);
            }
        }
    }

    pub fn sweepers(&self) -> Vec<Heard> {
        self.sweepers.lock().values().copied().collect()
    }

    pub fn writers(&self) -> Vec<Heard> {
        self.writers.lock().values().copied().collect()
    }
}

/// How far this process has read each partition, in log time.
#[derive(Debug)]
pub(super) struct LogClock {
    /// The newest record time applied, per partition.
    newest: Vec<AtomicI64>,
    /// Whether the last batch left the partition at its end.
    at_end: Vec<AtomicBool>,
}

impl LogClock {
    pub fn new(partitions: usize) -> Self {
        Self {
            newest: (0..partitions).map(|_| AtomicI64::new(0)).collect(),
            at_end: (0..partitions).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// After a batch: `newest[p]`, the newest record time the batch held
    /// for `p`; `at_end[p]`, whether it left `p` at its end.
    pub fn advance(&self, newest: &[Option<i64>], at_end: &[Option<bool>]) {
        for (slot, time) in self.newest.iter().zip(newest) {
            if let Some(time) = time {
                slot.fetch_max(*time, Ordering::Relaxed);
            }
        }
        for (slot, end) in self.at_end.iter().zip(at_end) {
            if let Some(end) = end {
                slot.store(*end, Ordering::Relaxed);
            }
        }
    }

    /// The log time up to which this process has applied every record of
    /// `partition`: `now_ms` while it is at the partition's end (the
    /// consumer's long-polling fetch brings a new record within
    /// milliseconds), else the newest record time it applied there.
    pub fn read_until(&self, partition: i32, now_ms: i64) -> i64 {
        let p = partition as usize;
        match (self.at_end.get(p), self.newest.get(p)) {
            (Some(at_end), _) if at_end.load(Ordering::Relaxed) => now_ms,
            (_, Some(newest)) => newest.load(Ordering::Relaxed),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_read_to_now_at_its_end_else_to_its_newest_record() {
        let clock = LogClock::new(2);
        assert_eq!(clock.read_until(0, 5_000), 0, "nothing read yet");
        clock.advance(&[Some(1_000), None], &[Some(false), Some(true)]);
        assert_eq!(clock.read_until(0, 5_000), 1_000);
        assert_eq!(clock.read_until(1, 5_000), 5_000, "at its end");
        // An older record time (an instance's clock is not the broker's
        // order) never moves the clock back.
        clock.advance(&[Some(900), Some(4_000)], &[None, Some(false)]);
        assert_eq!(clock.read_until(0, 5_000), 1_000);
        assert_eq!(clock.read_until(1, 5_000), 4_000, "records since the end");
        clock.advance(&[None, None], &[Some(true), None]);
        assert_eq!(clock.read_until(0, 6_000), 6_000);
        assert_eq!(clock.read_until(7, 6_000), 0, "no such partition");
    }

    #[test]
    fn the_roster_keeps_each_instances_newest_record_time() {
        let roster = Roster::default();
        roster.note(&[(1, 100), (2, 150), (1, 120)], &[(3, 90)]);
        roster.note(&[(2, 140)], &[]);
        let mut sweepers: Vec<(u32, i64)> = roster
            .sweepers()
            .iter()
            .map(|heard| (heard.id, heard.record_time))
            .collect();
        sweepers.sort_unstable();
        assert_eq!(sweepers, [(1, 120), (2, 150)]);
        assert_eq!(roster.writers()[0].id, 3);
    }
}
