//! How many records kafkv hands to librdkafka before the earlier ones are
//! acknowledged: a window that holds the rest back in kafkv and releases them
//! together.
//!
//! Why: librdkafka's idempotent producer stops sending to a partition while
//! five *records* (its `RD_KAFKA_IDEMP_MAX_INFLIGHT`, compared with a message
//! count) are unacknowledged there, and while records wait behind that limit
//! with `linger.ms` expired its producer thread polls with a zero timeout:
//! it spins on a core until an acknowledgement arrives. `perf` showed that
//! thread at 73% of kafkv's CPU under 50 concurrent writers (≈70 µs per
//! write; `kafkv-bench --only cpu` measures it). Holding a record here instead
//! costs nothing librdkafka would not have cost (it would not have sent it
//! yet either). Held records are handed to librdkafka all at once, by the
//! acknowledgement that reopens the window, in one tight loop: handing them
//! over one by one as their writers' tasks got to run let librdkafka send
//! the first few alone and spin again behind them.
//!
//! The loop still loses that race often: librdkafka's thread wakes at the
//! first record of a burst and takes what it finds, so under 50 clients a
//! burst of about 26 records went out as two requests, and the thread spun
//! behind the first (15 to 35 zero-timeout `poll`s per write, most of that
//! thread's CPU). The loop therefore does nothing but hand records over
//! (kafkv's headers are built before, writers are told after), which took
//! INCR from 32 to 22 such polls per write and its rate from 0.75 to 0.85 of
//! SET's. librdkafka offers no way to enqueue several records at once (its
//! `produce_batch` enqueues them one by one, each able to wake the thread).
//!
//! Order: records are handed over in the order they reach the window, under
//! its lock, so two writes that one caller issues in order (a pipeline) stay
//! in order on the topic.
//!
//! The window is per store, not per partition (kafkv leaves the choice of
//! partition to librdkafka's partitioner), so its size is the limit times the
//! partition count. With uneven keys a partition can still reach the limit
//! and spin, and a write to a quiet partition can wait for one
//! acknowledgement from a busy one: CPU and latency, never correctness.
//! Computing each key's partition in kafkv would make the window exact, at
//! the price of owning the partitioner's hash.

use std::{collections::VecDeque, sync::Arc};

use parking_lot::Mutex;

/// librdkafka's per-partition limit of unacknowledged idempotent records
/// before it stops sending (`RD_KAFKA_IDEMP_MAX_INFLIGHT`).
pub const IDEMPOTENT_IN_FLIGHT_LIMIT: usize = 5;

/// Hands a record to the producer, given the permit that counts it as
/// outstanding. Runs under the window's lock, so it must not block, and it
/// does only the hand-over there: everything else (telling the writer, or
/// dropping the permit of a record not handed over after all because its
/// writer gave up) goes into the [`After`] it returns, which the window runs
/// once the lock is released and every held record has been handed over.
/// Why: librdkafka's producer thread wakes at the first record of a burst
/// and sends what it finds; waking each writer inside the loop (a futex call
/// per record) stretched the burst so that the thread split it, and spun
/// behind the first part (see the module docs).
pub type Job = Box<dyn FnOnce(Permit) -> After + Send>;

/// What a [`Job`] leaves to run after the hand-over.
pub type After = Box<dyn FnOnce() + Send>;

/// Runs jobs at once while fewer than `limit` records are outstanding; holds
/// the rest and runs them all together when the count drops below it again.
pub struct SendWindow {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Handed over and not yet acknowledged or failed.
    outstanding: usize,
    /// Waiting to be handed over, oldest first.
    held: VecDeque<Job>,
}

impl SendWindow {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Runs `job` now if the window is open, or holds it.
    pub fn start(self: &Arc<Self>, job: Job) {
        let after = {
            let mut state = self.state.lock();
            // Behind held jobs too, so a record never overtakes held ones.
            if state.outstanding < self.limit && state.held.is_empty() {
                state.outstanding += 1;
                job(self.permit())
            } else {
                state.held.push_back(job);
                return;
            }
        };
        after();
    }

    fn release(self: &Arc<Self>) {
        let afters: Vec<After> = {
            let mut state = self.state.lock();
            state.outstanding -= 1;
            if state.outstanding >= self.limit || state.held.is_empty() {
                return;
            }
            let held = std::mem::take(&mut state.held);
            state.outstanding += held.len();
            held.into_iter().map(|job| job(self.permit())).collect()
        };
        for after in afters {
            after();
        }
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            window: self.clone(),
        }
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.outstanding, state.held.len())
    }
}

/// One handed-over record; dropping it (acknowledged, failed, or given up)
/// gives its place back.
pub struct Permit {
    window: Arc<SendWindow>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.window.release();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A job that records its name in `ran` and hands its permit to `kept`.
    fn job(name: u32, ran: &mpsc::Sender<u32>, kept: &mpsc::Sender<Permit>) -> Job {
        let (ran, kept) = (ran.clone(), kept.clone());
        Box::new(move |permit| {
            ran.send(name).unwrap();
            Box::new(move || kept.send(permit).unwrap())
        })
    }

    #[test]
    fn runs_up_to_the_limit_then_holds_and_runs_held_jobs_together_in_order() {
        let window = SendWindow::new(2);
        let (ran_tx, ran) = mpsc::channel();
        let (kept_tx, kept) = mpsc::channel();
        for name in 0..5 {
            window.start(job(name, &ran_tx, &kept_tx));
        }
        assert_eq!(ran.try_iter().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(window.counts(), (2, 3));

        // One acknowledgement reopens the window: all three held jobs run,
        // above the limit, as one burst and in arrival order.
        drop(kept.recv().unwrap());
        assert_eq!(ran.try_iter().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(window.counts(), (4, 0));

        drop(kept.try_iter().collect::<Vec<_>>());
        assert_eq!(window.counts(), (0, 0));
    }

    #[test]
    fn held_jobs_are_all_handed_over_before_any_of_their_afters_runs() {
        let window = SendWindow::new(1);
        let (events_tx, events) = mpsc::channel();
        let (kept_tx, kept) = mpsc::channel();
        for name in 0..4 {
            let (events, kept) = (events_tx.clone(), kept_tx.clone());
            window.start(Box::new(move |permit| {
                events.send(format!("hand {name}")).unwrap();
                Box::new(move || {
                    events.send(format!("after {name}")).unwrap();
                    kept.send(permit).unwrap();
                })
            }));
        }
        assert_eq!(events.try_iter().collect::<Vec<_>>(), ["hand 0", "after 0"]);

        drop(kept.recv().unwrap());
        assert_eq!(
            events.try_iter().collect::<Vec<_>>(),
            [
                "hand 1", "hand 2", "hand 3", "after 1", "after 2", "after 3"
            ]
        );
    }

    #[test]
    fn a_new_job_waits_behind_held_ones_while_the_window_is_full() {
        let window = SendWindow::new(1);
        let (ran_tx, ran) = mpsc::channel();
        let (kept_tx, kept) = mpsc::channel();
        window.start(job(0, &ran_tx, &kept_tx));
        window.start(job(1, &ran_tx, &kept_tx));
        window.start(job(2, &ran_tx, &kept_tx));
        assert_eq!(ran.try_iter().collect::<Vec<_>>(), [0]);
        drop(kept.recv().unwrap());
        assert_eq!(ran.try_iter().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_job_that_gives_its_permit_back_keeps_no_place() {
        let window = SendWindow::new(1);
        let (ran_tx, ran) = mpsc::channel();
        let (kept_tx, kept) = mpsc::channel();
        window.start(job(0, &ran_tx, &kept_tx));
        // Its writer gave up while it was held.
        window.start(Box::new(|permit| Box::new(move || drop(permit))));
        window.start(job(2, &ran_tx, &kept_tx));
        drop(kept.recv().unwrap());
        assert_eq!(ran.try_iter().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(window.counts(), (1, 0));
        drop(kept.recv().unwrap());
        assert_eq!(window.counts(), (0, 0));
    }
}
