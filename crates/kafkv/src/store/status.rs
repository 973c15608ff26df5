//! One snapshot of how this instance stands, computed in one place for every
//! front end: `/readyz` and `/metrics` over HTTP, `INFO` over RESP.

use crate::{log::offsets, state::Progress};

/// How one partition stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    /// The next offset to apply.
    pub position: i64,
    /// The end offset seen at start: bootstrap reads up to it.
    pub bootstrap_target: i64,
    /// High watermark (as the consumer last heard it) minus position; 0 when
    /// not heard yet.
    pub lag: i64,
}

/// How this instance stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub topic: String,
    /// Whether the start-up read finished (reads are served).
    pub ready: bool,
    /// Records applied by this process.
    pub records_applied: u64,
    /// Live keys, acknowledged writes not yet consumed included.
    pub keys: usize,
    /// Indexed by partition.
    pub partitions: Vec<PartitionStatus>,
}

impl Status {
    pub(crate) fn new(
        topic: &str,
        progress: Progress,
        high_watermarks: &[(i32, i64)],
        keys: usize,
    ) -> Self {
        let lag = offsets::lag(&progress.positions, high_watermarks);
        let partitions = progress
            .positions
            .iter()
            .zip(&progress.bootstrap.targets)
            .zip(lag)
            .map(|((position, target), lag)| PartitionStatus {
                position: *position,
                bootstrap_target: *target,
                lag,
            })
            .collect();
        Self {
            topic: topic.to_owned(),
            ready: progress.bootstrap.is_done(),
            records_applied: progress.records_applied,
            keys,
            partitions,
        }
    }

    pub fn positions(&self) -> Vec<i64> {
        self.partitions.iter().map(|p| p.position).collect()
    }

    pub fn bootstrap_targets(&self) -> Vec<i64> {
        self.partitions.iter().map(|p| p.bootstrap_target).collect()
    }
}
