//! The sweeper: removes expired keys from the topic (docs/expiry.md, "Who
//! sweeps, and when"). Reads already hide a key the moment it expires; the
//! sweeper writes the SWEEP tombstone that takes it out of the log, so
//! compaction can drop its records and every instance's table lets it go.
//!
//! Every ready instance sweeps, without knowing about the others: a key is
//! due here a delay after its expiry, drawn per key and per instance from a
//! quarter to three quarters of `--expiry-sweep-within`, and the first SWEEP
//! applied makes the key absent everywhere, so the others find nothing left
//! to sweep. Two instances sweep the same key only when their delays fall
//! within the time a record takes to reach the others (a few percent of
//! keys with several instances); a duplicate costs a record, never data: a
//! SWEEP deletes only what expired (`state/hazards.rs`).
//!
//! Only settled keys are swept (unsettled ones are the repairer's), and
//! only while this instance is ready and the topic passed the timing check
//! read-modify-write needs: a SWEEP that loses to a rewrite is a hazard
//! that only the repair protocol makes safe.

use std::{
    collections::HashMap,
    hash::Hasher,
    sync::{Weak, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, stream::FuturesUnordered};
use tokio::time::Instant;
use tracing::warn;

use super::Shared;
use crate::{record::Outgoing, state::now_ms};

/// Default [`crate::StoreConfig::expiry_sweep_within`].
pub const DEFAULT_SWEEP_WITHIN: Duration = Duration::from_secs(1);

/// Default [`crate::StoreConfig::expiry_sweep_rate`]: SWEEPs per second
/// one instance writes at most. A bulk expiry (a million keys due in one
/// second) is spread over many seconds instead of flooding the producer
/// and the readers' apply loop; well above what the embedded broker
/// produces on two cores, so it bounds bursts, not steady sweeping.
pub const DEFAULT_SWEEP_RATE: u32 = 50_000;

/// How often the sweeper looks for due keys.
const TICK: Duration = Duration::from_millis(20);

/// The most SWEEPs in flight at once: held records go out together.
const MAX_IN_FLIGHT: usize = 4096;

/// Runs until the store is dropped or closed.
pub(super) async fn run(shared: Weak<Shared>) {
    let Some(within) = shared
        .upgrade()
        .map(|shared| shared.config.expiry_sweep_within)
    else {
        return;
    };
    if within.is_zero() {
        return;
    }
    let rate = shared.upgrade().map_or(DEFAULT_SWEEP_RATE, |shared| {
        shared.config.expiry_sweep_rate.max(1)
    });
    // SWEEPs this tick may write: the rate's share of the time since the
    // last tick, and at most one second's worth saved up while idle.
    let mut budget = Budget::new(rate, Instant::now());
    // A per-instance seed: each instance orders its delays differently.
    let seed = fastrand::u64(..);
    let mut counted_due_at: Option<Instant> = None;
    // Keys swept or being swept, until `retry` lets them be tried again (a
    // SWEEP that lost, or was not written).
    let mut tried: HashMap<Bytes, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        if shared.rmw_refusal.is_some() || !shared.view.is_bootstrapped() {
            continue;
        }
        let now = now_ms();
        let instant = Instant::now();
        budget.refill(instant);
        tried.retain(|_, retry| *retry > instant);
        // The gauge walks the expired entries: once a second is enough.
        if counted_due_at.is_none_or(|at| instant.duration_since(at) >= Duration::from_secs(1)) {
            counted_due_at = Some(instant);
            metrics::gauge!("kafkv_expiry_due_keys").set(shared.view.expiry_counts().1 as f64);
        }
        let earliest = now - (within.as_millis() as i64) / 4;
        let due = match shared.view.due(earliest, None, MAX_IN_FLIGHT + tried.len()) {
            Ok(due) => due,
            Err(error) => {
                warn!(%error, "could not read the keys due to expire");
                continue;
            }
        };
        let mut sends = FuturesUnordered::new();
        for due in due {
            if tried.contains_key(&due.key) || sends.len() >= MAX_IN_FLIGHT {
                continue;
            }
            if budget.available < 1.0 {
                break;
            }
            if due.expires_at + delay(seed, &due.key, within) > now {
                continue;
            }
            let statement = match shared.view.sweep_statement(&due.key, due.partition, now) {
                Ok(Some(statement)) => statement,
                Ok(None) => continue,
                Err(error) => {
                    warn!(%error, "could not read a key to sweep it");
                    continue;
                }
            };
            let (restates, expires_at) = statement;
            tried.insert(due.key.clone(), instant + within / 4);
            budget.available -= 1.0;
            let record = Outgoing::sweep(due.key, restates, expires_at, shared.view.instance_id());
            let writer = &shared.writer;
            sends.push(async move { writer.send_record(record).await });
        }
        while let Some(sent) = sends.next().await {
            match sent {
                Ok(_) => metrics::counter!("kafkv_sweeps_written_total").increment(1),
                Err(error) => warn!(%error, "could not write a SWEEP; retrying"),
            }
        }
    }
}

/// A token bucket: how many SWEEPs the sweeper may write now.
struct Budget {
    per_second: f64,
    available: f64,
    refilled_at: Instant,
}

impl Budget {
    fn new(per_second: u32, now: Instant) -> Self {
        Budget {
            per_second: f64::from(per_second),
            available: f64::from(per_second),
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.refilled_at = now;
        self.available = (self.available + elapsed * self.per_second).min(self.per_second);
    }
}

/// This instance's delay for `key`, in ms: uniform in `[within/4,
/// 3·within/4]`, fixed per key so retries do not redraw it.
fn delay(seed: u64, key: &[u8], within: Duration) -> i64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write_u64(seed);
    hasher.write(key);
    let within = within.as_millis() as u64;
    let spread = (within / 2).max(1);
    (within / 4 + hasher.finish() % spread) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_at_the_rate_and_saves_up_one_second_at_most() {
        let start = Instant::now();
        let mut budget = Budget::new(1000, start);
        assert_eq!(budget.available, 1000.0, "a full second's worth at start");
        budget.available = 0.0;
        budget.refill(start + Duration::from_millis(20));
        assert!((budget.available - 20.0).abs() < 1e-6, "{}", budget.available);
        budget.refill(start + Duration::from_secs(60));
        assert_eq!(budget.available, 1000.0, "idle time saves up one second");
    }

    #[test]
    fn delays_spread_over_the_middle_half_of_the_bound() {
        let within = Duration::from_secs(1);
        let delays: Vec<i64> = (0..1000u32)
            .map(|i| delay(7, &i.to_be_bytes(), within))
            .collect();
        assert!(delays.iter().all(|d| (250..750).contains(d)));
        let early = delays.iter().filter(|d| **d < 500).count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
        // Another instance draws other delays for the same keys.
        let other: Vec<i64> = (0..1000u32)
            .map(|i| delay(8, &i.to_be_bytes(), within))
            .collect();
        assert_ne!(delays, other);
    }
}
