//! Creates the topic if it is missing and checks that an existing one is
//! compacted, so kafkv never runs on a topic that may drop live keys.

use std::time::{Duration, Instant};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaErrorCode,
};
use tracing::{info, warn};

use crate::{
    config::StoreConfig,
    error::{Result, TopicError},
};

/// Makes sure the topic exists and is compacted; returns its partition count.
pub async fn ensure(config: &StoreConfig) -> Result<i32> {
    let admin: AdminClient<DefaultClientContext> = super::client_config(config, &[]).create()?;
    let options = AdminOptions::new()
        .operation_timeout(Some(config.startup_timeout))
        .request_timeout(Some(config.startup_timeout));
    let topic = &config.topic;
    let replication = TopicReplication::Fixed(config.replication_factor.unwrap_or(-1));
    let new_topic =
        NewTopic::new(topic, config.partitions, replication).set("cleanup.policy", "compact");
    let created = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| unreachable(config, e.to_string()))?;
    match created.into_iter().next() {
        Some(Ok(_)) => info!(%topic, partitions = config.partitions, "created compacted topic"),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
            check_compacted(&admin, &options, config).await?
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
    }
    let partitions = partition_count(config).await?;
    if partitions != config.partitions {
        info!(%topic, partitions, "using the existing topic's partition count (--partitions applies only when kafkv creates the topic)");
    }
    Ok(partitions)
}

fn unreachable(config: &StoreConfig, reason: String) -> crate::Error {
    TopicError::Unreachable {
        brokers: config.brokers.clone(),
        waited: config.startup_timeout,
        reason,
    }
    .into()
}

async fn check_compacted(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    config: &StoreConfig,
) -> Result<()> {
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
    if policy.split(',').any(|p| p.trim() == "compact") {
        return Ok(());
    }
    let refused = TopicError::NotCompacted {
        topic: topic.clone(),
        policy,
    };
    if config.allow_non_compacted {
        warn!("{refused}; starting anyway because of --allow-non-compacted");
        Ok(())
    } else {
        Err(refused.into())
    }
}

/// The topic's partition count from cluster metadata, waiting for a freshly
/// created topic to appear.
pub async fn partition_count(config: &StoreConfig) -> Result<i32> {
    let consumer: BaseConsumer = super::client_config(config, &[]).create()?;
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
