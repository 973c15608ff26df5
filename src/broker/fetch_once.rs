//! One read of a Fetch request: what kafkv's Fetch route
//! ([`super::long_poll`]) answers with, or holds until a produce.
//!
//! tansu 0.6's handler (`tansu-storage` `service/fetch.rs`) reads each
//! partition in a loop, going on from the offset it asked for plus the
//! number of records it got. After a compaction gap that falls inside what
//! it already returned, so one response held records twice; and each pass
//! of the loop re-ran the partition's record query, whose cost grows with
//! the distance to the partition's end (a bootstrap paid it twice per fetch
//! once [`super::fetch_budget`] cut answers to their encoded size). It also
//! ignored `partition_max_bytes`.
//!
//! Here each partition is read once: one storage fetch (the wrapper's: the
//! tail cache, else SQLite, cut to the budget) from the requested offset,
//! within the smaller of the partition's limit and what is left of the
//! request's, which tansu caps at 5 MiB. The partition's fields are those
//! tansu's handler sets, so clients see no other difference.

use tansu_sans_io::{
    ErrorCode, FetchRequest, FetchResponse, IsolationLevel,
    fetch_request::{FetchPartition, FetchTopic},
    fetch_response::{FetchableTopicResponse, PartitionData},
    record::deflated::Frame,
};
use tansu_storage::{Result, Storage, TopicId, Topition};

/// tansu's cap on a fetch's bytes, kept so responses stay the size
/// clients saw from it.
const MAX_BYTES: u32 = 5 * 1024 * 1024;

/// Reads every partition `request` asks for once.
pub async fn read<S: Storage>(storage: &S, request: &FetchRequest) -> Result<FetchResponse> {
    let isolation = request.isolation_level.map_or(
        Ok(IsolationLevel::ReadUncommitted),
        IsolationLevel::try_from,
    )?;
    let min_bytes = u32::try_from(request.min_bytes).unwrap_or(0);
    let mut budget = request.max_bytes.map_or(MAX_BYTES, |max| {
        u32::try_from(max).unwrap_or(0).min(MAX_BYTES)
    });
    let mut topics = Vec::new();
    for topic in request.topics.iter().flatten() {
        topics.push(read_topic(storage, topic, isolation, min_bytes, &mut budget).await?);
    }
    Ok(FetchResponse::default()
        .throttle_time_ms(Some(0))
        .error_code(Some(ErrorCode::None.into()))
        .session_id(Some(0))
        .node_endpoints(Some([].into()))
        .responses(Some(topics)))
}

async fn read_topic<S: Storage>(
    storage: &S,
    topic: &FetchTopic,
    isolation: IsolationLevel,
    min_bytes: u32,
    budget: &mut u32,
) -> Result<FetchableTopicResponse> {
    let id = match (&topic.topic, topic.topic_id) {
        (Some(name), _) => TopicId::Name(name.clone()),
        (None, Some(id)) => TopicId::Id(uuid::Uuid::from_bytes(id)),
        (None, None) => return Ok(unknown_topic(topic)),
    };
    let metadata = storage.metadata(Some(&[id])).await?;
    let Some((name, topic_id)) = metadata
        .topics()
        .first()
        .and_then(|found| Some((found.name.clone()?, found.topic_id)))
    else {
        return Ok(unknown_topic(topic));
    };
    let mut partitions = Vec::new();
    for partition in topic.partitions.iter().flatten() {
        let topition = Topition::new(name.as_str(), partition.partition);
        partitions.push(
            read_partition(storage, &topition, partition, isolation, min_bytes, budget).await?,
        );
    }
    Ok(FetchableTopicResponse::default()
        .topic(topic.topic.clone())
        .topic_id(topic_id)
        .partitions(Some(partitions)))
}

async fn read_partition<S: Storage>(
    storage: &S,
    topition: &Topition,
    partition: &FetchPartition,
    isolation: IsolationLevel,
    min_bytes: u32,
    budget: &mut u32,
) -> Result<PartitionData> {
    let limit = u32::try_from(partition.partition_max_bytes)
        .unwrap_or(0)
        .min(*budget);
    let batches = if limit == 0 {
        Vec::new()
    } else {
        storage
            .fetch(
                topition,
                partition.fetch_offset,
                min_bytes,
                limit,
                isolation,
            )
            .await?
            .into_iter()
            .filter(|batch| batch.record_count > 0)
            .collect()
    };
    let size: usize = batches.iter().map(|batch| batch.record_data.len()).sum();
    *budget = budget.saturating_sub(u32::try_from(size).unwrap_or(u32::MAX));
    let stage = storage.offset_stage(topition).await?;
    Ok(PartitionData::default()
        .partition_index(partition.partition)
        .error_code(ErrorCode::None.into())
        .high_watermark(stage.high_watermark())
        .last_stable_offset(Some(stage.last_stable()))
        .log_start_offset(Some(stage.log_start()))
        .aborted_transactions(Some([].into()))
        .preferred_read_replica(Some(-1))
        .records((!batches.is_empty()).then_some(Frame { batches })))
}

/// Every partition asked for, with UNKNOWN_TOPIC_OR_PARTITION.
fn unknown_topic(topic: &FetchTopic) -> FetchableTopicResponse {
    let partitions = topic.partitions.iter().flatten().map(|partition| {
        PartitionData::default()
            .partition_index(partition.partition)
            .error_code(ErrorCode::UnknownTopicOrPartition.into())
            .high_watermark(0)
            .last_stable_offset(Some(0))
            .log_start_offset(Some(-1))
            .aborted_transactions(Some([].into()))
            .preferred_read_replica(Some(-1))
    });
    FetchableTopicResponse::default()
        .topic(topic.topic.clone())
        .topic_id(topic.topic_id)
        .partitions(Some(partitions.collect()))
}
