//! Appends puts and tombstones to the topic and returns where the broker put
//! them. A write counts as done only when the broker acknowledged it with
//! `acks=all`; the idempotent producer keeps retries from duplicating or
//! reordering records.
//!
//! Every write ends in exactly one of three ways: acknowledged ([`Receipt`]),
//! definitely not written ([`ProduceError::NotWritten`]), or indeterminate
//! ([`ProduceError::Indeterminate`]: it may or may not be in the log). Which
//! failures are which is the table in `refused` and `failed`; when in doubt a
//! failure is indeterminate, because a wrongly definite "not written" turns a
//! client's retry of a non-idempotent operation into a double application.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;

use parking_lot::RwLock;
use rdkafka::{
    error::KafkaError,
    producer::{DeliveryFuture, FutureProducer, Producer},
    types::RDKafkaErrorCode,
    util::Timeout,
};
use tracing::{error, warn};

use super::window::{IDEMPOTENT_IN_FLIGHT_LIMIT, Permit, SendWindow};
use crate::{config::StoreConfig, record::Outgoing};

/// A write the broker did not acknowledge, and what is known about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// The record may or may not be in the log: it, or an earlier attempt of
    /// it, may have reached the broker before the failure (librdkafka's
    /// "possibly persisted"). If it was stored, every instance applies it
    /// like any other record. Timeouts, lost connections, purges of a
    /// replaced producer and any error not known to be a refusal end here.
    #[error(
        "the outcome of the write is unknown: it may have been applied ({reason}). Read the key \
         to check before retrying a non-idempotent operation; repeating a put or delete of the \
         same value is safe"
    )]
    Indeterminate {
        /// What happened.
        reason: String,
    },
    /// The record is not in the log and never will be: librdkafka refused it
    /// before taking it, or the broker refused the record itself (too large,
    /// invalid, not authorized).
    #[error(
        "the write was not applied: {0}. Nothing reached the log, so retrying cannot apply it \
         twice"
    )]
    NotWritten(#[source] KafkaError),
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub partition: i32,
    pub offset: i64,
}

/// The producer side of the store.
pub struct Writer {
    /// `FutureProducer` is a cheap handle; senders clone it out of the lock.
    producer: RwLock<FutureProducer>,
    /// Set after a failure that can leave the idempotent producer's sequence
    /// state unusable; the next send starts a fresh producer (a new producer
    /// id). After timed-out records librdkafka bumps the producer epoch
    /// itself, which Kafka and the embedded broker (through kafkv's storage
    /// wrapper) accept; a fresh producer also recovers from the errors after
    /// which the old one's sequence numbers cannot be trusted.
    stale: AtomicBool,
    config: rdkafka::ClientConfig,
    /// Keeps librdkafka from holding records it cannot send yet (see
    /// [`super::window`]).
    window: Arc<SendWindow>,
    topic: Arc<str>,
    timeout: Duration,
}

impl Writer {
    /// A writer to `config`'s topic, which has `partitions` partitions.
    pub fn new(config: &StoreConfig, partitions: i32) -> Result<Self, KafkaError> {
        let timeout_ms = config.write_timeout.as_millis().max(1).to_string();
        let mut settings = super::client::producer_settings();
        settings.extend([
            ("message.timeout.ms", timeout_ms.clone()),
            ("request.timeout.ms", timeout_ms),
            (
                "message.max.bytes",
                super::client::max_record_bytes(config).to_string(),
            ),
        ]);
        let client = super::client::client_config(config, &settings);
        Ok(Self {
            producer: RwLock::new(client.create()?),
            stale: AtomicBool::new(false),
            config: client,
            window: SendWindow::new(IDEMPOTENT_IN_FLIGHT_LIMIT * partitions.max(1) as usize),
            topic: config.topic.as_str().into(),
            timeout: config.write_timeout,
        })
    }

    /// Produces a put of `key` (or a tombstone: `value` `None`) and waits for
    /// the broker's acknowledgement, at most the write timeout.
    pub async fn send(&self, key: &[u8], value: Option<Bytes>) -> Result<Receipt, ProduceError> {
        self.send_record(Outgoing::plain(Bytes::copy_from_slice(key), value))
            .await
    }

    /// Produces `record` (a put, a tombstone, an operation or a repair) and
    /// waits for the broker's acknowledgement, at most the write timeout.
    pub async fn send_record(&self, record: Outgoing) -> Result<Receipt, ProduceError> {
        if self.stale.swap(false, Ordering::AcqRel) {
            self.replace_producer();
        }
        // librdkafka enforces message.timeout.ms only at a coarse granularity
        // (measured: a 2 s timeout fired after 5 to 11 s with the broker down),
        // so the bound callers rely on is this one; it includes the wait for
        // the window, which only acknowledgements and failures open.
        let delivered = tokio::time::timeout(self.timeout, async {
            let (started, _permit) = self.start(record).await.map_err(|e| self.refused(e))?;
            match started.await {
                Ok(Ok(delivery)) => Ok(Receipt {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Ok(Err((error, _record))) => Err(self.failed(error)),
                // librdkafka dropped the report unsent (its producer was
                // destroyed with the record still queued or in flight).
                Err(_canceled) => Err(ProduceError::Indeterminate {
                    reason: "the producer was closed before it reported on the record".into(),
                }),
            }
        });
        delivered.await.unwrap_or_else(|_elapsed| {
            self.stale.store(true, Ordering::Release);
            Err(ProduceError::Indeterminate {
                reason: format!(
                    "the broker did not acknowledge it within {:?}; is the broker reachable? \
                     (--write-timeout sets the bound)",
                    self.timeout
                ),
            })
        })
    }

    /// Hands the record to librdkafka through the window: its delivery, and
    /// the permit to drop once it is acknowledged or has failed. An error is
    /// librdkafka refusing the record then and there: it did not take it.
    async fn start(&self, record: Outgoing) -> Result<(DeliveryFuture, Permit), KafkaError> {
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let producer = self.producer.read().clone();
        let topic = self.topic.clone();
        let headers = record.kafka_headers();
        self.window.start(Box::new(move |permit| {
            if started_tx.is_closed() {
                // The writer gave up (timed out, or its client hung up) while
                // the record was held: it is not sent.
                return Box::new(move || drop(permit));
            }
            // Never blocks: a full librdkafka queue is an error at once.
            let started = producer
                .send_result(record.to_kafka_with(&topic, headers))
                .map_err(|(error, _)| error);
            // A writer that gave up since drops the delivery and the permit.
            Box::new(move || drop(started_tx.send((started, permit))))
        }));
        let (started, permit) = started
            .await
            .expect("the window runs or keeps every job it is given");
        Ok((started?, permit))
    }

    /// librdkafka refused the record when it was handed over: it never took
    /// it, so it was not written.
    fn refused(&self, error: KafkaError) -> ProduceError {
        self.note_poison(&error);
        refused(error)
    }

    /// The record's delivery report is a failure.
    fn failed(&self, error: KafkaError) -> ProduceError {
        self.note_poison(&error);
        failed(error)
    }

    /// After some failures this producer's idempotence state cannot be
    /// trusted: the next send starts a fresh one.
    fn note_poison(&self, error: &KafkaError) {
        use RDKafkaErrorCode::*;
        if matches!(
            error.rdkafka_error_code(),
            Some(
                Fatal
                    | MessageTimedOut
                    | Unknown
                    | OutOfOrderSequenceNumber
                    | UnknownProducerId
                    | InvalidProducerEpoch
                    | ProducerFenced
            )
        ) {
            self.stale.store(true, Ordering::Release);
        }
    }

    fn replace_producer(&self) {
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                warn!("starting a fresh producer after failed writes");
                let old = std::mem::replace(&mut *self.producer.write(), fresh);
                // Dropping a producer purges and flushes for up to 500 ms: not on this thread.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => {
                error!(%e, "could not create a new producer; keeping the old one");
                self.stale.store(true, Ordering::Release);
            }
        }
    }

    /// Waits for every queued record to be acknowledged or to fail.
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.read().clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .expect("flush task panicked");
        if let Err(error) = flushed {
            error!(%error, "records were still unacknowledged at shutdown");
        }
    }
}

/// A failure of handing the record to librdkafka (`send_result`): whatever
/// the code (queue full, record over `message.max.bytes`, unknown topic or
/// partition, a fatal producer, a topic already marked unauthorized), the
/// record was not enqueued, so nothing was sent.
fn refused(error: KafkaError) -> ProduceError {
    ProduceError::NotWritten(error)
}

/// A failed delivery report. Only the broker's refusals of the record itself
/// are definite: it checks these before appending, and the idempotent
/// producer retries the same batch, so an earlier attempt met the same check
/// (unless the topic's limits or the ACLs changed between two attempts).
/// Everything else is indeterminate, because librdkafka reports the
/// last attempt's error while an earlier attempt may have been stored (it
/// never downgrades a message from "possibly persisted"; that status is not
/// exposed through rdkafka's `FutureProducer`): purged records (`PurgeQueue`
/// holds retries of records already sent, `PurgeInflight` ones the broker may
/// still read), timeouts, lost connections, `Unknown`, fatal errors and every
/// code not listed here.
fn failed(error: KafkaError) -> ProduceError {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code() {
        Some(
            MessageSizeTooLarge
            | InvalidMessageSize
            | MessageBatchTooLarge
            | InvalidRecord
            | TopicAuthorizationFailed,
        ) => ProduceError::NotWritten(error),
        _ => ProduceError::Indeterminate {
            reason: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definite(outcome: &ProduceError) -> bool {
        matches!(outcome, ProduceError::NotWritten(_))
    }

    /// Issue 17: records purged with a replaced producer were reported as
    /// rejected, though one sent and then queued for a retry, or in flight,
    /// may be in the log; a client's retry of an increment counted twice.
    #[test]
    fn only_refusals_of_the_record_itself_are_definitely_not_written() {
        use RDKafkaErrorCode::*;
        let not_written = [
            MessageSizeTooLarge,
            InvalidMessageSize,
            MessageBatchTooLarge,
            InvalidRecord,
            TopicAuthorizationFailed,
        ];
        let indeterminate = [
            PurgeInflight,
            PurgeQueue,
            MessageTimedOut,
            RequestTimedOut,
            TimedOutQueue,
            BrokerTransportFailure,
            AllBrokersDown,
            NetworkException,
            NotEnoughReplicas,
            NotEnoughReplicasAfterAppend,
            LeaderNotAvailable,
            NotLeaderForPartition,
            UnknownTopicOrPartition,
            UnknownPartition,
            UnknownTopic,
            KafkaStorageError,
            OutOfOrderSequenceNumber,
            DuplicateSequenceNumber,
            UnknownProducerId,
            InvalidProducerEpoch,
            ProducerFenced,
            InvalidMessage,
            InvalidTimestamp,
            ClusterAuthorizationFailed,
            BadMessage,
            Fatal,
            Unknown,
        ];
        for code in not_written {
            let outcome = failed(KafkaError::MessageProduction(code));
            assert!(definite(&outcome), "{code:?}: {outcome}");
        }
        for code in indeterminate {
            let outcome = failed(KafkaError::MessageProduction(code));
            assert!(!definite(&outcome), "{code:?}: {outcome}");
            assert!(
                outcome.to_string().contains("may have been applied"),
                "{outcome}"
            );
        }
        // Errors that carry no code are not known refusals either.
        assert!(!definite(&failed(KafkaError::Canceled)));
    }

    #[test]
    fn a_record_librdkafka_did_not_take_is_not_written_whatever_the_code() {
        use RDKafkaErrorCode::*;
        for code in [
            QueueFull,
            MessageSizeTooLarge,
            UnknownPartition,
            UnknownTopic,
            Fatal,
        ] {
            let outcome = refused(KafkaError::MessageProduction(code));
            assert!(definite(&outcome), "{code:?}: {outcome}");
            assert!(outcome.to_string().contains("not applied"), "{outcome}");
        }
    }
}
