//! The embedded broker's storage as kafkv runs it: tansu's SQLite engine
//! behind [`KafkvStorage`], which owns the places where tansu 0.6 does not
//! behave like Kafka and kafkv relies on it (docs/design.md, "The embedded
//! broker"):
//!
//! - **Long poll**: every produce wakes the fetches [`super::long_poll`]
//!   holds for data.
//! - **Producer epochs**: librdkafka's idempotent producer bumps its own epoch
//!   after timed-out records; tansu panics on the first batch with the new
//!   epoch (and on InitProducerId with an existing id), which kills its storage
//!   task. Kafka accepts the bump; so does this wrapper, by recording the epoch
//!   before tansu sees the batch.
//! - **Append time** ([`super::append_time`]): a topic created with
//!   `message.timestamp.type=LogAppendTime` gets the broker's clock on every
//!   produced batch, as Kafka does; tansu keeps the producer's.
//! - **Tail cache** ([`super::tail`]): a fetch near a partition's end is
//!   answered from the records this wrapper saw produced, without SQLite.
//! - **Stored reads** ([`super::stored_read`]): a fetch the tail cache
//!   cannot answer reads SQLite with kafkv's prepared statements, in time
//!   proportional to what it returns; tansu's fetch walks the rest of the
//!   partition and compiles a query per record.
//! - **Read cache** ([`super::read_cache`]): the offset stages and metadata
//!   tansu's fetch handler reads on every fetch come from memory until
//!   something the wrapper sees changes them.
//! - **Fetch size** ([`super::fetch_budget`]): a fetch is cut to its byte
//!   budget by encoded size; tansu counts only keys and values, so a run of
//!   header-only records overran a client's limit.
//! - **Calls that would panic** (`DeleteRecords`) are answered with an error
//!   code instead of reaching tansu's `todo!()`.
//! - **Health**: tansu's storage is one task; once it has died every call fails
//!   with `UnableToSend` while the listener keeps accepting. Those failures are
//!   reported on [`Health`] so the process can exit instead of sitting wedged.
//!
//! Invariant: every call into tansu goes through [`KafkvStorage::call`], which
//! holds the gate shared; kafkv's own SQL ([`super::maintenance`], epoch rows)
//! holds it exclusively, so tansu's single storage task never meets a
//! concurrent writer on the same database.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use tansu_sans_io::{
    ConfigResource, ErrorCode, IsolationLevel, ListOffset, ScramMechanism,
    create_topics_request::CreatableTopic,
    delete_groups_response::DeletableGroupResult,
    delete_records_request::DeleteRecordsTopic,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    describe_cluster_response::DescribeClusterBroker,
    describe_configs_response::DescribeConfigsResult,
    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic,
    incremental_alter_configs_request::AlterConfigsResource,
    incremental_alter_configs_response::AlterConfigsResourceResponse,
    list_groups_response::ListedGroup,
    record::{deflated, inflated},
    txn_offset_commit_response::TxnOffsetCommitResponseTopic,
};
use tansu_storage::{
    BrokerRegistrationRequest, Error, GroupDetail, ListOffsetResponse, MetadataResponse,
    NamedGroupDetail, OffsetCommitRequest, OffsetStage, ProducerIdResponse, Result,
    ScramCredential, Storage, StorageContainer, TopicId, Topition, TxnAddPartitionsRequest,
    TxnAddPartitionsResponse, TxnOffsetCommitRequest, UpdateError, Version,
};
use tokio::sync::{RwLock, watch};
use tracing::{info, warn};

use super::{
    append_time::{self, TimestampTypes},
    checkpoint::Checkpointer,
    database::Database,
    fetch_budget,
    long_poll::LongPoll,
    maintenance::{self, Compacted},
    produce::{Producer, Published},
    read_cache::ReadCache,
    stored_read::StoredRead,
    tail::Tails,
    wal_sync::{Durability, WalSync},
};

/// Why the embedded broker cannot serve any more, once it cannot.
pub type Failure = Option<String>;

/// The broker's health as the storage wrapper sees it: `None` while serving,
/// the reason once tansu's storage task is gone.
#[derive(Clone)]
pub struct Health {
    failure: watch::Sender<Failure>,
}

impl Health {
    fn new() -> Self {
        Self {
            failure: watch::channel(None).0,
        }
    }

    /// Records that the broker cannot serve; the first reason wins.
    pub fn fail(&self, reason: String) {
        self.failure.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
    }

    pub fn is_serving(&self) -> bool {
        self.failure.borrow().is_none()
    }

    /// Resolves with the reason once the broker cannot serve.
    pub async fn failed(&self) -> String {
        let mut watch = self.failure.subscribe();
        match watch.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The sender lives in `self`, so the channel cannot close.
            Err(_) => unreachable!("the health sender outlives its receivers"),
        }
    }

    fn observe(&self, error: &Error) {
        if matches!(error, Error::UnableToSend | Error::OneshotRecv) {
            self.fail(format!(
                "the embedded broker's storage task has stopped ({error:?}); every Kafka request \
                 would fail from now on"
            ));
        }
    }
}

/// tansu's storage with kafkv's corrections; see the module docs.
#[derive(Clone)]
pub struct KafkvStorage {
    inner: StorageContainer,
    shared: Arc<Shared>,
}

struct Shared {
    /// Shared by calls into tansu, exclusive for kafkv's own SQL.
    gate: Arc<RwLock<()>>,
    database: Arc<Database>,
    /// kafkv's produce path ([`super::produce`]); `None`: tansu's.
    producer: Option<Producer>,
    long_poll: Arc<LongPoll>,
    health: Health,
    /// Per producer id, the highest epoch known to be in tansu's
    /// `producer_epoch` table, so only a new epoch costs a query.
    epochs: parking_lot::Mutex<HashMap<i64, i16>>,
    timestamp_types: TimestampTypes,
    tails: Arc<Tails>,
    read_cache: Arc<ReadCache>,
    /// What a produce's acknowledgement waits for.
    durability: Durability,
    /// The tail and read caches; off only for `--broker-paths tansu`.
    caching: bool,
    /// kafkv's read of stored records ([`super::stored_read`]); `None`:
    /// tansu's fetch reads them (`--broker-paths tansu`).
    stored_read: Option<StoredRead>,
}

/// How [`KafkvStorage`] serves, fixed when the broker starts.
pub struct Options {
    /// How long a fetch that finds nothing is held ([`LongPoll`]).
    pub fetch_hold: Duration,
    /// Answer fetches from the tail and read caches, and from storage with
    /// kafkv's read (off: every fetch reads SQLite with tansu's, as tansu
    /// 0.6 alone does).
    pub caching: bool,
    /// Acknowledge a produce only once `WalSync` has synced the WAL after
    /// its commit (`--broker-sync commit`).
    pub wal_sync: Option<WalSync>,
    /// Write produced batches through kafkv's produce path (off: tansu's).
    pub own_produce: bool,
}

impl fmt::Debug for KafkvStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkvStorage").finish_non_exhaustive()
    }
}

impl KafkvStorage {
    /// Fails only when kafkv's produce statements cannot be prepared.
    pub async fn new(
        inner: StorageContainer,
        database: Database,
        options: Options,
    ) -> std::result::Result<Self, libsql::Error> {
        let gate = Arc::new(RwLock::new(()));
        let database = Arc::new(database);
        let health = Health::new();
        let durability = Durability {
            sync: options.wal_sync,
            health: health.clone(),
        };
        let long_poll = Arc::new(LongPoll::new(options.fetch_hold));
        let tails = Arc::new(Tails::default());
        let read_cache = Arc::new(ReadCache::default());
        // kafkv's produce path publishes to the caches, so it runs only
        // with them.
        let producer = if options.own_produce && options.caching {
            let published = Published {
                checkpoints: Checkpointer::start(database.connect()?),
                tails: tails.clone(),
                read_cache: read_cache.clone(),
                long_poll: long_poll.clone(),
                durability: durability.clone(),
            };
            Some(Producer::start(database.clone(), gate.clone(), published).await?)
        } else {
            None
        };
        let stored_read = if options.caching {
            Some(StoredRead::prepare(database.connect()?).await?)
        } else {
            None
        };
        Ok(Self {
            inner,
            shared: Arc::new(Shared {
                gate,
                database,
                producer,
                long_poll,
                health,
                epochs: parking_lot::Mutex::new(HashMap::new()),
                timestamp_types: TimestampTypes::default(),
                tails,
                read_cache,
                durability,
                caching: options.caching,
                stored_read,
            }),
        })
    }

    fn caching(&self) -> bool {
        self.shared.caching
    }

    /// What the Fetch route waits on for produces.
    pub fn long_poll(&self) -> Arc<LongPoll> {
        self.shared.long_poll.clone()
    }

    pub fn health(&self) -> Health {
        self.shared.health.clone()
    }

    /// Runs `sql` work on kafkv's own connection with tansu's calls held off.
    pub async fn exclusive<T>(&self, work: impl AsyncFnOnce(&Database) -> T) -> T {
        let _exclusive = self.shared.gate.write().await;
        work(&self.shared.database).await
    }

    /// One compaction run ([`maintenance`]). The tail cache forgets what it
    /// holds before tansu's calls resume, so no fetch is answered from a
    /// record compaction removed.
    pub async fn compact(&self, now: SystemTime) -> std::result::Result<Compacted, libsql::Error> {
        self.exclusive(async |db: &Database| {
            let compacted = maintenance::compact(db, now).await;
            if compacted
                .as_ref()
                .is_ok_and(|compacted| *compacted != Compacted::default())
            {
                self.shared.tails.forget_all();
                self.shared.read_cache.stages_changed();
            }
            compacted
        })
        .await
    }

    #[cfg(test)]
    pub fn producer(&self) -> Option<&Producer> {
        self.shared.producer.as_ref()
    }

    #[cfg(test)]
    pub fn tails(&self) -> &Tails {
        &self.shared.tails
    }

    /// The batches stored for a fetch: kafkv's read
    /// ([`super::stored_read`]), or tansu's fetch with `--broker-paths
    /// tansu`.
    pub(super) async fn fetch_from_storage(
        &self,
        topition: &Topition,
        offset: i64,
        min_bytes: u32,
        max_bytes: u32,
        isolation: IsolationLevel,
    ) -> Result<Vec<deflated::Batch>> {
        let Some(stored_read) = &self.shared.stored_read else {
            return self
                .fetch_from_tansu(topition, offset, min_bytes, max_bytes, isolation)
                .await;
        };
        // The stage first: it takes the gate itself, and a second shared
        // hold would wait behind a queued writer.
        let stage = self.offset_stage(topition).await?;
        let _shared = self.shared.gate.read().await;
        stored_read
            .read(topition, offset, max_bytes, isolation, &stage)
            .await
            .inspect_err(|e| self.shared.health.observe(e))
    }

    /// What tansu's own fetch reads from SQLite, with the header fix.
    pub(super) async fn fetch_from_tansu(
        &self,
        topition: &Topition,
        offset: i64,
        min_bytes: u32,
        max_bytes: u32,
        isolation: IsolationLevel,
    ) -> Result<Vec<deflated::Batch>> {
        let read = |from| {
            self.call(
                self.inner
                    .fetch(topition, from, min_bytes, max_bytes, isolation),
            )
        };
        let batches = read(offset).await?;
        // tansu reads the first record's headers at the offset asked for,
        // not at the record's own: when that offset was compacted away the
        // first record comes back without its headers (and kafkv's
        // operation, repair, expiry and SWEEP records are their headers).
        // Asking again from the record's own offset gets them; this costs
        // one query, only when a fetch starts inside a compaction gap.
        match batches
            .first()
            .filter(|batch| batch.record_count > 0 && batch.base_offset > offset)
        {
            Some(first) => read(first.base_offset).await,
            None => Ok(batches),
        }
    }

    async fn call<T>(&self, operation: impl Future<Output = Result<T>>) -> Result<T> {
        let _shared = self.shared.gate.read().await;
        operation
            .await
            .inspect_err(|e| self.shared.health.observe(e))
    }

    /// Whether `topic` is `message.timestamp.type=LogAppendTime`. A lookup
    /// that fails is not remembered, and counts as the producer's time, as
    /// tansu would store it anyway.
    async fn appends_at_broker_time(&self, topic: &str) -> bool {
        let types = &self.shared.timestamp_types;
        if let Some(known) = types.known(topic) {
            return known;
        }
        let keys = [append_time::TIMESTAMP_TYPE.to_owned()];
        let described = self
            .call(
                self.inner
                    .describe_config(topic, ConfigResource::Topic, Some(&keys)),
            )
            .await;
        match described {
            Ok(result) => {
                let value = result
                    .configs
                    .iter()
                    .flatten()
                    .find(|config| config.name == append_time::TIMESTAMP_TYPE)
                    .and_then(|config| config.value.as_deref());
                let append = append_time::is_append_time(value);
                types.remember(topic, append);
                append
            }
            Err(error) => {
                warn!(topic, %error, "embedded broker: could not read message.timestamp.type");
                false
            }
        }
    }

    /// Makes tansu's `producer_epoch` table know `epoch` for `producer` when
    /// the client bumped it itself, as Kafka accepts (KIP-360). Without this
    /// tansu's idempotence check finds no row and panics.
    async fn accept_epoch(&self, producer: i64, epoch: i16) {
        if self
            .shared
            .epochs
            .lock()
            .get(&producer)
            .is_some_and(|known| *known >= epoch)
        {
            return;
        }
        let recorded = self
            .exclusive(async |db: &Database| db.accept_producer_epoch(producer, epoch).await)
            .await;
        match recorded {
            Ok(Some(highest)) => {
                if highest == epoch {
                    info!(
                        producer,
                        epoch, "embedded broker: accepted a producer epoch bump"
                    );
                }
                self.shared.epochs.lock().insert(producer, highest);
            }
            // Unknown producer: tansu answers UNKNOWN_PRODUCER_ID itself.
            Ok(None) => {}
            Err(e) => warn!(producer, epoch, error = %e, "could not record a producer epoch"),
        }
    }
}

#[async_trait]
impl Storage for KafkvStorage {
    async fn register_broker(&self, registration: BrokerRegistrationRequest) -> Result<()> {
        let registered = self.call(self.inner.register_broker(registration)).await;
        self.shared.read_cache.metadata_changed();
        registered
    }

    async fn create_topic(&self, topic: CreatableTopic, validate_only: bool) -> Result<uuid::Uuid> {
        self.shared.timestamp_types.forget(&topic.name);
        self.shared.tails.forget_topic(&topic.name);
        let created = self
            .call(self.inner.create_topic(topic, validate_only))
            .await;
        self.shared.read_cache.topics_changed();
        created
    }

    async fn incremental_alter_resource(
        &self,
        resource: AlterConfigsResource,
    ) -> Result<AlterConfigsResourceResponse> {
        let name = resource.resource_name.clone();
        let altered = self
            .call(self.inner.incremental_alter_resource(resource))
            .await;
        self.shared.read_cache.metadata_changed();
        self.shared.timestamp_types.forget(&name);
        altered
    }

    /// tansu 0.6 has `todo!()` here, which would kill its storage task: refuse
    /// instead, per partition, as a broker without the feature would.
    async fn delete_records(
        &self,
        topics: &[DeleteRecordsTopic],
    ) -> Result<Vec<DeleteRecordsTopicResult>> {
        warn!("embedded broker: DeleteRecords is not supported; refused");
        Ok(topics
            .iter()
            .map(|topic| {
                DeleteRecordsTopicResult::default()
                    .name(topic.name.clone())
                    .partitions(Some(
                        topic
                            .partitions
                            .iter()
                            .flatten()
                            .map(|partition| {
                                DeleteRecordsPartitionResult::default()
                                    .partition_index(partition.partition_index)
                                    .low_watermark(-1)
                                    .error_code(ErrorCode::PolicyViolation.into())
                            })
                            .collect(),
                    ))
            })
            .collect())
    }

    async fn delete_topic(&self, topic: &TopicId) -> Result<ErrorCode> {
        let deleted = self.call(self.inner.delete_topic(topic)).await;
        self.shared.read_cache.topics_changed();
        match topic {
            TopicId::Name(name) => {
                self.shared.timestamp_types.forget(name);
                self.shared.tails.forget_topic(name);
            }
            TopicId::Id(_) => {
                self.shared.timestamp_types.forget_all();
                self.shared.tails.forget_all();
            }
        }
        deleted
    }

    async fn brokers(&self) -> Result<Vec<DescribeClusterBroker>> {
        self.call(self.inner.brokers()).await
    }

    async fn produce(
        &self,
        transaction_id: Option<&str>,
        topition: &Topition,
        batch: deflated::Batch,
    ) -> Result<i64> {
        if batch.producer_id >= 0 && transaction_id.is_none() {
            self.accept_epoch(batch.producer_id, batch.producer_epoch)
                .await;
        }
        let batch = if self.appends_at_broker_time(topition.topic()).await {
            append_time::stamp(batch, now_millis())
        } else {
            batch
        };
        if let (Some(producer), None) = (&self.shared.producer, transaction_id) {
            // Committed, synced, cached and woken by kafkv's writer
            // (super::produce).
            return producer
                .produce(topition, batch)
                .await
                .inspect_err(|e| self.shared.health.observe(e));
        }
        // tansu's produce: `--broker-paths kafkv-fetch`, and transactions.
        // For the tail cache; Bytes are shared, so this copy costs no
        // record data.
        let stored = self.caching().then(|| batch.clone());
        let offset = self
            .call(self.inner.produce(transaction_id, topition, batch))
            .await;
        // Failed or not, the partition's stage is read again.
        self.shared.read_cache.stage_changed(topition);
        let offset = offset?;
        self.shared.durability.synced().await?;
        if let Some(stored) = stored {
            match inflated::Batch::try_from(&stored) {
                Ok(batch) => {
                    self.shared
                        .tails
                        .produced(topition, transaction_id.is_some(), offset, batch)
                }
                Err(error) => {
                    // Storage has the records; the cache must not answer
                    // for them.
                    warn!(%error, ?topition, "embedded broker: could not cache a produced batch");
                    self.shared.tails.forget_topic(topition.topic());
                }
            }
        }
        self.shared.long_poll.produced();
        Ok(offset)
    }

    async fn fetch(
        &self,
        topition: &'_ Topition,
        offset: i64,
        min_bytes: u32,
        max_bytes: u32,
        isolation: IsolationLevel,
    ) -> Result<Vec<deflated::Batch>> {
        let from_tail = if self.caching() {
            let stage = self.offset_stage(topition).await?;
            self.shared
                .tails
                .read(topition, offset, max_bytes, isolation, &stage)
        } else {
            None
        };
        let batches = match from_tail {
            Some(cached) => {
                metrics::counter!("kafkv_broker_fetches_total", "from" => "tail").increment(1);
                cached?
            }
            None => {
                metrics::counter!("kafkv_broker_fetches_total", "from" => "storage").increment(1);
                self.fetch_from_storage(topition, offset, min_bytes, max_bytes, isolation)
                    .await?
            }
        };
        fetch_budget::within(batches, max_bytes)
    }

    async fn offset_stage(&self, topition: &Topition) -> Result<OffsetStage> {
        if !self.caching() {
            return self.call(self.inner.offset_stage(topition)).await;
        }
        match self.shared.read_cache.stage(topition) {
            Ok(stage) => Ok(stage),
            Err(ticket) => {
                let stage = self.call(self.inner.offset_stage(topition)).await?;
                self.shared.read_cache.store_stage(topition, ticket, stage);
                Ok(stage)
            }
        }
    }

    async fn list_offsets(
        &self,
        isolation_level: IsolationLevel,
        offsets: &[(Topition, ListOffset)],
    ) -> Result<Vec<(Topition, ListOffsetResponse)>> {
        self.call(self.inner.list_offsets(isolation_level, offsets))
            .await
    }

    async fn offset_commit(
        &self,
        group_id: &str,
        retention_time_ms: Option<Duration>,
        offsets: &[(Topition, OffsetCommitRequest)],
    ) -> Result<Vec<(Topition, ErrorCode)>> {
        self.call(
            self.inner
                .offset_commit(group_id, retention_time_ms, offsets),
        )
        .await
    }

    async fn offset_fetch(
        &self,
        group_id: Option<&str>,
        topics: &[Topition],
        require_stable: Option<bool>,
    ) -> Result<BTreeMap<Topition, i64>> {
        self.call(self.inner.offset_fetch(group_id, topics, require_stable))
            .await
    }

    async fn committed_offset_topitions(&self, group_id: &str) -> Result<BTreeMap<Topition, i64>> {
        self.call(self.inner.committed_offset_topitions(group_id))
            .await
    }

    async fn metadata(&self, topics: Option<&[TopicId]>) -> Result<MetadataResponse> {
        if !self.caching() {
            return self.call(self.inner.metadata(topics)).await;
        }
        match self.shared.read_cache.metadata(topics) {
            Ok(metadata) => Ok(metadata),
            Err(ticket) => {
                let metadata = self.call(self.inner.metadata(topics)).await?;
                self.shared
                    .read_cache
                    .store_metadata(ticket, metadata.clone());
                Ok(metadata)
            }
        }
    }

    async fn upsert_user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    ) -> Result<()> {
        self.call(
            self.inner
                .upsert_user_scram_credential(user, mechanism, credential),
        )
        .await
    }

    async fn delete_user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<()> {
        self.call(self.inner.delete_user_scram_credential(user, mechanism))
            .await
    }

    async fn user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredential>> {
        self.call(self.inner.user_scram_credential(user, mechanism))
            .await
    }

    async fn describe_config(
        &self,
        name: &str,
        resource: ConfigResource,
        keys: Option<&[String]>,
    ) -> Result<DescribeConfigsResult> {
        self.call(self.inner.describe_config(name, resource, keys))
            .await
    }

    async fn list_groups(&self, states_filter: Option<&[String]>) -> Result<Vec<ListedGroup>> {
        self.call(self.inner.list_groups(states_filter)).await
    }

    async fn delete_groups(
        &self,
        group_ids: Option<&[String]>,
    ) -> Result<Vec<DeletableGroupResult>> {
        self.call(self.inner.delete_groups(group_ids)).await
    }

    async fn describe_groups(
        &self,
        group_ids: Option<&[String]>,
        include_authorized_operations: bool,
    ) -> Result<Vec<NamedGroupDetail>> {
        self.call(
            self.inner
                .describe_groups(group_ids, include_authorized_operations),
        )
        .await
    }

    async fn describe_topic_partitions(
        &self,
        topics: Option<&[TopicId]>,
        partition_limit: i32,
        cursor: Option<Topition>,
    ) -> Result<Vec<DescribeTopicPartitionsResponseTopic>> {
        self.call(
            self.inner
                .describe_topic_partitions(topics, partition_limit, cursor),
        )
        .await
    }

    async fn update_group(
        &self,
        group_id: &str,
        detail: GroupDetail,
        version: Option<Version>,
    ) -> Result<Version, UpdateError<GroupDetail>> {
        let _shared = self.shared.gate.read().await;
        self.inner
            .update_group(group_id, detail, version)
            .await
            .inspect_err(|e| {
                if let UpdateError::Error(e) = e {
                    self.shared.health.observe(e);
                }
            })
    }

    /// tansu 0.6 implements only a fresh id (`-1`/`-1`); an epoch bump of an
    /// existing id reaches `todo!()`. A fresh id is what a client must accept
    /// from Kafka too when the epoch cannot be bumped, so ask for one.
    async fn init_producer(
        &self,
        transaction_id: Option<&str>,
        transaction_timeout_ms: i32,
        producer_id: Option<i64>,
        producer_epoch: Option<i16>,
    ) -> Result<ProducerIdResponse> {
        if (producer_id, producer_epoch) != (Some(-1), Some(-1)) {
            info!(
                ?producer_id,
                ?producer_epoch,
                "embedded broker: producer epoch bump requested; issuing a fresh producer id"
            );
        }
        let response = self
            .call(self.inner.init_producer(
                transaction_id,
                transaction_timeout_ms,
                Some(-1),
                Some(-1),
            ))
            .await?;
        if response.error == ErrorCode::None {
            self.shared
                .epochs
                .lock()
                .insert(response.id, response.epoch);
        }
        Ok(response)
    }

    async fn txn_add_offsets(
        &self,
        transaction_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
    ) -> Result<ErrorCode> {
        self.call(
            self.inner
                .txn_add_offsets(transaction_id, producer_id, producer_epoch, group_id),
        )
        .await
    }

    async fn txn_add_partitions(
        &self,
        partitions: TxnAddPartitionsRequest,
    ) -> Result<TxnAddPartitionsResponse> {
        self.call(self.inner.txn_add_partitions(partitions)).await
    }

    async fn txn_offset_commit(
        &self,
        offsets: TxnOffsetCommitRequest,
    ) -> Result<Vec<TxnOffsetCommitResponseTopic>> {
        self.call(self.inner.txn_offset_commit(offsets)).await
    }

    async fn txn_end(
        &self,
        transaction_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        committed: bool,
    ) -> Result<ErrorCode> {
        let ended = self
            .call(
                self.inner
                    .txn_end(transaction_id, producer_id, producer_epoch, committed),
            )
            .await;
        // The last stable offsets move.
        self.shared.read_cache.stages_changed();
        ended
    }

    /// tansu's own maintenance compacts without `min.compaction.lag.ms` and
    /// never drops tombstones; kafkv runs [`super::maintenance`] on its own
    /// schedule instead, so tansu's timer does nothing.
    async fn maintain(&self, _now: SystemTime) -> Result<()> {
        Ok(())
    }

    async fn cluster_id(&self) -> Result<String> {
        self.call(self.inner.cluster_id()).await
    }

    async fn node(&self) -> Result<i32> {
        self.call(self.inner.node()).await
    }

    async fn advertised_listener(&self) -> Result<url::Url> {
        self.call(self.inner.advertised_listener()).await
    }

    async fn ping(&self) -> Result<()> {
        self.call(self.inner.ping()).await
    }
}

/// The broker's clock, in milliseconds since the epoch, as Kafka stamps
/// `LogAppendTime` batches.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
