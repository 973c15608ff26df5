//! The sweeper: removes expired keys from the topic (docs/expiry.md, "Who
//! sweeps, and when"). Reads already hide a key the moment it expires; the
//! sweeper writes the SWEEP tombstone that takes it out of the log, so
//! compaction can drop its records and every instance's table lets it go.
//!
//! Every ready instance sweeps, and they share the work without talking:
//! each knows the instances it has seen sweeping (the sweeper named in
//! every SWEEP it applied) and ranks them per key by a hash of the key and
//! the instance id ([`Crew`]), so all of them agree who comes first. The
//! first sweeps a due key a quarter of `--expiry-sweep-within` after its
//! expiry, the next ones later in turn up to three quarters, and a SWEEP
//! applied makes the key absent everywhere, so the later ones find nothing
//! left. A later one also holds back while an instance ranked above it is
//! sweeping right now (heard within the last quarter): that one is busy,
//! not gone, and will get to the key (this is what keeps a bulk expiry at
//! one SWEEP per key). When the first is gone, the next takes over at its
//! own delay, still within the bound. An instance that has heard no other
//! draws a delay per key in the same span instead, so instances just
//! started rarely sweep the same key twice before they hear each other. A
//! duplicate costs a record, never data: a SWEEP deletes only what expired
//! (`state/hazards.rs`).
//!
//! Only settled keys are swept (unsettled ones are the repairer's), and
//! only while this instance is ready and the topic passed the timing check
//! read-modify-write needs: a SWEEP that loses to a rewrite is a hazard
//! that only the repair protocol makes safe.

use std::{
    collections::HashMap,
    sync::{Weak, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, stream::FuturesUnordered};
use tokio::time::Instant;
use tracing::warn;
use xxhash_rust::xxh3::xxh3_64_with_seed;

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
    let mut counted_due_at: Option<Instant> = None;
    // Orders this instance's delays while it knows no other sweeper.
    let seed = fastrand::u64(..);
    // Keys swept or being swept, until they may be tried again (a SWEEP
    // that lost, or was not written).
    let mut tried: HashMap<Bytes, Tried> = HashMap::new();
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
        let positions = shared.view.progress().positions;
        tried.retain(|_, tried| match *tried {
            Tried::InFlight => true,
            // Until this instance applied it: however far its consumer lags
            // (a bulk expiry), the key stays due here until then.
            Tried::Written { partition, offset } => positions
                .get(partition as usize)
                .is_some_and(|position| *position <= offset),
            Tried::RetryAt(at) => at > instant,
        });
        // The gauge walks the expired entries: once a second is enough.
        if counted_due_at.is_none_or(|at| instant.duration_since(at) >= Duration::from_secs(1)) {
            counted_due_at = Some(instant);
            metrics::gauge!("kafkv_expiry_due_keys").set(shared.view.expiry_counts().1 as f64);
        }
        let crew = Crew::heard(
            seed,
            shared.view.instance_id(),
            &shared.view.sweepers_heard(),
            &shared.view.expiry_writers_heard(),
            std::time::Instant::now(),
            within,
        );
        let earliest = now - (within.as_millis() as i64) / 4;
        // Keys ranked to others are passed over: read enough to find a
        // full load of this instance's own.
        let limit = MAX_IN_FLIGHT * crew.members.len() + tried.len();
        let due = match shared.view.due(earliest, None, limit) {
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
            let turn = crew.turn(&due.key);
            if turn.behind_a_busy_one
                || due.expires_at + crew.delay(&due.key, turn.rank, within) > now
            {
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
            // Not tried again while in flight, however long the broker
            // takes (a first write after start can take most of a second).
            tried.insert(due.key.clone(), Tried::InFlight);
            budget.available -= 1.0;
            let key = due.key.clone();
            let record = Outgoing::sweep(due.key, restates, expires_at, shared.view.instance_id());
            let writer = &shared.writer;
            sends.push(async move { (key, writer.send_record(record).await) });
        }
        while let Some((key, sent)) = sends.next().await {
            // Written: once applied here the key is no longer due, unless the
            // SWEEP lost (it landed before the expiry in broker time); not
            // written: try again a quarter of the bound from now.
            let next = match sent {
                Ok(receipt) => {
                    metrics::counter!("kafkv_sweeps_written_total").increment(1);
                    Tried::Written {
                        partition: receipt.partition,
                        offset: receipt.offset,
                    }
                }
                Err(error) => {
                    warn!(%error, "could not write a SWEEP; retrying");
                    Tried::RetryAt(Instant::now() + within / 4)
                }
            };
            tried.insert(key, next);
        }
    }
}

/// Why a key is not swept again yet.
#[derive(Debug, Clone, Copy)]
enum Tried {
    /// Its SWEEP is being written (the writer's timeout ends a send).
    InFlight,
    /// Its SWEEP is at this offset, not yet applied here.
    Written { partition: i32, offset: i64 },
    /// Its SWEEP could not be written: again from then on.
    RetryAt(Instant),
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

/// How long an instance not heard sweeping stays in the ranking: long, so
/// instances sweeping rarely still rank each other (forgetting one makes
/// both sweep its keys); a dead one costs only the wait for the next in
/// line.
const MEMBERSHIP: Duration = Duration::from_secs(3600);

/// The instances sweeping this topic, as this one has heard them: who
/// sweeps which key first.
#[derive(Debug)]
struct Crew {
    /// This instance's own order of keys while it has heard no other.
    seed: u64,
    me: u32,
    /// Heard within [`MEMBERSHIP`], this instance included; sorted.
    members: Vec<u32>,
    /// Others heard within a quarter of the bound: sweeping right now.
    busy: Vec<u32>,
}

/// This instance's place in line for one key.
#[derive(Debug, PartialEq, Eq)]
struct Turn {
    /// How many members come before this instance (0: it is first).
    rank: usize,
    /// Whether one of them is sweeping right now, so will get to the key.
    behind_a_busy_one: bool,
}

impl Crew {
    /// `heard`: the sweepers named by SWEEPs applied here; `writers`: the
    /// writers named by expiring puts applied here (members to rank, never
    /// busy: they have not been seen sweeping).
    fn heard(
        seed: u64,
        me: u32,
        heard: &[(u32, std::time::Instant)],
        writers: &[(u32, std::time::Instant)],
        now: std::time::Instant,
        within: Duration,
    ) -> Self {
        let since = |at: std::time::Instant| now.saturating_duration_since(at);
        let mut members: Vec<u32> = heard
            .iter()
            .chain(writers)
            .filter(|(_, at)| since(*at) < MEMBERSHIP)
            .map(|(id, _)| *id)
            .chain([me])
            .collect();
        members.sort_unstable();
        members.dedup();
        let busy = heard
            .iter()
            .filter(|(id, at)| *id != me && since(*at) < within / 4)
            .map(|(id, _)| *id)
            .collect();
        Crew {
            seed,
            me,
            members,
            busy,
        }
    }

    /// Rendezvous hashing: every member scores the key the same way for
    /// each instance, and the higher scores go first (ties by id).
    fn turn(&self, key: &[u8]) -> Turn {
        let score = |id: u32| (xxh3_64_with_seed(key, u64::from(id)), id);
        let mine = score(self.me);
        let ahead = || self.members.iter().filter(|id| score(**id) > mine);
        Turn {
            rank: ahead().count(),
            behind_a_busy_one: ahead().any(|id| self.busy.contains(id)),
        }
    }

    /// How long after `key`'s expiry the instance at `rank` sweeps it, in
    /// ms: the first at a quarter of the bound, the last at three quarters,
    /// the others evenly between. The quarter before the first leaves the
    /// writer's own repair of a just-written key time to land. An instance
    /// that has heard no other (just started, or the others never swept)
    /// cannot know its place: it draws a delay per key in the same span, so
    /// two such instances rarely pick the same moment, and the first SWEEP
    /// either applies makes them known to each other.
    fn delay(&self, key: &[u8], rank: usize, within: Duration) -> i64 {
        let within = within.as_millis() as i64;
        let spread = (within / 2).max(1);
        let later = match self.members.len() {
            0 | 1 => (xxh3_64_with_seed(key, self.seed) % spread as u64) as i64,
            members => spread * rank as i64 / (members as i64 - 1),
        };
        within / 4 + later
    }
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
        assert!(
            (budget.available - 20.0).abs() < 1e-6,
            "{}",
            budget.available
        );
        budget.refill(start + Duration::from_secs(60));
        assert_eq!(budget.available, 1000.0, "idle time saves up one second");
    }

    const WITHIN: Duration = Duration::from_secs(1);

    fn crew_of(me: u32, heard: &[(u32, Duration)]) -> Crew {
        let now = std::time::Instant::now() + Duration::from_secs(7200);
        let heard: Vec<_> = heard.iter().map(|(id, ago)| (*id, now - *ago)).collect();
        Crew::heard(7, me, &heard, &[], now, WITHIN)
    }

    #[test]
    fn every_key_has_one_first_sweeper_and_the_instances_agree_on_it() {
        let ids = [0x11, 0x2222, 0x3_0000];
        // Each heard the others a while ago (not busy).
        let crews: Vec<Crew> = ids
            .iter()
            .map(|me| crew_of(*me, &ids.map(|id| (id, Duration::from_secs(5)))))
            .collect();
        let mut firsts = [0usize; 3];
        for key in 0..3000u32 {
            let key = key.to_be_bytes();
            let mut ranks: Vec<usize> = crews.iter().map(|crew| crew.turn(&key).rank).collect();
            let first = ranks.iter().position(|rank| *rank == 0).expect("a first");
            firsts[first] += 1;
            ranks.sort_unstable();
            assert_eq!(ranks, [0, 1, 2], "one instance per place in line");
        }
        for (id, count) in ids.iter().zip(firsts) {
            assert!(
                (800..1200).contains(&count),
                "{id:x} first for {count} of 3000"
            );
        }
    }

    #[test]
    fn the_line_spreads_over_the_middle_half_of_the_bound() {
        let crew = crew_of(
            1,
            &[(2, Duration::from_secs(5)), (3, Duration::from_secs(5))],
        );
        assert_eq!(
            [0, 1, 2].map(|rank| crew.delay(b"k", rank, WITHIN)),
            [250, 500, 750]
        );
        // Alone, a delay drawn per key over the same span.
        let alone = crew_of(1, &[]);
        assert_eq!(alone.members, [1]);
        let delays: Vec<i64> = (0..1000u32)
            .map(|key| alone.delay(&key.to_be_bytes(), 0, WITHIN))
            .collect();
        assert!(delays.iter().all(|d| (250..750).contains(d)));
        let early = delays.iter().filter(|d| **d < 500).count();
        assert!((400..600).contains(&early), "{early} of 1000 early");
        let other = Crew {
            seed: 8,
            ..crew_of(2, &[])
        };
        let theirs: Vec<i64> = (0..1000u32)
            .map(|key| other.delay(&key.to_be_bytes(), 0, WITHIN))
            .collect();
        assert_ne!(delays, theirs, "another instance draws other delays");
    }

    #[test]
    fn a_later_instance_holds_back_only_while_one_ahead_is_sweeping() {
        let quiet = crew_of(1, &[(2, Duration::from_secs(5))]);
        let busy = crew_of(1, &[(2, Duration::from_millis(10))]);
        let gone = crew_of(1, &[(2, MEMBERSHIP + Duration::from_secs(1))]);
        assert_eq!(gone.members, [1], "forgotten after the membership window");
        for key in 0..100u32 {
            let key = key.to_be_bytes();
            let turn = quiet.turn(&key);
            assert!(!turn.behind_a_busy_one);
            // Busy or not, the same place in line; held back only behind it.
            let busy_turn = busy.turn(&key);
            assert_eq!(busy_turn.rank, turn.rank);
            assert_eq!(busy_turn.behind_a_busy_one, turn.rank == 1);
            assert_eq!(gone.turn(&key).rank, 0);
        }
    }

    #[test]
    fn writers_of_expiring_puts_are_ranked_but_never_busy() {
        let now = std::time::Instant::now() + Duration::from_secs(7200);
        let just_now = now - Duration::from_millis(1);
        let crew = Crew::heard(7, 1, &[], &[(2, just_now)], now, WITHIN);
        assert_eq!(crew.members, [1, 2]);
        assert!(crew.busy.is_empty(), "writing is not sweeping");
    }
}
