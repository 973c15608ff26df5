//! Start-up recovery: decides where the view starts and where its bootstrap
//! ends, before the reader consumes anything.
//!
//! 1. **Watermarks**: each partition's log start and end offset, from the
//!    log-side [`Offsets`] handle. The end offsets are the bootstrap targets.
//! 2. **Table**: memory, or the disk state under the data dir with the
//!    checkpoint its last run left.
//! 3. **Checkpoint judgement** ([`stale_checkpoint`]): resume only from a
//!    checkpoint of this same topic whose positions the log still covers
//!    and that is younger than the topic's `delete.retention.ms`; otherwise
//!    empty the disk state and say why.
//! 4. **Start positions**: the checkpoint's, or each partition's log start.

use std::time::SystemTime;

use tracing::{info, warn};

use crate::{
    config::{StateConfig, StoreConfig},
    error::Result,
    log::{
        offsets::{Offsets, Watermarks},
        topic::TopicInfo,
    },
    state::{
        Checkpoint, Table, View,
        table::{disk::DiskTable, memory::MemoryTable},
    },
};

/// The view, positioned where the reader must start, and bootstrapping
/// up to the end offsets seen now.
pub(crate) async fn recover(
    config: &StoreConfig,
    topic: &TopicInfo,
    offsets: &Offsets,
) -> Result<View> {
    let watermarks = offsets.watermarks(config.startup_timeout).await?;
    let targets: Vec<i64> = watermarks.iter().map(|(_, high)| *high).collect();
    let limits = (config.watch_buffer, config.watch_window_bytes);
    let (config, topic) = (config.clone(), topic.clone());
    let (table, positions, fresh) =
        tokio::task::spawn_blocking(move || open_table(&config, &topic, &watermarks))
            .await
            .expect("opening the table panicked")?;
    let view = View::new(table, positions.clone(), targets).with_change_limits(limits.0, limits.1);
    if fresh {
        // A log that no longer starts at 0 lost its first records to
        // compaction (or deletion): the ready rule's gap (docs/rmw.md). The
        // bootstrap target, the end offset as of now, is the rule's target.
        for (p, start) in positions.iter().enumerate() {
            if *start > 0 {
                view.mark_skipped(p as i32);
            }
        }
    }
    Ok(view)
}

/// The view's table and the offsets it holds everything below: a valid disk
/// checkpoint's, or each partition's log start for memory and for a disk
/// state being rebuilt (nothing below it exists, and starting there keeps an
/// empty partition whose records were deleted at its end); and whether the
/// table starts empty at the log start (`true`) rather than at a checkpoint.
fn open_table(
    config: &StoreConfig,
    topic: &TopicInfo,
    watermarks: &Watermarks,
) -> Result<(Box<dyn Table>, Vec<i64>, bool)> {
    let start: Vec<i64> = watermarks.iter().map(|(low, _)| (*low).max(0)).collect();
    let StateConfig::Disk(dir) = &config.state else {
        return Ok((Box::<MemoryTable>::default(), start, true));
    };
    let path = StateConfig::disk_path(dir, &config.topic);
    let (table, checkpoint) = DiskTable::open(&path)?;
    let path = path.display();
    match checkpoint {
        None => info!(%path, "no disk checkpoint yet: reading the whole topic"),
        Some(checkpoint) => {
            match stale_checkpoint(&checkpoint, topic, watermarks, SystemTime::now()) {
                None => {
                    info!(%path, positions = ?checkpoint.positions, "resuming from the disk checkpoint");
                    return Ok((Box::new(table), checkpoint.positions, false));
                }
                Some(reason) => {
                    warn!(%path, %reason, "rebuilding the disk state from the beginning of the topic");
                    metrics::counter!("kafkv_state_rebuilds_total").increment(1);
                }
            }
        }
    }
    table.reset(&Checkpoint {
        topic: config.topic.clone(),
        topic_id: topic.id.clone(),
        positions: start.clone(),
        saved_at: None,
    })?;
    Ok((Box::new(table), start, true))
}

/// Why resuming from `checkpoint` could miss or resurrect records, if it
/// could: the topic is not the one it was taken of, or the log no longer
/// holds every record (and tombstone) after it.
pub fn stale_checkpoint(
    checkpoint: &Checkpoint,
    topic: &TopicInfo,
    watermarks: &[(i64, i64)],
    now: SystemTime,
) -> Option<String> {
    match (&checkpoint.topic_id, &topic.id) {
        (Some(then), Some(now)) if then != now => {
            return Some(format!(
                "the topic was deleted and recreated (topic id {then} in the checkpoint, {now} now)"
            ));
        }
        (Some(then), None) => {
            return Some(format!(
                "the checkpoint is of topic id {then}, and the cluster did not say the topic's id \
                 now, so a recreated topic cannot be ruled out"
            ));
        }
        _ => {}
    }
    if checkpoint.positions.len() != watermarks.len() {
        return Some(format!(
            "the partition count changed from {} to {}",
            checkpoint.positions.len(),
            watermarks.len()
        ));
    }
    for (p, (position, (low, high))) in checkpoint.positions.iter().zip(watermarks).enumerate() {
        if position > high {
            return Some(format!(
                "partition {p}: the checkpoint is at offset {position}, beyond the end offset \
                 {high} (was the topic recreated or truncated?)"
            ));
        }
        if position < low {
            return Some(format!(
                "partition {p}: the checkpoint is at offset {position}, below the log start \
                 offset {low}: records in between were deleted"
            ));
        }
    }
    if let Some(age) = checkpoint
        .saved_at
        .and_then(|saved| now.duration_since(saved).ok())
        && age >= topic.delete_retention
    {
        return Some(format!(
            "the checkpoint is {}s old, beyond the topic's delete.retention.ms ({}s): \
             compaction may have removed tombstones written since",
            age.as_secs(),
            topic.delete_retention.as_secs()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn topic(id: Option<&str>) -> TopicInfo {
        TopicInfo {
            partitions: 2,
            id: id.map(Into::into),
            delete_retention: Duration::from_secs(3600),
            min_compaction_lag: Duration::ZERO,
        }
    }

    fn checkpoint(
        id: Option<&str>,
        positions: Vec<i64>,
        age: Duration,
        now: SystemTime,
    ) -> Checkpoint {
        Checkpoint {
            topic: "t".into(),
            topic_id: id.map(Into::into),
            positions,
            saved_at: Some(now - age),
        }
    }

    #[test]
    fn a_checkpoint_within_the_log_of_the_same_topic_is_resumed() {
        let now = SystemTime::now();
        let fresh = checkpoint(Some("A"), vec![5, 0], Duration::from_secs(60), now);
        assert_eq!(
            stale_checkpoint(&fresh, &topic(Some("A")), &[(0, 9), (0, 0)], now),
            None
        );
        // Without ids on either side, offsets decide.
        let no_id = checkpoint(None, vec![9, 0], Duration::ZERO, now);
        assert_eq!(
            stale_checkpoint(&no_id, &topic(Some("A")), &[(0, 9), (0, 3)], now),
            None
        );
    }

    #[test]
    fn each_rebuild_trigger_is_named() {
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        let cases = [
            (
                checkpoint(Some("A"), vec![1, 1], minute, now),
                Some("B"),
                vec![(0, 5), (0, 5)],
                "recreated",
            ),
            (
                checkpoint(Some("A"), vec![1], minute, now),
                Some("A"),
                vec![(0, 5), (0, 5)],
                "partition count changed from 1 to 2",
            ),
            (
                checkpoint(Some("A"), vec![1, 7], minute, now),
                Some("A"),
                vec![(0, 5), (0, 5)],
                "partition 1: the checkpoint is at offset 7, beyond the end offset 5",
            ),
            (
                checkpoint(Some("A"), vec![3, 1], minute, now),
                Some("A"),
                vec![(4, 5), (0, 5)],
                "partition 0: the checkpoint is at offset 3, below the log start offset 4",
            ),
            (
                checkpoint(Some("A"), vec![1, 1], Duration::from_secs(7200), now),
                Some("A"),
                vec![(0, 5), (0, 5)],
                "delete.retention.ms",
            ),
        ];
        for (checkpoint, id, watermarks, expected) in cases {
            let reason = stale_checkpoint(&checkpoint, &topic(id), &watermarks, now)
                .unwrap_or_else(|| panic!("{checkpoint:?} against {watermarks:?} must be stale"));
            assert!(reason.contains(expected), "{reason}");
        }
    }
}
