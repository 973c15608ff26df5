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
//!
//! Order: a key whose newest hazardous record is a multi-key batch recorded
//! under another key is repaired after every due repair of its partition's
//! other keys, the batch's own key among them (pulled forward if it was not
//! due yet), so the record key's repair has the lower offset. Kafka removes
//! a key's repair tombstone by that key alone, and the batch only once a
//! newer record of its own key is cleanable; in that order the batch goes
//! first (docs/rmw.md, "Limits").

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

/// A burst of this instance's own operations on one key puts the key's
/// repair off while it lasts: the repair is written the own delay after the
/// last operation, but no later than this many own delays after the first
/// (50 ms by default). At one client sending INCRs to one key the repair
/// came every 10 to 12 ms, each a produce of its own that the broker commits
/// and fsyncs; now one comes every 50 ms (bench `rmw`: records per INCR
/// 1.005 → 1.002; INCR's p50 beside SET's did not move).
const OWN_BURST_LIMIT: u32 = 5;

/// How long any instance waits before repairing someone else's operation;
/// a jitter of up to as much again spreads the instances out.
pub const BACKSTOP_DELAY: Duration = Duration::from_secs(2);

/// After a failed repair, or while this instance is not ready.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// How long the repairer lets hints gather after taking one, at most (and
/// at most half the own delay, so the writer's repair stays near its time).
/// The view sends a hint for every hazardous key of every batch it applies:
/// at one client that is one per INCR, and waking this task for each one
/// cost the tokio workers 25 µs of CPU per INCR. Hints sent while it pauses
/// wake nothing; it takes them all afterwards, in order.
const HINT_PAUSE: Duration = Duration::from_millis(5);

#[derive(Debug)]
struct Due {
    at: Instant,
    partition: i32,
    after_record_key: bool,
    /// When the first of this instance's own operations that this repair
    /// covers was reported; `None` if only others' were (the backstop).
    own_since: Option<Instant>,
}

impl Due {
    /// When a key reported at `now` is repaired: the report's `delay` from
    /// now, or, for a key already scheduled, the sooner of the two; except
    /// that an own report on a key scheduled for an own operation puts the
    /// repair off to `delay` after it, up to `limit` after the first.
    fn next(
        scheduled: Option<&Due>,
        own: bool,
        now: Instant,
        delay: Duration,
        limit: Duration,
    ) -> (Instant, Option<Instant>) {
        let at = now + delay;
        match scheduled {
            None => (at, own.then_some(now)),
            Some(Due {
                own_since: Some(first),
                ..
            }) if own => (at.min(*first + limit), Some(*first)),
            Some(due) => (due.at.min(at), due.own_since.or(own.then_some(now))),
        }
    }
}

/// Runs until the store is dropped (its hint channel closes) or closed.
pub(super) async fn run(shared: Weak<Shared>, mut hints: mpsc::UnboundedReceiver<RepairHint>) {
    let mut due: HashMap<Bytes, Due> = HashMap::new();
    // Each key's last repair, until this instance has applied it.
    let mut in_flight: HashMap<Bytes, (i32, i64)> = HashMap::new();
    // Hints for keys whose last repair was not yet applied when they came.
    // The batch that applies the repair reports its key again if it still
    // needs one; these cover a repair this instance never applies (skipped
    // in a compaction gap), since the view reports only the keys a batch
    // touches.
    let mut parked = Parked::default();
    loop {
        let next = due.values().map(|d| d.at).chain(parked.recheck_at).min();
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
            schedule(&shared, &mut due, &mut in_flight, &mut parked, hint);
            while let Ok(hint) = hints.try_recv() {
                schedule(&shared, &mut due, &mut in_flight, &mut parked, hint);
            }
            let pause = HINT_PAUSE.min(shared.config.repair_delay / 2);
            // Not holding the store while paused: it may be dropped meanwhile.
            drop(shared);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            continue;
        }
        for hint in parked.take_due(Instant::now()) {
            schedule(&shared, &mut due, &mut in_flight, &mut parked, hint);
        }
        for key in ready(&due, Instant::now()) {
            let Some(Due {
                partition,
                after_record_key,
                ..
            }) = due.remove(&key)
            else {
                continue;
            };
            if !shared.view.is_bootstrapped() {
                retry_later(&mut due, key, partition, after_record_key);
                continue;
            }
            let statement = match shared.view.repair_statement(&key, partition) {
                Ok(Some(statement)) => statement,
                Ok(None) => continue,
                Err(error) => {
                    warn!(%error, "could not read a key to repair it; retrying");
                    retry_later(&mut due, key, partition, after_record_key);
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
                    retry_later(&mut due, key, partition, after_record_key);
                }
            }
        }
    }
}

/// The keys to repair now, in the order to write them: those due, plus,
/// in a partition where a key repaired after a batch's record key is due,
/// every other key scheduled there; keys repaired after a record key last.
fn ready(due: &HashMap<Bytes, Due>, now: Instant) -> Vec<Bytes> {
    let waiting_partitions: Vec<i32> = due
        .values()
        .filter(|d| d.at <= now && d.after_record_key)
        .map(|d| d.partition)
        .collect();
    let mut ready: Vec<(&Bytes, &Due)> = due
        .iter()
        .filter(|(_, d)| {
            d.at <= now || (!d.after_record_key && waiting_partitions.contains(&d.partition))
        })
        .collect();
    ready.sort_by_key(|(_, d)| d.after_record_key);
    ready.into_iter().map(|(key, _)| key.clone()).collect()
}

/// Hints set aside while their key's last repair was on its way, looked at
/// again [`RETRY_DELAY`] after the first of them.
#[derive(Default)]
struct Parked {
    hints: HashMap<Bytes, RepairHint>,
    recheck_at: Option<Instant>,
}

impl Parked {
    fn park(&mut self, hint: RepairHint) {
        self.recheck_at
            .get_or_insert_with(|| Instant::now() + RETRY_DELAY);
        self.hints.insert(hint.key.clone(), hint);
    }

    /// Every parked hint, once the recheck is due.
    fn take_due(&mut self, now: Instant) -> Vec<RepairHint> {
        if self.recheck_at.is_none_or(|at| at > now) {
            return Vec::new();
        }
        self.recheck_at = None;
        self.hints.drain().map(|(_, hint)| hint).collect()
    }
}

fn retry_later(due: &mut HashMap<Bytes, Due>, key: Bytes, partition: i32, after_record_key: bool) {
    let at = Instant::now() + RETRY_DELAY;
    due.insert(
        key,
        Due {
            at,
            partition,
            after_record_key,
            own_since: None,
        },
    );
}

fn schedule(
    shared: &Shared,
    due: &mut HashMap<Bytes, Due>,
    in_flight: &mut HashMap<Bytes, (i32, i64)>,
    parked: &mut Parked,
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
            // the key again if it still needs one, and the parked hint is
            // looked at again once the position has passed it either way.
            parked.park(hint);
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
    let limit = shared.config.repair_delay * OWN_BURST_LIMIT;
    let (at, own_since) = Due::next(due.get(&hint.key), hint.own, Instant::now(), delay, limit);
    due.insert(
        hint.key,
        Due {
            at,
            partition: hint.partition,
            after_record_key: hint.after_record_key,
            own_since,
        },
    );
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(at: Instant, partition: i32, after_record_key: bool) -> Due {
        Due {
            at,
            partition,
            after_record_key,
            own_since: None,
        }
    }

    fn hint(key: &'static str) -> RepairHint {
        RepairHint {
            key: Bytes::from_static(key.as_bytes()),
            partition: 0,
            own: true,
            after_record_key: false,
        }
    }

    /// A hint set aside while its key's repair was on its way comes back
    /// once, after the retry delay, whatever else arrives meanwhile: the
    /// view reports a key only when a batch touches it, so a repair that is
    /// never applied (skipped in a compaction gap) must not lose the key.
    #[test]
    fn parked_hints_come_back_once_after_the_retry_delay() {
        let mut parked = Parked::default();
        let start = Instant::now();
        parked.park(hint("a"));
        parked.park(hint("b"));
        parked.park(hint("a"));
        assert!(parked.take_due(start).is_empty(), "not yet");
        let due_at = parked.recheck_at.expect("a recheck");
        assert!(due_at >= start + RETRY_DELAY);
        let mut keys: Vec<Bytes> = parked.take_due(due_at).into_iter().map(|h| h.key).collect();
        keys.sort();
        assert_eq!(keys, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert!(parked.take_due(due_at + RETRY_DELAY).is_empty(), "once");
        assert_eq!(parked.recheck_at, None);
    }

    /// This instance's own operations on a key in a burst share one repair,
    /// written the own delay after the last of them and no later than the
    /// limit after the first; someone else's (the backstop) never puts a
    /// repair off, and an own one brings a backstop's forward.
    #[test]
    fn own_operations_in_a_burst_put_their_repair_off_up_to_the_limit() {
        let (delay, limit) = (Duration::from_millis(10), Duration::from_millis(50));
        let ms = |n: u64| Duration::from_millis(n);
        let t0 = Instant::now();
        let scheduled = |(at, own_since)| Due {
            at,
            partition: 0,
            after_record_key: false,
            own_since,
        };
        let first = Due::next(None, true, t0, delay, limit);
        assert_eq!(first, (t0 + ms(10), Some(t0)));
        // Every 4 ms another: each puts it off to 10 ms after itself...
        let mut now = t0;
        let mut due = scheduled(first);
        for _ in 0..9 {
            now += ms(4);
            due = scheduled(Due::next(Some(&due), true, now, delay, limit));
        }
        // ... (the last one came at 36 ms) but not past 50 ms after the first.
        assert_eq!(due.at, t0 + ms(46));
        now += ms(8);
        let capped = Due::next(Some(&due), true, now, delay, limit);
        assert_eq!(capped, (t0 + ms(50), Some(t0)));

        // The backstop (2 s) leaves an own repair where it is...
        let backstop = ms(2_000);
        let own = scheduled(Due::next(None, true, t0, delay, limit));
        assert_eq!(
            Due::next(Some(&own), false, t0 + ms(5), backstop, limit),
            (t0 + ms(10), Some(t0))
        );
        // ... and an own report brings a backstop repair forward, starting
        // a burst of its own.
        let others = scheduled(Due::next(None, false, t0, backstop, limit));
        assert_eq!(others.own_since, None);
        assert_eq!(
            Due::next(Some(&others), true, t0 + ms(100), delay, limit),
            (t0 + ms(110), Some(t0 + ms(100)))
        );
        // A backstop report on a backstop repair: the sooner one.
        assert_eq!(
            Due::next(Some(&others), false, t0 + ms(1), ms(500), limit),
            (t0 + ms(501), None)
        );
    }

    #[test]
    fn a_batch_record_keys_repair_is_written_before_its_other_keys() {
        let now = Instant::now();
        let later = now + Duration::from_millis(5);
        let key = |k: &str| Bytes::copy_from_slice(k.as_bytes());
        // The batch's other key fell due a moment before its record key.
        let mut scheduled = HashMap::from([
            (key("other"), due(now, 0, true)),
            (key("anchor"), due(later, 0, false)),
            // Not due, and in another partition: stays scheduled.
            (key("elsewhere"), due(later, 1, false)),
        ]);
        assert_eq!(ready(&scheduled, now), [key("anchor"), key("other")]);

        // Nothing repaired after a record key is due: only what is due goes.
        scheduled.remove(&key("other"));
        assert_eq!(ready(&scheduled, now), Vec::<Bytes>::new());
        let mut both = ready(&scheduled, later);
        both.sort();
        assert_eq!(both, [key("anchor"), key("elsewhere")]);
    }
}
