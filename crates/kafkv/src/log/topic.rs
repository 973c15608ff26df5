//! Creates the topic if it is missing and checks that an existing one is
//! compacted, so kafkv never runs on a topic that may drop live keys; learns
//! its partition count and Kafka topic id (which tells a recreated topic of
//! the same name from the one a disk checkpoint was taken of).

use std::time::{Duration, Instant};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaErrorCode,
};
use tracing::{info, warn};

use crate::{
    config::{DEFAULT_DELETE_RETENTION, StoreConfig},
    error::Result,
};

/// The topic is missing, unusable or not compacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error(
        "topic '{topic}' has cleanup.policy={policy}, so Kafka may delete the latest value of a key \
         and kafkv would lose data. Fix: `kafka-configs --bootstrap-server <broker> --alter --entity-type topics --entity-name {topic} \
         --add-config cleanup.policy=compact`, or point kafkv at another topic with --topic, or start \
         with --allow-non-compacted if you accept the loss"
    )]
    NotCompacted { topic: String, policy: String },
    #[error(
        "could not reach the Kafka brokers at {brokers} within {waited:?} ({reason}); \
         check --brokers and that the brokers are up"
    )]
    Unreachable {
        brokers: String,
        waited: Duration,
        reason: String,
    },
    #[error("could not create topic '{topic}': {reason}")]
    Create { topic: String, reason: String },
    #[error("could not read the configuration of topic '{topic}': {reason}")]
    Describe { topic: String, reason: String },
    #[error(
        "topic '{topic}' has no partitions in the cluster metadata after {waited:?}; \
         is the broker at the configured --brokers reachable?"
    )]
    NoPartitions { topic: String, waited: Duration },
}

/// What start-up learned about the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub partitions: i32,
    /// Kafka's id for this incarnation of the topic (base64), where the
    /// cluster reports one.
    pub id: Option<String>,
    /// `delete.retention.ms`: how long compaction keeps a tombstone. A disk
    /// checkpoint older than this may have missed deletes.
    pub delete_retention: Duration,
    /// `min.compaction.lag.ms`: how long a superseded record is kept.
    pub min_compaction_lag: Duration,
}

/// The topic's retention settings, as created or read back.
struct Retention {
    delete_retention: Duration,
    min_compaction_lag: Duration,
}

/// Makes sure the topic exists and is compacted; returns its partition count
/// and id.
pub async fn ensure(config: &StoreConfig) -> Result<TopicInfo> {
    let admin: AdminClient<DefaultClientContext> =
        super::client::client_config(config, &[]).create()?;
    let options = AdminOptions::new()
        .operation_timeout(Some(config.startup_timeout))
        .request_timeout(Some(config.startup_timeout));
    let topic = &config.topic;
    let replication = TopicReplication::Fixed(config.replication_factor.unwrap_or(-1));
    let (lag_ms, retention_ms) = (
        config.min_compaction_lag.as_millis().to_string(),
        config.delete_retention.as_millis().to_string(),
    );
    let new_topic = NewTopic::new(topic, config.partitions, replication)
        .set("cleanup.policy", "compact")
        .set("min.compaction.lag.ms", &lag_ms)
        .set("delete.retention.ms", &retention_ms)
        // Record times from the broker's clock, not each producer's: compaction
        // measures min.compaction.lag.ms on them, and operations read them as
        // "now" (docs/rmw.md, "Timing").
        .set("message.timestamp.type", "LogAppendTime");
    let created = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| unreachable(config, e.to_string()))?;
    let retention = match created.into_iter().next() {
        Some(Ok(_)) => {
            info!(
                %topic,
                partitions = config.partitions,
                min_compaction_lag_ms = lag_ms,
                delete_retention_ms = retention_ms,
                "created compacted topic"
            );
            Retention {
                delete_retention: config.delete_retention,
                min_compaction_lag: config.min_compaction_lag,
            }
        }
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
            let retention = check_compacted(&admin, &options, config).await?;
            info!(
                %topic,
                min_compaction_lag_ms = retention.min_compaction_lag.as_millis() as u64,
                delete_retention_ms = retention.delete_retention.as_millis() as u64,
                "using the existing topic's retention settings"
            );
            retention
        }
        Some(Err((
            _,
            code @ (RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::RequestTimedOut),
        ))) => {
            return Err(unreachable(config, code.to_string()));
        }
        Some(Err((_, code))) => {
            return Err(TopicError::Create {
                topic: topic.clone(),
                reason: code.to_string(),
            }
            .into());
        }
        None => {
            return Err(TopicError::Create {
                topic: topic.clone(),
                reason: "the broker returned no result".into(),
            }
            .into());
        }
    };
    let partitions = partition_count(config).await?;
    if partitions != config.partitions {
        info!(%topic, partitions, "using the existing topic's partition count (--partitions applies only when kafkv creates the topic)");
    }
    let (name, timeout) = (topic.clone(), config.startup_timeout);
    let id = tokio::task::spawn_blocking(move || topic_id(&admin, &name, timeout))
        .await
        .expect("describe topic task panicked");
    Ok(TopicInfo {
        partitions,
        id,
        delete_retention: retention.delete_retention,
        min_compaction_lag: retention.min_compaction_lag,
    })
}

/// The topic's id from librdkafka's DescribeTopics, which rust-rdkafka does
/// not wrap. `None` when the cluster does not report one (brokers before
/// Kafka 2.8, or an error): the checkpoint check then relies on offsets only.
fn topic_id(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Option<String> {
    use rdkafka::bindings as rd;
    use std::ffi::{CStr, CString};

    let name = CString::new(topic).ok()?;
    let client = admin.inner().native_ptr();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: every pointer passed comes from librdkafka or lives (as `name`
    // does) until this function returns; every object created here is
    // destroyed exactly once below, the result's contents (read through the
    // event) before the event itself.
    unsafe {
        let mut names = [name.as_ptr()];
        let topics = rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        let options = rd::rd_kafka_AdminOptions_new(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(client);
        rd::rd_kafka_DescribeTopics(client, topics, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let mut id = None;
        if !event.is_null()
            && rd::rd_kafka_event_error(event)
                == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let result = rd::rd_kafka_event_DescribeTopics_result(event);
            let mut count = 0;
            let descriptions = if result.is_null() {
                std::ptr::null_mut()
            } else {
                rd::rd_kafka_DescribeTopics_result_topics(result, &mut count)
            };
            if !descriptions.is_null() && count == 1 {
                let description = *descriptions;
                if rd::rd_kafka_TopicDescription_error(description).is_null() {
                    let uuid = rd::rd_kafka_TopicDescription_topic_id(description);
                    if !uuid.is_null() {
                        let text = rd::rd_kafka_Uuid_base64str(uuid);
                        if !text.is_null() {
                            id = Some(CStr::from_ptr(text).to_string_lossy().into_owned());
                        }
                    }
                }
            }
        }
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_TopicCollection_destroy(topics);
        // The all-zero id means "no id" in Kafka's protocol.
        id.filter(|id| id != "AAAAAAAAAAAAAAAAAAAAAA")
    }
}

fn unreachable(config: &StoreConfig, reason: String) -> crate::Error {
    TopicError::Unreachable {
        brokers: config.brokers.clone(),
        waited: config.startup_timeout,
        reason,
    }
    .into()
}

/// Checks the cleanup policy; returns the retention settings.
async fn check_compacted(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    config: &StoreConfig,
) -> Result<Retention> {
    let topic = &config.topic;
    let describe_error = |reason: String| TopicError::Describe {
        topic: topic.clone(),
        reason,
    };
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], options)
        .await
        .map_err(|e| describe_error(e.to_string()))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| describe_error("no result".into()))?
        .map_err(|code| describe_error(code.to_string()))?;
    // Kafka's default policy is `delete`; a broker that omits the entry uses it.
    let policy = resource
        .get("cleanup.policy")
        .and_then(|entry| entry.value.clone())
        .unwrap_or_else(|| "delete".to_owned());
    let millis = |name: &str| {
        resource
            .get(name)
            .and_then(|entry| entry.value.as_deref()?.parse().ok())
            .map(Duration::from_millis)
    };
    let retention = Retention {
        // Kafka's defaults where the topic does not say: a day, and 0 (any
        // superseded record may go).
        delete_retention: millis("delete.retention.ms").unwrap_or(DEFAULT_DELETE_RETENTION),
        min_compaction_lag: millis("min.compaction.lag.ms").unwrap_or(Duration::ZERO),
    };
    let timestamp_type = resource
        .get("message.timestamp.type")
        .and_then(|entry| entry.value.clone())
        .unwrap_or_else(|| "CreateTime".to_owned());
    if timestamp_type != "LogAppendTime" {
        warn!(
            %topic,
            timestamp_type,
            "the topic's record times come from each producer's clock \
             (message.timestamp.type={timestamp_type}); compaction and read-modify-write \
             operations rely on them, so keep producers' clocks in sync, or set \
             message.timestamp.type=LogAppendTime on the topic"
        );
    }
    if policy.split(',').any(|p| p.trim() == "compact") {
        return Ok(retention);
    }
    let refused = TopicError::NotCompacted {
        topic: topic.clone(),
        policy,
    };
    if config.allow_non_compacted {
        warn!("{refused}; starting anyway because of --allow-non-compacted");
        Ok(retention)
    } else {
        Err(refused.into())
    }
}

/// The topic's partition count from cluster metadata, waiting for a freshly
/// created topic to appear.
pub async fn partition_count(config: &StoreConfig) -> Result<i32> {
    let consumer: BaseConsumer = super::client::client_config(config, &[]).create()?;
    let topic = config.topic.clone();
    let timeout = config.startup_timeout;
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5));
            if let Ok(metadata) = &metadata
                && let Some(t) = metadata.topics().iter().find(|t| t.name() == topic)
                && t.error().is_none()
                && !t.partitions().is_empty()
            {
                return Ok(t.partitions().len() as i32);
            }
            if started.elapsed() > timeout {
                return Err(TopicError::NoPartitions {
                    topic,
                    waited: timeout,
                }
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .expect("metadata task panicked")
}
