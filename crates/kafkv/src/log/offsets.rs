//! The log-side handle that asks the brokers where each partition begins and
//! ends: start-up recovery uses it to judge a checkpoint and to know where
//! bootstrap ends, strong reads to know what to catch up with.
//!
//! It owns its own client, separate from the tailing consumer (whose thread
//! owns that one), and every query blocks on a broker round trip, so the async
//! entry points run it on the blocking pool.

use std::{sync::Arc, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
};

use crate::config::StoreConfig;

/// Each partition's `(log start offset, high watermark)`.
pub type Watermarks = Vec<(i64, i64)>;

/// Queries the topic's offsets; cheap to clone.
#[derive(Clone)]
pub struct Offsets {
    consumer: Arc<BaseConsumer>,
    topic: String,
    partitions: i32,
}

impl Offsets {
    pub fn new(config: &StoreConfig, partitions: i32) -> Result<Self, KafkaError> {
        Ok(Self {
            consumer: Arc::new(super::client::client_config(config, &[]).create()?),
            topic: config.topic.clone(),
            partitions,
        })
    }

    /// Each partition's (log start, high watermark); blocks.
    fn watermarks_blocking(&self, timeout: Duration) -> Result<Watermarks, KafkaError> {
        (0..self.partitions)
            .map(|p| self.consumer.fetch_watermarks(&self.topic, p, timeout))
            .collect()
    }

    /// Each partition's (log start, high watermark).
    pub async fn watermarks(&self, timeout: Duration) -> Result<Watermarks, KafkaError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.watermarks_blocking(timeout))
            .await
            .expect("watermarks task panicked")
    }

    /// Each partition's high watermark: the offset the next record will get.
    pub async fn end_offsets(&self, timeout: Duration) -> Result<Vec<i64>, KafkaError> {
        Ok(self
            .watermarks(timeout)
            .await?
            .into_iter()
            .map(|(_, high)| high)
            .collect())
    }
}

/// How far `positions` (the next offset to apply, per partition) trail
/// `high_watermarks` (`(partition, high watermark)` pairs, as the consumer's
/// statistics report them); a partition without a reported watermark has lag 0.
pub fn lag(positions: &[i64], high_watermarks: &[(i32, i64)]) -> Vec<i64> {
    positions
        .iter()
        .enumerate()
        .map(|(p, position)| {
            high_watermarks
                .iter()
                .find(|(partition, _)| *partition as usize == p)
                .map_or(0, |(_, high)| (high - position).max(0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::lag;

    #[test]
    fn lag_is_per_partition_and_never_negative() {
        assert_eq!(lag(&[5, 3, 9], &[(0, 7), (2, 4)]), vec![2, 0, 0]);
        assert_eq!(lag(&[], &[(0, 7)]), Vec::<i64>::new());
    }
}
