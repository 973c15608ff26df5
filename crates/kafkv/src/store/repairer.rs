//! The repairer: writes a repair for every key whose newest record is not
//! self-contained (docs/rmw.md, "Who writes repairs"), so that compaction
//! never leaves an operation as a key's only record without its base.
//!
//! The view reports such keys after each batch it applies; the repairer
//! coalesces the reports per key and writes one repair per key when its
//! delay runs out: soon for an operation this instance wrote (the writer's
//! repair), later and with jitter for anyone else's (the backstop, in case
//! their writer died). A key is not repaired again until its last repair
//! has been applied here, and not at all while this instance is not ready.

use std::{
    collections::HashMap,
    sync::{Weak, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::mpsc, time::Instant};
use tracing::warn;

use super::Shared;
use crate::{record::Outgoing, state::RepairHint};

/// How long after this instance's own operation its repair is written: short,
/// yet long enough that a burst of operations on one key shares one repair.
pub const OWN_DELAY: Duration = Duration::from_millis(10);

/// How long any instance waits before repairing someone else's operation;
/// a jitter of up to as much again spreads the instances out.
pub const BACKSTOP_DELAY: Duration = Duration::from_secs(2);

/// After a failed repair, or while this instance is not ready.
const RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Due {
    at: Instant,
    partition: i32,
}

/// Runs until the store is dropped (its hint channel closes) or closed.
pub(super) async fn run(shared: Weak<Shared>, mut hints: mpsc::UnboundedReceiver<RepairHint>) {
    let mut due: HashMap<Bytes, Due> = HashMap::new();
    // Each key's last repair, until this instance has applied it.
    let mut in_flight: HashMap<Bytes, (i32, i64)> = HashMap::new();
    loop {
        let next = due.values().map(|d| d.at).min();
        let hint = tokio::select! {
            hint = hints.recv() => match hint {
                Some(hint) => Some(hint),
                None => return,
            },
            () = sleep_until(next) => None,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        if let Some(hint) = hint {
            schedule(&shared, &mut due, &mut in_flight, hint);
            continue;
        }
        let now = Instant::now();
        let ready: Vec<Bytes> = due
            .iter()
            .filter(|(_, d)| d.at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in ready {
            let Some(Due { partition, .. }) = due.remove(&key) else {
                continue;
            };
            if !shared.view.is_bootstrapped() {
                retry_later(&mut due, key, partition);
                continue;
            }
            let statement = match shared.view.repair_statement(&key, partition) {
                Ok(Some(statement)) => statement,
                Ok(None) => continue,
                Err(error) => {
                    warn!(%error, "could not read a key to repair it; retrying");
                    retry_later(&mut due, key, partition);
                    continue;
                }
            };
            let record = Outgoing::repair(key.clone(), statement.restates, statement.state);
            match shared.writer.send_record(record).await {
                Ok(receipt) => {
                    metrics::counter!("kafkv_repairs_written_total").increment(1);
                    shared
                        .view
                        .acknowledge_repair(receipt.partition, receipt.offset);
                    in_flight.insert(key, (receipt.partition, receipt.offset));
                }
                Err(error) => {
                    warn!(%error, "could not write a repair; retrying");
                    retry_later(&mut due, key, partition);
                }
            }
        }
    }
}

fn retry_later(due: &mut HashMap<Bytes, Due>, key: Bytes, partition: i32) {
    let at = Instant::now() + RETRY_DELAY;
    due.insert(key, Due { at, partition });
}

fn schedule(
    shared: &Shared,
    due: &mut HashMap<Bytes, Due>,
    in_flight: &mut HashMap<Bytes, (i32, i64)>,
    hint: RepairHint,
) {
    if let Some((partition, offset)) = in_flight.get(&hint.key) {
        let applied = shared
            .view
            .progress()
            .positions
            .get(*partition as usize)
            .is_some_and(|position| position > offset);
        if !applied {
            // Its last repair is on its way; the batch that applies it reports
            // the key again if it still needs one.
            return;
        }
        in_flight.remove(&hint.key);
    }
    if !shared.config.repairs {
        return;
    }
    let delay = if hint.own {
        shared.config.repair_delay
    } else {
        let backstop = shared.config.repair_backstop;
        backstop + backstop.mul_f64(fastrand::f64())
    };
    let at = Instant::now() + delay;
    due.entry(hint.key)
        .and_modify(|d| d.at = d.at.min(at))
        .or_insert(Due {
            at,
            partition: hint.partition,
        });
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
