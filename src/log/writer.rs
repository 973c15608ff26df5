//! Appends puts and tombstones to the topic and returns where the broker put
//! them. A write counts as done only when the broker acknowledged it with
//! `acks=all`; the idempotent producer keeps retries from duplicating or
//! reordering records.

use std::time::Duration;

use parking_lot::RwLock;
use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord, Producer},
    types::RDKafkaErrorCode,
    util::Timeout,
};
use tracing::error;

use crate::{config::StoreConfig, error::WriteError};

/// Extra time beyond the write timeout before kafkv stops waiting on the
/// Kafka client itself (which enforces the timeout) and reports the write as
/// indeterminate. Only a misbehaving client ever hits it.
const CLIENT_GRACE: Duration = Duration::from_secs(5);

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub partition: i32,
    pub offset: i64,
}

/// The producer side of the store.
pub struct Writer {
    /// Replaced after a fatal idempotence error, which leaves a producer
    /// unusable; `FutureProducer` is a cheap handle, so senders clone it out.
    producer: RwLock<FutureProducer>,
    config: rdkafka::ClientConfig,
    topic: String,
    timeout: Duration,
}

impl Writer {
    pub fn new(config: &StoreConfig) -> Result<Self, KafkaError> {
        let timeout_ms = config.write_timeout.as_millis().max(1).to_string();
        let client = super::client_config(
            config,
            &[
                ("acks", "all".into()),
                ("enable.idempotence", "true".into()),
                // The Java client's partitioner, so every client agrees on a key's partition.
                ("partitioner", "murmur2_random".into()),
                // Latency first: send as soon as possible; batches still form
                // while earlier requests are in flight.
                ("linger.ms", "0".into()),
                ("message.timeout.ms", timeout_ms.clone()),
                ("request.timeout.ms", timeout_ms),
                ("message.max.bytes", super::max_record_bytes(config).to_string()),
            ],
        );
        Ok(Self {
            producer: RwLock::new(client.create()?),
            config: client,
            topic: config.topic.clone(),
            timeout: config.write_timeout,
        })
    }

    /// Produces `key` → `value` (`None`: a tombstone) and waits for the
    /// broker's acknowledgement, at most the write timeout.
    pub async fn send(&self, key: &[u8], value: Option<&[u8]>) -> Result<Receipt, WriteError> {
        let producer = self.producer.read().clone();
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivery = producer.send(record, Timeout::After(self.timeout));
        match tokio::time::timeout(self.timeout + CLIENT_GRACE, delivery).await {
            Err(_) => Err(WriteError::Indeterminate(self.timeout + CLIENT_GRACE)),
            Ok(Ok(delivery)) => Ok(Receipt {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((error, _))) => Err(self.classify(error)),
        }
    }

    fn classify(&self, error: KafkaError) -> WriteError {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => {
                error!(%error, "the producer hit a fatal error; replacing it");
                match self.config.create() {
                    Ok(fresh) => *self.producer.write() = fresh,
                    Err(e) => error!(%e, "could not create a new producer"),
                }
                WriteError::Unavailable {
                    timeout: self.timeout,
                    source: error,
                }
            }
            Some(
                RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::QueueFull
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NotEnoughReplicas
                | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition,
            ) => WriteError::Unavailable {
                timeout: self.timeout,
                source: error,
            },
            _ => WriteError::Rejected(error),
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
