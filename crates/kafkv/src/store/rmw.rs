//! Read-modify-write on the library API: operations evaluated where their
//! record lands in the log, puts and deletes that report what they replaced,
//! and the check that the topic gives the protocol its timing margin
//! (docs/rmw.md).

use std::time::Duration;

use bytes::Bytes;

use super::{Store, WriteError};
use crate::{
    log::{topic::TopicInfo, writer::Receipt},
    op::{Op, Outcome},
    record::{Kind, Outgoing},
    state::Acknowledged,
};

/// How long a repair may take at the most once its key needs one: the
/// backstop's delay and jitter, a write timeout's worth of retries and
/// slack. The topic's compaction lag and tombstone retention must each be
/// [`SAFETY_FACTOR`] times this (docs/rmw.md, timing assumptions).
pub const REPAIR_DEADLINE: Duration = Duration::from_secs(6);

/// How many repair deadlines the lag and the retention must span.
pub const SAFETY_FACTOR: u32 = 4;

/// The least `min.compaction.lag.ms` and `delete.retention.ms` a topic
/// must have for read-modify-write commands: 24 s.
pub const MIN_TIMING_MARGIN: Duration =
    Duration::from_secs(REPAIR_DEADLINE.as_secs() * SAFETY_FACTOR as u64);

/// Why the topic's settings refuse read-modify-write, if they do.
pub fn timing_refusal(topic: &str, info: &TopicInfo) -> Option<String> {
    let setting = |name: &str, value: Duration| {
        format!(
            "topic '{topic}' has {name}={} ms, under the {} ms the protocol needs so that \
             nothing is compacted before it is repaired (docs/rmw.md). Fix: `kafka-configs \
             --bootstrap-server <broker> --alter --entity-type topics --entity-name {topic} \
             --add-config {name}={}` (or more)",
            value.as_millis(),
            MIN_TIMING_MARGIN.as_millis(),
            MIN_TIMING_MARGIN.as_millis(),
        )
    };
    if info.min_compaction_lag < MIN_TIMING_MARGIN {
        return Some(setting("min.compaction.lag.ms", info.min_compaction_lag));
    }
    if info.delete_retention < MIN_TIMING_MARGIN {
        return Some(setting("delete.retention.ms", info.delete_retention));
    }
    None
}

/// A write whose outcome the caller wanted, and where it landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub receipt: Receipt,
    pub outcome: Outcome,
}

impl Store {
    /// Runs `op` on `key`: writes an operation record and returns its
    /// outcome, evaluated at the record's offset as on every instance. The
    /// log's order is the linearization order.
    pub async fn apply_op(&self, key: &[u8], op: Op) -> Result<Applied, WriteError> {
        self.validate(key, op_value(&op))?;
        if let Some(refusal) = &self.shared.rmw_refusal {
            return Err(WriteError::Unsafe(refusal.clone()));
        }
        self.write_awaited(Outgoing::op(Bytes::copy_from_slice(key), &op))
            .await
    }

    /// Puts `value` (or deletes, `None`) and returns what it replaced:
    /// `GETSET`, `GETDEL`, `SET … GET`. The record is a plain put or
    /// tombstone; only the reply waits for this instance to apply it.
    pub async fn replace(&self, key: &[u8], value: Option<Bytes>) -> Result<Applied, WriteError> {
        self.validate(key, value.as_deref())?;
        self.write_awaited(Outgoing::plain(Bytes::copy_from_slice(key), value))
            .await
    }

    /// Puts `value` expiring at `deadline` (`SET … EX|PX|EXAT|PXAT`,
    /// `SETEX`, HTTP `?ttl=`): a plain put carrying `kafkv.ttl` or
    /// `kafkv.expires-at`, which every instance resolves against the
    /// record's timestamp (docs/expiry.md). It returns once this instance has
    /// applied it, with what it replaced (the expiry needs the record's time,
    /// which only the consumer knows). A relative `deadline` must be positive.
    pub async fn put_expiring(
        &self,
        key: &[u8],
        value: Bytes,
        deadline: crate::op::Deadline,
    ) -> Result<Applied, WriteError> {
        self.check_expiring_put(key, &value, deadline)?;
        let writer = self.shared.view.instance_id();
        self.write_awaited(Outgoing::put_expiring(
            Bytes::copy_from_slice(key),
            value,
            deadline,
            writer,
        ))
        .await
    }

    /// [`Store::put_expiring`] answered at the broker's acknowledgement, as
    /// [`Store::put`] is, for callers that need no more than "stored" (`SET
    /// … EX`, `SETEX`): an unconditional put always takes effect. Until the
    /// consumer applies the record, this instance reads the value with an
    /// expiry counted from the local time of the acknowledgement (late by
    /// the produce latency at most, never early); every decision still
    /// takes the exact one from the record's timestamp.
    pub async fn put_expiring_acked(
        &self,
        key: &[u8],
        value: Bytes,
        deadline: crate::op::Deadline,
    ) -> Result<Receipt, WriteError> {
        self.check_expiring_put(key, &value, deadline)?;
        let _in_flight = self.begin_write()?;
        let view = &self.shared.view;
        let record = Outgoing::put_expiring(
            Bytes::copy_from_slice(key),
            value.clone(),
            deadline,
            view.instance_id(),
        );
        let receipt = self.shared.writer.send_record(record).await?;
        let expires_at = match deadline {
            crate::op::Deadline::In(ms) => crate::state::now_ms().saturating_add(ms),
            crate::op::Deadline::At(at) => at,
        };
        view.acknowledge_expiring(key, value, expires_at, receipt.partition, receipt.offset);
        Ok(receipt)
    }

    fn check_expiring_put(
        &self,
        key: &[u8],
        value: &Bytes,
        deadline: crate::op::Deadline,
    ) -> Result<(), WriteError> {
        self.validate(key, Some(value))?;
        if let Some(refusal) = &self.shared.rmw_refusal {
            return Err(WriteError::Unsafe(refusal.clone()));
        }
        if matches!(deadline, crate::op::Deadline::In(ms) if ms <= 0) {
            return Err(WriteError::Input(super::InputError::InvalidExpiry));
        }
        Ok(())
    }

    /// The operation limits every instance evaluates with: this instance's
    /// value bound, carried in the record.
    pub fn max_value_len(&self) -> u64 {
        self.shared.config.max_value_bytes as u64
    }

    async fn write_awaited(&self, mut record: Outgoing) -> Result<Applied, WriteError> {
        let _in_flight = self.begin_write()?;
        // Only an instance that holds the whole log can compute a reply that
        // agrees with every other instance's.
        if !self.is_ready() {
            let progress = self.progress();
            return Err(WriteError::NotReady(format!(
                "applied offsets {:?} of {:?}",
                progress.positions, progress.bootstrap.targets
            )));
        }
        let view = &self.shared.view;
        let (id, outcome) = view.register_waiter();
        record.id = Some(id);
        let acknowledged = match &record.kind {
            // A put with an expiry, and a SWEEP, are resolved at the
            // record's timestamp: only the consumer knows it.
            Kind::Plain if record.expiry.is_some() => Acknowledged::Other,
            Kind::Sweep { .. } => Acknowledged::Other,
            Kind::Plain => Acknowledged::Plain {
                key: record.key.clone(),
                value: record.value.clone(),
            },
            Kind::Op(Op::Batch(_)) => Acknowledged::Other,
            Kind::Op(op) => Acknowledged::Op {
                key: record.key.clone(),
                op: op.clone(),
            },
            Kind::Repair { .. } => Acknowledged::Repair,
        };
        let receipt = match self.shared.writer.send_record(record).await {
            Ok(receipt) => receipt,
            Err(error) => {
                view.forget_waiter(id);
                return Err(error.into());
            }
        };
        let unknown = |reason: String| WriteError::OutcomeUnknown {
            partition: receipt.partition,
            offset: receipt.offset,
            reason,
        };
        // The fast path: every record before this one is known here.
        match view.outcome_at_ack(id, acknowledged, receipt.partition, receipt.offset) {
            Ok(Some(outcome)) => {
                metrics::counter!("kafkv_rmw_replies_total", "at" => "acknowledgement")
                    .increment(1);
                return Ok(Applied { receipt, outcome });
            }
            Ok(None) => {}
            // The table could not be read: the consumer will tell.
            Err(error) => tracing::warn!(%error, "could not evaluate a write at acknowledgement"),
        }
        let timeout = self.shared.config.read_timeout;
        let acknowledged_at = std::time::Instant::now();
        match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(delivered)) if delivered.exact => {
                // Answered by the consumer, or by the acknowledgement of an
                // earlier own record that completed what this one needed.
                metrics::counter!("kafkv_rmw_replies_total", "at" => "later").increment(1);
                metrics::histogram!("kafkv_rmw_reply_after_ack_seconds")
                    .record(acknowledged_at.elapsed().as_secs_f64());
                Ok(Applied {
                    receipt,
                    outcome: delivered.outcome,
                })
            }
            Ok(Ok(_)) => Err(unknown(
                "this instance skipped compacted offsets before it and is catching up".into(),
            )),
            Ok(Err(_closed)) => Err(unknown("the store closed".into())),
            Err(_elapsed) => {
                view.forget_waiter(id);
                Err(unknown(format!(
                    "this instance did not apply it within {timeout:?} (--read-timeout)"
                )))
            }
        }
    }
}

/// The value an operation may store at most, for validation.
fn op_value(op: &Op) -> Option<&[u8]> {
    match op {
        Op::Set { value, .. } | Op::SetEx { value, .. } => Some(value),
        Op::Append { suffix, .. } => Some(suffix),
        Op::SetRange { bytes, .. } => Some(bytes),
        _ => None,
    }
}

impl Store {
    /// Runs a multi-key batch atomically: its steps run, in order, only if
    /// every condition holds where its record lands in the log. The record
    /// is keyed by the first key the batch writes (else its first key), and
    /// every key must be in that key's partition: on a topic of more than
    /// one partition, all keys must be the same key (kafkv does not compute
    /// the producer's partitioner to prove two keys share a partition).
    pub async fn apply_batch(&self, batch: crate::op::Batch) -> Result<Applied, WriteError> {
        let keys = batch.keys();
        let anchor = batch
            .steps
            .iter()
            .find(|(_, op)| op.is_some())
            .map(|(key, _)| key)
            .or(keys.first().copied())
            .cloned()
            .ok_or(crate::store::InputError::EmptyBatch)?;
        for key in &keys {
            self.validate(key, None)?;
        }
        for (_, op) in &batch.steps {
            if let Some(op) = op {
                self.validate(&anchor, op_value(op))?;
            }
        }
        if self.partitions() > 1 && keys.iter().any(|key| **key != anchor) {
            return Err(crate::store::InputError::CrossPartition {
                partitions: self.partitions(),
            }
            .into());
        }
        if let Some(refusal) = &self.shared.rmw_refusal {
            return Err(WriteError::Unsafe(refusal.clone()));
        }
        let record = Outgoing::op(anchor, &Op::Batch(batch));
        // The whole batch is one record: bound it as a value is bounded, so
        // that it is refused here, nothing written, rather than by the broker.
        let len = record.value.as_ref().map_or(0, |value| value.len());
        let max = self.shared.config.max_value_bytes;
        if len > max {
            return Err(crate::store::InputError::BatchTooLarge { len, max }.into());
        }
        self.write_awaited(record).await
    }
}
