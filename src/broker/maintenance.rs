//! Compaction on the embedded broker, with Kafka's two time limits.
//!
//! tansu 0.6 removes every superseded record at each maintenance run and
//! never removes a tombstone: `min.compaction.lag.ms` and
//! `delete.retention.ms` are stored but ignored. Conditional writes and TTL
//! will need recent history intact, and a store that never forgets deleted
//! keys grows without bound, so kafkv compacts its broker's `compact` topics
//! itself (tansu's own run is switched off in [`super::storage`]):
//!
//! - a record with a newer record for the same key in its partition is
//!   removed once both are at least `min.compaction.lag.ms` old: Kafka only
//!   cleans below its first uncleanable offset, so the record that supersedes
//!   another must itself be past the lag. The read-modify-write protocol
//!   relies on exactly that (docs/rmw.md, "Timing"): a put superseded only by
//!   a fresh, not yet repaired operation must stay;
//! - a tombstone that is the newest record for its key is removed once it is
//!   at least `delete.retention.ms` old (and never before the lag), unless it
//!   is its partition's last record (tansu derives the end offset from it).
//!
//! Ages come from the records' own timestamps, as Kafka's lag does. Offsets
//! are never reused: removal leaves gaps, which consumers skip as they do
//! after Kafka's cleaner.

use std::time::SystemTime;

use super::database::Database;

/// Kafka's default `delete.retention.ms` (24 h), for topics without one.
const DEFAULT_DELETE_RETENTION_MS: i64 = 86_400_000;

/// Records removed by one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub superseded: u64,
    pub tombstones: u64,
}

/// The `compact` topics' records with their lag and retention in ms.
const COMPACTED_RECORDS: &str = "
    record r
    JOIN topition tp ON tp.id = r.topition
    JOIN topic_configuration policy
      ON policy.topic = tp.topic AND policy.name = 'cleanup.policy'
     AND policy.value LIKE '%compact%'
    LEFT JOIN topic_configuration lag
      ON lag.topic = tp.topic AND lag.name = 'min.compaction.lag.ms'
    LEFT JOIN topic_configuration retention
      ON retention.topic = tp.topic AND retention.name = 'delete.retention.ms'";

const NEWER_RECORD_FOR_KEY: &str = "EXISTS (SELECT 1 FROM record n
     WHERE n.topition = r.topition AND n.k = r.k AND n.offset_id > r.offset_id)";

/// A record after this one in its partition. tansu 0.6 takes a partition's
/// end offset from its last record: removing that one moves the end offset
/// back (to 0 when it was the only record), so a fresh consumer stops short
/// and a fresh kafkv reports ready without the records before it. Kafka
/// never cleans its active segment either; a tombstone that is its
/// partition's last record waits for the next record.
const NEWER_RECORD_IN_PARTITION: &str = "EXISTS (SELECT 1 FROM record n
     WHERE n.topition = r.topition AND n.offset_id > r.offset_id)";

/// A newer record of the key that is itself past the lag (`?1` is now).
const CLEANABLE_NEWER_RECORD_FOR_KEY: &str = "EXISTS (SELECT 1 FROM record n
     WHERE n.topition = r.topition AND n.k = r.k AND n.offset_id > r.offset_id
       AND n.timestamp <= ?1 - coalesce(CAST(lag.value AS INTEGER), 0))";

fn superseded_sql() -> String {
    format!(
        "DELETE FROM record WHERE (topition, offset_id) IN (
           SELECT r.topition, r.offset_id FROM {COMPACTED_RECORDS}
           WHERE r.k IS NOT NULL
             AND r.timestamp <= ?1 - coalesce(CAST(lag.value AS INTEGER), 0)
             AND {CLEANABLE_NEWER_RECORD_FOR_KEY})"
    )
}

fn expired_tombstones_sql() -> String {
    format!(
        "DELETE FROM record WHERE (topition, offset_id) IN (
           SELECT r.topition, r.offset_id FROM {COMPACTED_RECORDS}
           WHERE r.k IS NOT NULL AND r.v IS NULL
             AND r.timestamp <= ?1 - max(
                   coalesce(CAST(lag.value AS INTEGER), 0),
                   coalesce(CAST(retention.value AS INTEGER), {DEFAULT_DELETE_RETENTION_MS}))
             AND NOT {NEWER_RECORD_FOR_KEY}
             AND {NEWER_RECORD_IN_PARTITION})"
    )
}

/// One compaction run over every `compact` topic, in one transaction.
pub async fn compact(database: &Database, now: SystemTime) -> Result<Compacted, libsql::Error> {
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let connection = database.connection();
    let transaction = connection
        .transaction_with_behavior(libsql::TransactionBehavior::Immediate)
        .await?;
    let superseded = transaction.execute(&superseded_sql(), [now_ms]).await?;
    let tombstones = transaction
        .execute(&expired_tombstones_sql(), [now_ms])
        .await?;
    transaction.commit().await?;
    Ok(Compacted {
        superseded,
        tombstones,
    })
}
