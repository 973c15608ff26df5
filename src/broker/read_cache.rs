//! The fetch path's bookkeeping reads, answered from memory.
//!
//! Besides the records, tansu 0.6's fetch handler asks storage for the
//! topic's metadata and each partition's offset stage on every fetch, and
//! its SQLite engine prepares every statement afresh each time: a profile
//! of the broker under RESP `SET` with one tailing consumer put 41% of its
//! CPU in `sqlite3_prepare_v2` (docs/design.md, "(l) The fetch path without
//! SQLite"). With the tail cache answering the records, these two reads
//! were most of what was left. They change only when the wrapper sees them
//! change:
//!
//! - an offset stage moves when a batch is produced to its partition, when
//!   compaction removes records, and when a transaction ends;
//! - metadata changes when a topic is created, altered or deleted, or the
//!   broker registers.
//!
//! **Invariant:** a cached value is never older than the last change the
//! wrapper completed. Each partition's stage carries a generation, bumped
//! by every change; a read from storage is kept only if no change completed
//! between the moment it began and the moment it is stored. A read
//! concurrent with a change may return either side of it, as an uncached
//! read would.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
};

use parking_lot::Mutex;
use tansu_storage::{MetadataResponse, OffsetStage, TopicId, Topition};

#[derive(Debug, Default)]
struct Slot<T> {
    generation: u64,
    value: Option<T>,
}

/// Offset stages per partition and metadata per topic list.
#[derive(Debug, Default)]
pub struct ReadCache {
    stages: Mutex<HashMap<Topition, Slot<OffsetStage>>>,
    /// Bumped by every change to any stage (compaction, transactions).
    stages_generation: AtomicU64,
    metadata: Mutex<Slot<HashMap<String, MetadataResponse>>>,
}

/// What a reader noted before reading storage, to store what it read.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    partition: u64,
    all: u64,
}

impl ReadCache {
    /// The cached stage of `topition`, or the ticket to store one read now.
    pub fn stage(&self, topition: &Topition) -> Result<OffsetStage, Ticket> {
        let all = self.stages_generation.load(Ordering::Acquire);
        let mut stages = self.stages.lock();
        let slot = stages.entry(topition.clone()).or_default();
        slot.value.ok_or(Ticket {
            partition: slot.generation,
            all,
        })
    }

    /// Keeps `stage`, read from storage after `ticket` was taken, unless a
    /// change completed since.
    pub fn store_stage(&self, topition: &Topition, ticket: Ticket, stage: OffsetStage) {
        let mut stages = self.stages.lock();
        if self.stages_generation.load(Ordering::Acquire) != ticket.all {
            return;
        }
        if let Some(slot) = stages.get_mut(topition)
            && slot.generation == ticket.partition
        {
            slot.value = Some(stage);
        }
    }

    /// `topition`'s stage moved (a produce completed).
    pub fn stage_changed(&self, topition: &Topition) {
        let mut stages = self.stages.lock();
        let slot = stages.entry(topition.clone()).or_default();
        slot.generation += 1;
        slot.value = None;
    }

    /// `topition`'s stage is now `stage`: kafkv's produce path committed,
    /// and knows what storage holds.
    pub fn set_stage(&self, topition: &Topition, stage: OffsetStage) {
        let mut stages = self.stages.lock();
        let slot = stages.entry(topition.clone()).or_default();
        slot.generation += 1;
        slot.value = Some(stage);
    }

    /// Every stage may have moved (compaction, a transaction's end, a topic
    /// created or deleted).
    pub fn stages_changed(&self) {
        let mut stages = self.stages.lock();
        self.stages_generation.fetch_add(1, Ordering::AcqRel);
        stages.clear();
    }

    /// The cached metadata for `topics`, or the ticket to store it.
    pub fn metadata(&self, topics: Option<&[TopicId]>) -> Result<MetadataResponse, (u64, String)> {
        let key = format!("{topics:?}");
        let cache = self.metadata.lock();
        match cache.value.as_ref().and_then(|cached| cached.get(&key)) {
            Some(response) => Ok(response.clone()),
            None => Err((cache.generation, key)),
        }
    }

    /// Keeps `response` unless metadata changed since `ticket`.
    pub fn store_metadata(&self, (generation, key): (u64, String), response: MetadataResponse) {
        let mut cache = self.metadata.lock();
        if cache.generation == generation {
            cache.value.get_or_insert_default().insert(key, response);
        }
    }

    /// A topic was created or deleted: its metadata and stages.
    pub fn topics_changed(&self) {
        self.metadata_changed();
        self.stages_changed();
    }

    /// Topics or brokers changed.
    pub fn metadata_changed(&self) {
        let mut cache = self.metadata.lock();
        cache.generation += 1;
        cache.value = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage_of(json: &str) -> OffsetStage {
        serde_json::from_str(json).expect("an offset stage")
    }

    #[test]
    fn a_stage_read_before_a_change_is_not_kept_after_it() {
        let cache = ReadCache::default();
        let topition = Topition::new("t", 0);
        let old = stage_of(r#"{"last_stable":1,"high_watermark":1,"log_start":0}"#);
        let new = stage_of(r#"{"last_stable":2,"high_watermark":2,"log_start":0}"#);
        // Read, store, then served from memory.
        let ticket = cache.stage(&topition).expect_err("nothing cached");
        cache.store_stage(&topition, ticket, old);
        assert_eq!(cache.stage(&topition).expect("cached"), old);
        // A produce completes: the stage is read again.
        cache.stage_changed(&topition);
        let ticket = cache.stage(&topition).expect_err("forgotten");
        // A read that began before the next change is dropped.
        cache.stage_changed(&topition);
        cache.store_stage(&topition, ticket, old);
        assert!(cache.stage(&topition).is_err(), "a stale read was kept");
        let ticket = cache.stage(&topition).expect_err("nothing cached");
        cache.stages_changed();
        cache.store_stage(&topition, ticket, old);
        assert!(cache.stage(&topition).is_err(), "kept across compaction");
        let ticket = cache.stage(&topition).expect_err("nothing cached");
        cache.store_stage(&topition, ticket, new);
        assert_eq!(cache.stage(&topition).expect("cached"), new);
        // Another partition's change leaves this one alone.
        cache.stage_changed(&Topition::new("t", 1));
        assert_eq!(cache.stage(&topition).expect("cached"), new);
    }

    #[test]
    fn metadata_read_before_a_topic_change_is_not_kept() {
        let cache = ReadCache::default();
        let topics = [TopicId::Name("t".into())];
        let ticket = cache.metadata(Some(&topics)).expect_err("nothing cached");
        cache.store_metadata(ticket, MetadataResponse::default());
        assert!(cache.metadata(Some(&topics)).is_ok());
        assert!(cache.metadata(None).is_err(), "another topic list");
        let ticket = cache.metadata(None).expect_err("not cached");
        cache.metadata_changed();
        cache.store_metadata(ticket, MetadataResponse::default());
        assert!(cache.metadata(None).is_err(), "a stale read was kept");
        assert!(
            cache.metadata(Some(&topics)).is_err(),
            "a change forgets all"
        );
    }
}
