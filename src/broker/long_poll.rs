//! Long-polling fetches for the embedded broker.
//!
//! Kafka holds a fetch that finds no data until data arrives or
//! `fetch.wait.max.ms` runs out. tansu 0.6 reads storage once, then sleeps out
//! the wait whatever it found, so a consumer either polls SQLite ~100×/s (a
//! 10 ms wait: ≈14% of a core while idle) or sees new records late (a long
//! wait). Storage calls carry no request boundaries, so this module infers
//! them: tansu serves each connection's requests one at a time on one task,
//! and a request's fetch reads each partition until a read comes back empty,
//! so a partition read again on the same task starts either the next request
//! or another read of a partition that just had data (which never waits).
//!
//! The rule, at the first storage fetch of a request: wait for the next
//! produce (up to the hold) only if every partition this connection has
//! fetched last came back empty and nothing was produced since the previous
//! request began. A connection with data anywhere never waits, so a
//! catching-up consumer is never slowed; an idle one costs one fetch per hold.
//! Waiting past the client's `fetch.wait.max.ms` is safe: librdkafka allows a
//! fetch `socket.timeout.ms` more than its wait, and a hold of 500 ms is what
//! a librdkafka consumer with default settings asks of Kafka.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use tansu_storage::Topition;
use tokio::{sync::watch, task};

/// Connections not heard from for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);

pub struct LongPoll {
    hold: Duration,
    /// Bumped on every produce; fetches waiting for data watch it.
    produced: watch::Sender<u64>,
    connections: parking_lot::Mutex<HashMap<task::Id, Connection>>,
}

struct Connection {
    /// Partitions fetched in the current request.
    request: HashSet<Topition>,
    /// Per partition: did its last fetch return records?
    found: HashMap<Topition, bool>,
    /// The produce count when the current request began.
    produced_at_start: u64,
    last_seen: Instant,
}

/// Which connection a fetch belongs to; `None` outside a task (never waits).
pub type ConnectionId = Option<task::Id>;

impl LongPoll {
    pub fn new(hold: Duration) -> Self {
        Self {
            hold,
            produced: watch::channel(0).0,
            connections: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Wakes every fetch waiting for data.
    pub fn produced(&self) {
        self.produced.send_modify(|count| *count += 1);
    }

    /// Called before each storage fetch; waits when the connection is idle
    /// (see the module docs).
    pub async fn before_fetch(&self, topition: &Topition) -> ConnectionId {
        let connection = task::try_id();
        let id = connection?;
        let mut produced = self.produced.subscribe();
        let now = *produced.borrow_and_update();
        let idle = {
            let mut connections = self.connections.lock();
            if connections.len() > 64 {
                connections.retain(|_, c| c.last_seen.elapsed() < FORGET_AFTER);
            }
            let state = connections.entry(id).or_insert_with(|| Connection {
                request: HashSet::new(),
                found: HashMap::new(),
                produced_at_start: now,
                last_seen: Instant::now(),
            });
            state.last_seen = Instant::now();
            if state.request.insert(topition.clone()) {
                false
            } else {
                // Seen in this request already: a new request begins here.
                let idle = state.produced_at_start == now && state.found.values().all(|f| !f);
                state.request.clear();
                state.request.insert(topition.clone());
                state.produced_at_start = now;
                idle
            }
        };
        if idle {
            // Either a produce or the hold ends the wait; both mean "fetch now".
            let _ = tokio::time::timeout(self.hold, produced.changed()).await;
        }
        connection
    }

    /// Records what a storage fetch returned.
    pub fn after_fetch(&self, connection: ConnectionId, topition: &Topition, found: bool) {
        if let Some(id) = connection
            && let Some(state) = self.connections.lock().get_mut(&id)
        {
            state.found.insert(topition.clone(), found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(p: i32) -> Topition {
        Topition::new("t", p)
    }

    /// Runs one request's worth of fetches on the current task and returns
    /// how long its first fetch waited.
    async fn request(poll: &LongPoll, partitions: &[(i32, bool)]) -> Duration {
        let mut first_wait = None;
        for (p, found) in partitions {
            let started = Instant::now();
            let connection = poll.before_fetch(&partition(*p)).await;
            first_wait.get_or_insert(started.elapsed());
            poll.after_fetch(connection, &partition(*p), *found);
        }
        first_wait.unwrap_or_default()
    }

    /// Runs `work` on a task of its own: connections are told apart by task
    /// (a test's own body is not a task), as tansu runs each on its own.
    async fn on_a_connection<F: Future<Output = ()> + Send + 'static>(work: F) {
        tokio::spawn(work).await.unwrap();
    }

    #[tokio::test]
    async fn an_idle_connection_waits_the_hold_and_a_busy_one_never_does() {
        on_a_connection(async {
            let hold = Duration::from_millis(300);
            let poll = LongPoll::new(hold);
            // First request: nothing known, no wait.
            assert!(request(&poll, &[(0, false), (1, true)]).await < hold / 3);
            // Partition 1 had data: the next request must not wait.
            assert!(request(&poll, &[(0, false), (1, false)]).await < hold / 3);
            // Everything came back empty and nothing was produced: wait the hold.
            assert!(request(&poll, &[(0, false), (1, false)]).await >= hold);
        })
        .await;
    }

    #[tokio::test]
    async fn outside_a_task_nothing_waits() {
        let hold = Duration::from_millis(300);
        let poll = LongPoll::new(hold);
        for _ in 0..3 {
            assert!(request(&poll, &[(0, false)]).await < hold / 3);
        }
    }

    #[tokio::test]
    async fn a_produce_ends_the_wait() {
        let poll = std::sync::Arc::new(LongPoll::new(Duration::from_secs(30)));
        // One task is one connection: an empty request, then one that would
        // wait the whole 30 s hold unless a produce wakes it.
        let waiter = {
            let poll = poll.clone();
            tokio::spawn(async move {
                request(&poll, &[(0, false)]).await;
                request(&poll, &[(0, true)]).await
            })
        };
        // On this single-threaded runtime the waiter runs until it parks; a
        // subscriber on the produce signal means it is parked waiting.
        while poll.produced.receiver_count() == 0 {
            tokio::task::yield_now().await;
        }
        poll.produced();
        let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("a produce did not wake the waiting fetch")
            .unwrap();
        assert!(waited < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_produce_between_requests_means_no_wait() {
        on_a_connection(async {
            let hold = Duration::from_millis(300);
            let poll = LongPoll::new(hold);
            request(&poll, &[(0, false)]).await;
            poll.produced();
            assert!(request(&poll, &[(0, false)]).await < hold / 3);
        })
        .await;
    }
}
