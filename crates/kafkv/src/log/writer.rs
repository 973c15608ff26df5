//! Appends puts and tombstones to the topic and returns where the broker put
//! them. A write counts as done only when the broker acknowledged it with
//! `acks=all`; the idempotent producer keeps retries from duplicating or
//! reordering records.

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

/// The broker did not acknowledge a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// Not acknowledged in time, or the cluster could not be reached. It is
    /// not confirmed, but a record in flight when it failed may still have
    /// been stored, so readers are told to check rather than promised it is
    /// absent.
    #[error(
        "the broker did not acknowledge the write within {timeout:?} ({reason}). It is not \
         confirmed: unless the broker received it before failing it was not applied; read the \
         key to check. Is the broker reachable? (--write-timeout sets the bound)"
    )]
    Unavailable { timeout: Duration, reason: String },
    /// The broker refused the record itself (too large for it, not authorized…).
    #[error("the broker rejected the write: {0}")]
    Rejected(#[source] KafkaError),
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
        if self.stale.swap(false, Ordering::AcqRel) {
            self.replace_producer();
        }
        // librdkafka enforces message.timeout.ms only at a coarse granularity
        // (measured: a 2 s timeout fired after 5 to 11 s with the broker down),
        // so the bound callers rely on is this one; it includes the wait for
        // the window, which only acknowledgements and failures open.
        let delivered = tokio::time::timeout(self.timeout, async {
            let (started, _permit) = self.start(key, value).await?;
            match started.await {
                Ok(Ok(delivery)) => Ok(delivery),
                Ok(Err((error, _record))) => Err(error),
                Err(_canceled) => Err(KafkaError::Canceled),
            }
        });
        match delivered.await {
            Err(_) => {
                self.stale.store(true, Ordering::Release);
                Err(ProduceError::Unavailable {
                    timeout: self.timeout,
                    reason: "no acknowledgement in time".into(),
                })
            }
            Ok(Ok(delivery)) => Ok(Receipt {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err(error)) => Err(self.classify(error)),
        }
    }

    /// Hands the record to librdkafka through the window: its delivery, and
    /// the permit to drop once it is acknowledged or has failed.
    async fn start(
        &self,
        key: &[u8],
        value: Option<Bytes>,
    ) -> Result<(DeliveryFuture, Permit), KafkaError> {
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let producer = self.producer.read().clone();
        let topic = self.topic.clone();
        let key = Bytes::copy_from_slice(key);
        self.window.start(Box::new(move |permit| {
            if started_tx.is_closed() {
                // The writer gave up (timed out, or its client hung up) while
                // the record was held: it is not sent.
                return Some(permit);
            }
            let record = Outgoing {
                key: &key,
                value: value.as_deref(),
            };
            // Never blocks: a full librdkafka queue is an error at once.
            let started = producer
                .send_result(record.to_kafka(&topic))
                .map_err(|(error, _)| error);
            started_tx
                .send((started, permit))
                .err()
                .map(|(_, permit)| permit)
        }));
        let (started, permit) = started
            .await
            .expect("the window runs or keeps every job it is given");
        Ok((started?, permit))
    }

    fn classify(&self, error: KafkaError) -> ProduceError {
        use RDKafkaErrorCode::*;
        let code = error.rdkafka_error_code();
        // Failures after which this producer's idempotence state cannot be trusted.
        let poisoned = matches!(
            code,
            Some(
                Fatal
                    | MessageTimedOut
                    | Unknown
                    | OutOfOrderSequenceNumber
                    | UnknownProducerId
                    | InvalidProducerEpoch
                    | ProducerFenced
            )
        );
        // Failures of reaching or waiting for the cluster, not of the record.
        let transient = matches!(
            code,
            Some(
                QueueFull
                    | AllBrokersDown
                    | BrokerTransportFailure
                    | RequestTimedOut
                    | NotEnoughReplicas
                    | NotEnoughReplicasAfterAppend
                    | LeaderNotAvailable
                    | NotLeaderForPartition
            )
        );
        if poisoned {
            self.stale.store(true, Ordering::Release);
        }
        if poisoned || transient {
            ProduceError::Unavailable {
                timeout: self.timeout,
                reason: error.to_string(),
            }
        } else {
            ProduceError::Rejected(error)
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
