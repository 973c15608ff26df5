//! How far the view has applied the log: per-partition positions, the
//! start-up read (bootstrap) and its targets, and waiting for either.
//!
//! The positions here are published *after* the records below them are
//! readable, so a waiter that sees a position can read everything below it.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use tokio::sync::watch;

/// The target of a partition whose consumer skipped offsets, until the end
/// offset is known (docs/rmw.md, the ready rule).
pub const AWAITING_TARGET: i64 = i64::MAX;

/// Progress of the start-up read, for readiness and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// End offsets captured at start; the view is ready once every partition reached its own.
    pub targets: Vec<i64>,
    /// Partitions that reached their target (or reported end-of-partition).
    pub reached: Vec<bool>,
}

impl Bootstrap {
    pub fn is_done(&self) -> bool {
        self.reached.iter().all(|r| *r)
    }
}

/// Counters the view publishes after each batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The next offset to apply, per partition.
    pub positions: Vec<i64>,
    /// Records applied by this process (not those a disk checkpoint already held).
    pub records_applied: u64,
    pub bootstrap: Bootstrap,
}

/// Publishes [`Progress`] and lets tasks wait on it.
#[derive(Debug)]
pub(super) struct Tracker {
    progress: watch::Sender<Progress>,
    closed: AtomicBool,
    /// Mirrors `progress.bootstrap.is_done()` for the read path, which checks
    /// it on every request and must not clone the progress to do so.
    bootstrapped: AtomicBool,
}

impl Tracker {
    /// Starting at `positions`, with the bootstrap ending at `targets`.
    pub fn new(positions: Vec<i64>, targets: Vec<i64>) -> Self {
        let reached: Vec<bool> = targets
            .iter()
            .zip(&positions)
            .map(|(end, position)| position >= end)
            .collect();
        let bootstrapped = AtomicBool::new(reached.iter().all(|r| *r));
        let (progress, _) = watch::channel(Progress {
            positions,
            records_applied: 0,
            bootstrap: Bootstrap { targets, reached },
        });
        Self {
            progress,
            closed: AtomicBool::new(false),
            bootstrapped,
        }
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    /// Publishes `positions` after `applied` more records; `ends` are the
    /// partitions the consumer found at their end.
    pub fn advance(&self, positions: Vec<i64>, applied: u64, ends: &[i32]) {
        self.progress.send_modify(|progress| {
            progress.records_applied += applied;
            let bootstrap = &mut progress.bootstrap;
            for (p, position) in positions.iter().enumerate() {
                if *position >= bootstrap.targets[p] {
                    bootstrap.reached[p] = true;
                }
            }
            // Reaching the end also covers a target that offsets never land on
            // exactly: transaction markers at the tail are not delivered. Not
            // for a partition awaiting its new target after a gap.
            for p in ends {
                if bootstrap.targets.get(*p as usize) == Some(&AWAITING_TARGET) {
                    continue;
                }
                if let Some(reached) = bootstrap.reached.get_mut(*p as usize) {
                    *reached = true;
                }
            }
            progress.positions = positions;
            if progress.bootstrap.is_done() {
                self.bootstrapped.store(true, Ordering::Release);
            }
        });
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Whether each partition reached its target.
    pub fn reached(&self) -> Vec<bool> {
        self.progress.borrow().bootstrap.reached.clone()
    }

    /// The consumer skipped offsets of `partition`: not ready until it
    /// reaches the target [`Tracker::retarget`] sets next.
    pub fn await_target(&self, partition: i32) {
        self.progress.send_modify(|progress| {
            let p = partition as usize;
            if p < progress.bootstrap.targets.len() {
                progress.bootstrap.targets[p] = AWAITING_TARGET;
                progress.bootstrap.reached[p] = false;
                self.bootstrapped.store(false, Ordering::Release);
            }
        });
    }

    /// Sets `partition`'s target to the end offset `end` learnt after a gap;
    /// `true` if the partition has reached it already.
    pub fn retarget(&self, partition: i32, end: i64) -> bool {
        let mut reached = false;
        self.progress.send_modify(|progress| {
            let p = partition as usize;
            if p >= progress.bootstrap.targets.len() {
                return;
            }
            let target = &mut progress.bootstrap.targets[p];
            *target = if *target == AWAITING_TARGET {
                end
            } else {
                (*target).max(end)
            };
            reached = progress.positions[p] >= *target;
            progress.bootstrap.reached[p] = reached;
            if progress.bootstrap.is_done() {
                self.bootstrapped.store(true, Ordering::Release);
            }
        });
        reached
    }

    /// Waits until every partition's position reached `targets[p]` (every
    /// record below it is applied), or `timeout` passes. `false` on timeout
    /// or when closed.
    pub async fn wait_for_positions(&self, targets: &[i64], timeout: Duration) -> bool {
        let caught_up = |p: &Progress| {
            targets
                .iter()
                .zip(&p.positions)
                .all(|(target, position)| position >= target)
        };
        tokio::time::timeout(timeout, self.wait_until(caught_up))
            .await
            .unwrap_or(false)
    }

    /// Waits until the start-up read finished; `false` when closed first.
    pub async fn wait_bootstrapped(&self) -> bool {
        self.wait_until(|p| p.bootstrap.is_done()).await
    }

    async fn wait_until(&self, done: impl Fn(&Progress) -> bool) -> bool {
        let mut rx = self.progress.subscribe();
        loop {
            if done(&rx.borrow_and_update()) {
                return true;
            }
            if self.closed.load(Ordering::Acquire) || rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Wakes every waiter; they return `false`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.progress.send_modify(|_| {});
    }
}
