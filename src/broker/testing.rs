//! What the broker's unit tests share: a storage opened as the broker opens
//! it, and a compacted topic on it.

use std::path::Path;

use tansu_sans_io::{
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    record::{Record, deflated},
};
use tansu_storage::Storage as _;

use super::{BrokerPaths, CLUSTER_ID, build_storage, storage::KafkvStorage, storage_url};

/// The storage the broker would build on `path` with `paths`, registered as
/// the broker registers itself at start (the cluster's row, which every
/// later call joins on). Acknowledgements do not wait for an fsync.
pub async fn open(path: &Path, paths: BrokerPaths) -> KafkvStorage {
    let cwd = std::env::current_dir().expect("a working directory");
    let url = storage_url(path, &cwd).expect("a URL");
    let listener = url::Url::parse("tcp://127.0.0.1:9092").expect("a URL");
    let storage = build_storage(url, listener, path, paths, false)
        .await
        .expect("storage");
    storage
        .register_broker(tansu_storage::BrokerRegistrationRequest {
            broker_id: tansu_broker::NODE_ID,
            cluster_id: CLUSTER_ID.into(),
            incarnation_id: uuid::Uuid::new_v4(),
            rack: None,
        })
        .await
        .expect("registered");
    storage
}

fn config(name: &str, value: &str) -> CreatableTopicConfig {
    CreatableTopicConfig::default()
        .name(name.into())
        .value(Some(value.into()))
}

/// `topic`, one partition, compacted at every run.
pub async fn create_compacted_topic(storage: &KafkvStorage, topic: &str) {
    let topic = CreatableTopic::default()
        .name(topic.into())
        .num_partitions(1)
        .replication_factor(1)
        .configs(Some(vec![
            config("cleanup.policy", "compact"),
            config("min.compaction.lag.ms", "0"),
            config("delete.retention.ms", "0"),
        ]));
    storage.create_topic(topic, false).await.expect("a topic");
}

/// The offsets of the records in `batches`, in order.
pub fn offsets_in<'a>(batches: impl IntoIterator<Item = &'a deflated::Batch>) -> Vec<i64> {
    batches
        .into_iter()
        .flat_map(|batch| {
            Vec::<Record>::try_from(batch)
                .expect("decodes")
                .into_iter()
                .map(|record| batch.base_offset + i64::from(record.offset_delta))
        })
        .collect()
}
