//! `message.timestamp.type=LogAppendTime` on the embedded broker: tansu 0.6
//! stores every record with the timestamp its producer gave, whatever the
//! topic says. Kafka, for such a topic, stamps each batch with the broker's
//! clock when it appends it. kafkv relies on that (docs/rmw.md, "Timing"):
//! compaction measures `min.compaction.lag.ms` on record timestamps, so a
//! producer whose clock runs behind could otherwise make a hazardous record
//! look old enough to clean before its repair exists; and operations use the
//! record's timestamp as "now".
//!
//! [`stamp`] rewrites a produced batch's two header timestamps to the broker's
//! clock and recomputes its CRC, leaving the records (and their compression)
//! untouched: tansu stores each record at `base_timestamp + timestamp_delta`,
//! so every record of the batch is stored at the append time plus its
//! producer-relative delta (at most the producer's `linger.ms`, and never
//! negative for librdkafka, so a record only ever looks younger: the safe
//! side for compaction). Fetches rebuild batches from the stored rows, with
//! the timestamp type of the produced batch's attributes, which is left as
//! the producer sent it: a consumer reads the append time, reported as a
//! create time (Kafka reports `LogAppendTime`).
//!
//! [`TimestampTypes`] remembers each topic's setting, so a produce costs a
//! configuration lookup only the first time it meets a topic; creating,
//! deleting or altering a topic forgets it.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use crc_fast::CrcAlgorithm;
use tansu_sans_io::record::deflated;

/// The topic configuration this module honours.
pub const TIMESTAMP_TYPE: &str = "message.timestamp.type";

/// Per topic, whether the broker stamps produced batches with its own clock.
#[derive(Debug, Default)]
pub struct TimestampTypes {
    append_time: parking_lot::Mutex<HashMap<String, bool>>,
}

impl TimestampTypes {
    /// The setting of `topic`, if this broker has looked it up.
    pub fn known(&self, topic: &str) -> Option<bool> {
        self.append_time.lock().get(topic).copied()
    }

    pub fn remember(&self, topic: &str, append_time: bool) {
        self.append_time
            .lock()
            .insert(topic.to_owned(), append_time);
    }

    /// The topic was created, deleted or altered: look it up again.
    pub fn forget(&self, topic: &str) {
        self.append_time.lock().remove(topic);
    }

    /// A topic was deleted by id: look every topic up again.
    pub fn forget_all(&self) {
        self.append_time.lock().clear();
    }
}

/// Whether a topic configuration value means the broker's clock.
pub fn is_append_time(value: Option<&str>) -> bool {
    value.is_some_and(|value| value.eq_ignore_ascii_case("LogAppendTime"))
}

/// The CRC-32C Kafka's record batch carries: from `attributes` to the end of
/// the records.
fn crc(batch: &deflated::Batch) -> u32 {
    let mut covered = BytesMut::with_capacity(40 + batch.record_data.len());
    covered.put_i16(batch.attributes);
    covered.put_i32(batch.last_offset_delta);
    covered.put_i64(batch.base_timestamp);
    covered.put_i64(batch.max_timestamp);
    covered.put_i64(batch.producer_id);
    covered.put_i16(batch.producer_epoch);
    covered.put_i32(batch.base_sequence);
    covered.put_u32(batch.record_count);
    covered.put_slice(&batch.record_data);
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, &covered) as u32
}

/// `batch` as appended at `now_ms` by the broker's clock. A batch whose CRC
/// does not match its contents is returned as it came, for tansu to judge:
/// restamping it would hide the corruption behind a valid checksum.
pub fn stamp(mut batch: deflated::Batch, now_ms: i64) -> deflated::Batch {
    if crc(&batch) != batch.crc {
        return batch;
    }
    let span = batch
        .max_timestamp
        .saturating_sub(batch.base_timestamp)
        .max(0);
    batch.base_timestamp = now_ms;
    batch.max_timestamp = now_ms.saturating_add(span);
    batch.crc = crc(&batch);
    batch
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tansu_sans_io::record::{Record, inflated};

    use super::*;

    /// A batch as a producer builds it, encoded (and checksummed) by tansu.
    fn produced(base_timestamp: i64, deltas: &[i64]) -> deflated::Batch {
        let mut builder = inflated::Batch::builder()
            .base_timestamp(base_timestamp)
            .max_timestamp(base_timestamp + deltas.iter().max().unwrap())
            .last_offset_delta(deltas.len() as i32 - 1);
        for (i, delta) in deltas.iter().enumerate() {
            builder = builder.record(
                Record::builder()
                    .offset_delta(i as i32)
                    .timestamp_delta(*delta)
                    .key(Some(Bytes::from(format!("k{i}"))))
                    .value(Some(Bytes::from_static(b"v"))),
            );
        }
        deflated::Batch::try_from(builder.build().unwrap()).unwrap()
    }

    #[test]
    fn our_checksum_is_tansus() {
        let batch = produced(1_000, &[0, 3, 7]);
        assert_eq!(crc(&batch), batch.crc);
    }

    #[test]
    fn a_stamped_batch_carries_the_append_time_and_a_valid_checksum() {
        let batch = produced(1_000, &[0, 3, 7]);
        let stamped = stamp(batch.clone(), 5_000_000);
        assert_eq!(stamped.base_timestamp, 5_000_000);
        assert_eq!(stamped.max_timestamp, 5_000_007);
        assert_eq!(stamped.record_data, batch.record_data);
        assert_eq!(crc(&stamped), stamped.crc);
        assert_ne!(stamped.crc, batch.crc);
        // Decoded as tansu's storage decodes it: each record's timestamp is
        // the append time plus its delta.
        let inflated = inflated::Batch::try_from(stamped).unwrap();
        let times: Vec<i64> = inflated
            .records
            .iter()
            .map(|r| inflated.base_timestamp + r.timestamp_delta)
            .collect();
        assert_eq!(times, [5_000_000, 5_000_003, 5_000_007]);
    }

    #[test]
    fn a_corrupt_batch_is_left_for_tansu_to_judge() {
        let mut batch = produced(1_000, &[0]);
        batch.crc ^= 1;
        assert_eq!(stamp(batch.clone(), 5_000_000), batch);
    }

    #[test]
    fn only_log_append_time_means_the_brokers_clock() {
        assert!(is_append_time(Some("LogAppendTime")));
        assert!(!is_append_time(Some("CreateTime")));
        assert!(!is_append_time(None));
    }
}
