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
//! sweeping right now (it swept within half the bound before the newest
//! record read here): that one is busy, not gone, and will get to
//! the key (this is what keeps a bulk expiry at one SWEEP per key). When the
//! first is gone, the next takes over at its own delay, still within the
//! bound.
//!
//! The first in line goes by its own clock; the later ones by *log time*,
//! what they have read ([`crate::state::View::read_until`]): a later one
//! sweeps a key once it has read the log past its own turn without finding
//! the key swept. A consumer lagging a bulk expiry by seconds has simply
//! not read the first one's SWEEPs yet; judged by its own clock, it swept
//! nearly every key again (2.9 SWEEPs per key with three instances). So a
//! later instance's sweep can be late by its consumer's lag, never early.
//! An instance that has heard no other
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
use crate::{
    record::Outgoing,
    state::{Heard, now_ms},
};

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

/// The most SWEEPs in flight at once: held records go out together. Not
/// more: the broker appends one instance's request while the others'
/// wait, and a busy instance whose SWEEPs stop landing for longer than the
/// busy window ([`Crew::turn`]) looks gone to the next in line (4,096
/// took the embedded broker about a second: 1.3 SWEEPs per key).
const MAX_IN_FLIGHT: usize = 1024;

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
            let read_until = shared.view.read_until(due.partition, now);
            if !crew.sweeps_now(&due.key, due.expires_at, now, read_until, within) {
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
    /// The others heard sweeping, with their newest SWEEP's log time.
    swept_at: Vec<(u32, i64)>,
}

/// This instance's place in line for one key.
#[derive(Debug, PartialEq, Eq)]
struct Turn {
    /// How many members come before this instance (0: it is first).
    rank: usize,
    /// Whether one of them is sweeping as far as this instance has read,
    /// so will get to the key.
    behind_a_busy_one: bool,
}

impl Crew {
    /// `heard`: the sweepers named by SWEEPs applied here; `writers`: the
    /// writers named by expiring puts applied here (members to rank, never
    /// busy: they have not been seen sweeping).
    fn heard(
        seed: u64,
        me: u32,
        heard: &[Heard],
        writers: &[Heard],
        now: std::time::Instant,
    ) -> Self {
        let recent = |heard: &&Heard| now.saturating_duration_since(heard.applied_at) < MEMBERSHIP;
        let mut members: Vec<u32> = heard
            .iter()
            .chain(writers)
            .filter(recent)
            .map(|heard| heard.id)
            .chain([me])
            .collect();
        members.sort_unstable();
        members.dedup();
        let swept_at = heard
            .iter()
            .filter(|heard| heard.id != me)
            .filter(recent)
            .map(|heard| (heard.id, heard.record_time))
            .collect();
        Crew {
            seed,
            me,
            members,
            swept_at,
        }
    }

    /// Rendezvous hashing: every member scores the key the same way for
    /// each instance, and the higher scores go first (ties by id). One
    /// ahead is busy if it swept within half the bound before
    /// `read_until`, the log time this instance has read the key's
    /// partition to. Half, not less: under a bulk expiry the broker
    /// appends the instances' requests in turn, so a busy one's SWEEPs
    /// land in bursts. Not more: when one ahead dies while sweeping, a
    /// key expiring after its last SWEEP is taken at most half the bound
    /// later, so within `3D/4` of its expiry still.
    fn turn(&self, key: &[u8], read_until: i64, within: Duration) -> Turn {
        let score = |id: u32| (xxh3_64_with_seed(key, u64::from(id)), id);
        let mine = score(self.me);
        let ahead = || self.members.iter().filter(|id| score(**id) > mine);
        let busy_since = read_until - within.as_millis() as i64 / 2;
        let is_busy = |id: &u32| {
            self.swept_at
                .iter()
                .any(|(other, at)| other == id && *at >= busy_since)
        };
        Turn {
            rank: ahead().count(),
            behind_a_busy_one: ahead().any(is_busy),
        }
    }

    /// Whether this instance sweeps `key` (expired at `expires_at`) now:
    /// the first in line once its delay passed on its own clock (`now`), a
    /// later one once it has read the key's partition past its own turn
    /// (`read_until`, log time) with nobody ahead of it busy.
    fn sweeps_now(
        &self,
        key: &[u8],
        expires_at: i64,
        now: i64,
        read_until: i64,
        within: Duration,
    ) -> bool {
        let turn = self.turn(key, read_until, within);
        let at = expires_at + self.delay(key, turn.rank, within);
        if turn.rank == 0 {
            at <= now
        } else {
            at <= read_until && !turn.behind_a_busy_one
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

    /// A crew that heard `heard` sweep, `(id, newest SWEEP's log time)`,
    /// five seconds ago on the local clock.
    fn crew_of(me: u32, heard: &[(u32, i64)]) -> Crew {
        let now = std::time::Instant::now() + Duration::from_secs(7200);
        let heard: Vec<Heard> = heard
            .iter()
            .map(|(id, record_time)| Heard {
                id: *id,
                applied_at: now - Duration::from_secs(5),
                record_time: *record_time,
            })
            .collect();
        Crew::heard(7, me, &heard, &[], now)
    }

    #[test]
    fn every_key_has_one_first_sweeper_and_the_instances_agree_on_it() {
        let ids = [0x11, 0x2222, 0x3_0000];
        // Each heard the others a while ago (not busy).
        let crews: Vec<Crew> = ids
            .iter()
            .map(|me| crew_of(*me, &ids.map(|id| (id, 0))))
            .collect();
        let mut firsts = [0usize; 3];
        for key in 0..3000u32 {
            let key = key.to_be_bytes();
            let mut ranks: Vec<usize> = crews
                .iter()
                .map(|crew| crew.turn(&key, 10_000, WITHIN).rank)
                .collect();
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
        let crew = crew_of(1, &[(2, 0), (3, 0)]);
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
        // Read to 10 s in log time; instance 2 last swept at 5 s, or at
        // 9.6 s (within half the bound: busy).
        let read_until = 10_000;
        let quiet = crew_of(1, &[(2, 5_000)]);
        let busy = crew_of(1, &[(2, 9_600)]);
        let now = std::time::Instant::now() + Duration::from_secs(7200);
        let long_ago = Heard {
            id: 2,
            applied_at: now - MEMBERSHIP - Duration::from_secs(1),
            record_time: 9_900,
        };
        let gone = Crew::heard(7, 1, &[long_ago], &[], now);
        assert_eq!(gone.members, [1], "forgotten after the membership window");
        for key in 0..100u32 {
            let key = key.to_be_bytes();
            let turn = quiet.turn(&key, read_until, WITHIN);
            assert!(!turn.behind_a_busy_one);
            // Busy or not, the same place in line; held back only behind it.
            let busy_turn = busy.turn(&key, read_until, WITHIN);
            assert_eq!(busy_turn.rank, turn.rank);
            assert_eq!(busy_turn.behind_a_busy_one, turn.rank == 1);
            assert_eq!(gone.turn(&key, read_until, WITHIN).rank, 0);
        }
    }

    #[test]
    fn a_later_instance_sweeps_by_what_it_has_read_not_by_its_clock() {
        let crew = crew_of(1, &[(2, 0)]);
        let key = (0..100u32)
            .map(u32::to_be_bytes)
            .find(|key| crew.turn(key, 0, WITHIN).rank == 1)
            .expect("a key where instance 1 is second");
        let expires_at = 100_000;
        // Its turn is 750 ms after the expiry (the last of two).
        let turn = expires_at + 750;
        let later = expires_at + 60_000;
        // Long past its turn on its own clock, but its consumer has not
        // read that far: the first one's SWEEP may be in what it has not
        // read yet.
        assert!(!crew.sweeps_now(&key, expires_at, later, turn - 1, WITHIN));
        // Read past its turn without finding the key swept: the first one
        // did not sweep it.
        assert!(crew.sweeps_now(&key, expires_at, later, turn, WITHIN));
        // Unless the first one was sweeping just before what it has read.
        let busy = crew_of(1, &[(2, turn - 400)]);
        assert!(!busy.sweeps_now(&key, expires_at, later, turn, WITHIN));
        let idle = crew_of(1, &[(2, turn - 501)]);
        assert!(idle.sweeps_now(&key, expires_at, later, turn, WITHIN));
        // The first in line goes by its own clock, whatever it has read.
        let first = crew_of(2, &[(1, 0)]);
        assert_eq!(first.turn(&key, 0, WITHIN).rank, 0);
        assert!(first.sweeps_now(&key, expires_at, expires_at + 250, 0, WITHIN));
        assert!(!first.sweeps_now(&key, expires_at, expires_at + 249, later, WITHIN));
    }

    #[test]
    fn writers_of_expiring_puts_are_ranked_but_never_busy() {
        let now = std::time::Instant::now() + Duration::from_secs(7200);
        let writer = Heard {
            id: 2,
            applied_at: now - Duration::from_millis(1),
            record_time: 10_000,
        };
        let crew = Crew::heard(7, 1, &[], &[writer], now);
        assert_eq!(crew.members, [1, 2]);
        assert!(crew.swept_at.is_empty(), "writing is not sweeping");
    }
}
