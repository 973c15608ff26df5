//! Long-polling fetches for the embedded broker: kafkv's own Fetch route.
//!
//! Kafka answers a fetch as soon as it has data, and holds one that finds
//! none until data arrives or `fetch.wait.max.ms` runs out. tansu 0.6's
//! `FetchService` reads storage, then sleeps out the rest of the wait
//! *whatever it found* (`tansu-storage` `service/fetch.rs`): every fetch that
//! returned data took the consumer's whole wait — 10 ms for kafkv's own
//! consumers, 250 ms for a third-party consumer with librdkafka's default
//! 500 ms — and an idle consumer re-read SQLite once per wait.
//!
//! So the broker routes Fetch to [`LongPollFetch`]: one read of kafkv's
//! own ([`fetch_once`], not tansu's handler), answered at once when it
//! found records or an error, else held until the next produce and read
//! again, until the hold ends. The hold is the longer of the client's wait
//! and [`LongPoll`]'s: holding an idle fetch past the client's
//! `fetch.wait.max.ms` is safe (librdkafka allows a fetch
//! `socket.timeout.ms` more than its wait) and is what keeps an idle
//! consumer at one storage read per hold instead of one per 10 ms.
//!
//! `fetch.min.bytes` above 1 is not honoured: any record answers at once.

use std::{sync::Arc, time::Duration};

use rama::{Context, Service};
use tansu_sans_io::{ErrorCode, FetchRequest, FetchResponse};
use tansu_storage::Storage;
use tokio::{sync::watch, time::Instant};

use super::fetch_once;

/// Wakes held fetches when a produce lands.
pub struct LongPoll {
    hold: Duration,
    /// Bumped on every produce; held fetches watch it.
    produced: watch::Sender<u64>,
}

impl LongPoll {
    pub fn new(hold: Duration) -> Self {
        Self {
            hold,
            produced: watch::channel(0).0,
        }
    }

    /// Wakes every fetch held for data.
    pub fn produced(&self) {
        self.produced
            .send_modify(|count| *count = count.wrapping_add(1));
    }
}

/// The Fetch route's service (see the module docs).
#[derive(Clone)]
pub struct LongPollFetch {
    pub poll: Arc<LongPoll>,
}

impl<S: Storage> Service<S, FetchRequest> for LongPollFetch {
    type Response = FetchResponse;
    type Error = tansu_storage::Error;

    async fn serve(
        &self,
        ctx: Context<S>,
        request: FetchRequest,
    ) -> Result<FetchResponse, tansu_storage::Error> {
        let asked = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
        let deadline = Instant::now() + asked.max(self.poll.hold);
        let mut produced = self.poll.produced.subscribe();
        loop {
            // Marked seen before the read: a produce landing during it
            // wakes the wait below instead of being missed.
            produced.borrow_and_update();
            let response = fetch_once::read(ctx.state(), &request).await?;
            if answers_now(&response) {
                return Ok(response);
            }
            let woken = tokio::time::timeout_at(deadline, produced.changed()).await;
            if !matches!(woken, Ok(Ok(()))) {
                return Ok(response);
            }
        }
    }
}

/// Whether a one-pass response goes to the client now: it holds records,
/// or an error the client must see (an unknown topic, an offset out of
/// range), as Kafka answers those at once.
fn answers_now(response: &FetchResponse) -> bool {
    let none = i16::from(ErrorCode::None);
    if response.error_code.is_some_and(|code| code != none) {
        return true;
    }
    response
        .responses
        .iter()
        .flatten()
        .flat_map(|topic| topic.partitions.iter().flatten())
        .any(|partition| {
            partition.error_code != none
                || partition
                    .records
                    .as_ref()
                    .is_some_and(|frame| frame.batches.iter().any(|batch| batch.record_count > 0))
        })
}

#[cfg(test)]
mod tests {
    use tansu_sans_io::{
        fetch_response::{FetchableTopicResponse, PartitionData},
        record::deflated::{Batch, Frame},
    };

    use super::*;

    fn response(partitions: Vec<PartitionData>) -> FetchResponse {
        FetchResponse::default()
            .error_code(Some(ErrorCode::None.into()))
            .responses(Some(vec![
                FetchableTopicResponse::default().partitions(Some(partitions)),
            ]))
    }

    fn partition(records: u32, error: ErrorCode) -> PartitionData {
        PartitionData::default()
            .error_code(error.into())
            .records(Some(Frame {
                batches: vec![Batch {
                    record_count: records,
                    ..Batch::default()
                }],
            }))
    }

    #[test]
    fn records_or_an_error_answer_at_once_and_empty_partitions_are_held() {
        assert!(!answers_now(&response(vec![])));
        assert!(!answers_now(&response(vec![partition(0, ErrorCode::None)])));
        assert!(answers_now(&response(vec![
            partition(0, ErrorCode::None),
            partition(3, ErrorCode::None),
        ])));
        assert!(answers_now(&response(vec![partition(
            0,
            ErrorCode::OffsetOutOfRange
        )])));
        assert!(answers_now(
            &response(vec![]).error_code(Some(ErrorCode::UnknownServerError.into()))
        ));
    }
}
