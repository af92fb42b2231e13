//! The broker: topics, produce, read, group offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_api::{ApiError, ErrorCode};
use strata_log::{AppendOptions, Durability, Log, Partition, ReadBatches};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cluster::{BrokerEndpoint, ClusterView, PartitionLeader, SingleNode};
use crate::config::BrokerConfig;
use crate::errors::{from_log, out_of_range};
use crate::metadata::{LocalMetadataStore, MetadataStore, TopicMeta};
use crate::names::{validate_tenant, validate_topic};
use crate::partitioner::partition_for_key;
use crate::{metrics, records, retention};

mod admin;
mod append;
mod groups;
mod producer_ids;
mod routing;
mod topics;
mod types;
mod wire;

use append::append_all;
pub use topics::partition_key;
use topics::reconcile;
pub use types::*;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Most records one read returns, whatever the request asks.
const MAX_READ_RECORDS: u32 = 10_000;
/// How long shutdown waits for a retention pass in progress before abandoning it.
const RETENTION_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The background tasks (retention, offload) and the switch that stops them.
type BackgroundTasks = (watch::Sender<bool>, Vec<JoinHandle<()>>);

/// A broker over one local write-ahead log and one metadata store.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) log: Arc<Log>,
    meta: Arc<dyn MetadataStore>,
    /// Serializes topic creation, alteration and deletion: each spans the
    /// metadata and the log, and must not interleave with another on the same topic.
    admin: tokio::sync::Mutex<()>,
    /// Largest topic id handed out: ids only grow, so a recreated topic never
    /// meets its predecessor's partitions.
    last_topic_id: Mutex<u64>,
    /// Per topic id: the next partition for unkeyed records (round robin per request).
    spread: Mutex<HashMap<u64, u32>>,
    /// Tiered storage: the bucket, its open segments, the offload backlog.
    tier: Arc<crate::tiering::Tier>,
    /// Stops the retention and tiering tasks.
    retention: Mutex<Option<BackgroundTasks>>,
    /// Who leads which partition; how to reach the other nodes.
    pub(crate) cluster: Arc<dyn ClusterView>,
    /// Idempotent-producer ids reserved in the metadata store: `next..end`.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Which partitions this node leads or follows, and the fetchers.
    pub(crate) replication: crate::replication::Replication,
    /// Turns true when the broker shuts down (fetchers stop).
    stopping: watch::Receiver<bool>,
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn durability(acks: Acks) -> Durability {
    match acks {
        Acks::Fsync => Durability::Fsync,
        Acks::Write => Durability::Write,
    }
}

fn tenant_not_found(tenant: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TenantNotFound,
        format!("tenant {tenant:?} does not exist"),
    )
    .with_details(serde_json::json!({ "tenant": tenant }))
}

fn partition_not_found(topic: &TopicMeta, partition: u32) -> ApiError {
    ApiError::new(
        ErrorCode::PartitionNotFound,
        format!(
            "partition {partition} does not exist: topic {:?} has partitions 0..{}",
            topic.name, topic.partitions
        ),
    )
    .with_details(serde_json::json!({
        "topic": topic.name,
        "partition": partition,
        "partitions": topic.partitions,
    }))
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("{what}: {e}"))
}

impl Broker {
    /// Opens the log under `config.data_dir` with the metadata in a local
    /// file there (no metadata group), and starts retention and offload.
    pub async fn open(config: BrokerConfig) -> Result<Arc<Broker>> {
        let path = config.data_dir.join("metadata.json");
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            internal(
                &format!("cannot create data directory {}", config.data_dir.display()),
                e,
            )
        })?;
        let meta: Arc<dyn MetadataStore> = Arc::new(LocalMetadataStore::open(path)?);
        Self::open_with(config, meta, Arc::new(SingleNode)).await
    }

    /// Opens the log under `config.data_dir` with `meta` as the metadata
    /// store and `cluster` deciding which partitions this node serves, and
    /// starts retention and offload.
    pub async fn open_with(
        config: BrokerConfig,
        meta: Arc<dyn MetadataStore>,
        cluster: Arc<dyn ClusterView>,
    ) -> Result<Arc<Broker>> {
        config
            .default_topic
            .validate(config.max_request_bytes)
            .map_err(|e| ApiError::new(e.code, format!("default topic config: {}", e.message)))?;
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            internal(
                &format!("cannot create data directory {}", data_dir.display()),
                e,
            )
        })?;

        let (log_dir, log_config) = (data_dir.join("log"), config.log.clone());
        let log = tokio::task::spawn_blocking(move || Log::open(log_dir, log_config))
            .await
            .map_err(|e| internal("log open task failed", e))?
            .map_err(from_log)?;
        let log = Arc::new(log);
        let last_topic_id = reconcile(&log, meta.as_ref()).await?;

        let url = config
            .tier
            .object_store
            .clone()
            .unwrap_or_else(|| strata_tier::store::default_url(&data_dir));
        let handle = strata_tier::store::open(&url, &data_dir).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("cannot open the object store {url}: {e}"),
            )
        })?;
        let tier =
            Arc::new(crate::tiering::Tier::open(handle, config.tier.clone(), &data_dir).await);

        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![retention::spawn(
            log.clone(),
            meta.clone(),
            tier.clone(),
            config.retention_interval,
            stopped.clone(),
        )];
        tasks.extend(crate::tiering::spawn(
            log.clone(),
            meta.clone(),
            tier.clone(),
            stopped,
        ));
        info!(data_dir = %data_dir.display(), "broker opened");
        let single = cluster.is_single_node();
        let broker = Arc::new(Broker {
            config,
            log,
            meta,
            admin: tokio::sync::Mutex::new(()),
            last_topic_id: Mutex::new(last_topic_id),
            spread: Mutex::new(HashMap::new()),
            tier,
            retention: Mutex::new(Some((stop.clone(), tasks))),
            cluster,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            replication: crate::replication::Replication::open(&data_dir),
            stopping: stop.subscribe(),
        });
        if !single {
            // Take the roles the metadata gives before serving anything.
            broker.reconcile_replicas().await;
            let task = broker.spawn_replication(stop.subscribe());
            if let Some((_, tasks)) = broker.retention.lock().as_mut() {
                tasks.push(task);
            }
        }
        Ok(broker)
    }

    /// Whether the broker is shutting down.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// This node's id in the cluster (1 for a single node).
    pub fn node_id(&self) -> u64 {
        self.cluster.node_id()
    }

    /// The live brokers; empty for a single node.
    pub fn broker_endpoints(&self) -> Vec<BrokerEndpoint> {
        self.cluster.brokers()
    }

    /// Who serves `partition` of `topic`.
    pub fn leader_of(&self, topic: &TopicMeta, partition: u32) -> PartitionLeader {
        match self.cluster.leader(&partition_key(topic, partition)) {
            Some((node_id, epoch)) if node_id != self.node_id() => {
                PartitionLeader::Remote { node_id, epoch }
            }
            Some((_, epoch)) => PartitionLeader::Local { epoch },
            None => PartitionLeader::Local { epoch: 0 },
        }
    }

    /// A partition's replicas (the leader first) and in-sync replicas, where
    /// the metadata group assigned them; `None` on a single node.
    pub fn replicas_of(&self, topic: &TopicMeta, partition: u32) -> Option<(Vec<u64>, Vec<u64>)> {
        self.cluster.replicas(&partition_key(topic, partition))
    }

    /// The node that coordinates consumer group `group` (Kafka's group
    /// coordinator): the same on every node, spread by the group's hash.
    pub fn group_coordinator(&self, group: &str) -> u64 {
        // Only brokers Kafka clients can reach can coordinate.
        let mut ids: Vec<u64> = self
            .cluster
            .brokers()
            .iter()
            .filter(|b| b.kafka_addr.is_some())
            .map(|b| b.node_id)
            .collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return self.node_id();
        }
        let hash = crate::partitioner::kafka_murmur2(group.as_bytes()) & 0x7fff_ffff;
        ids[hash as usize % ids.len()]
    }

    /// Tenants, sorted. `default` always exists.
    pub async fn list_tenants(&self) -> Result<Vec<String>> {
        self.meta.barrier().await?;
        let mut tenants = self.meta.tenants().await?;
        tenants.sort();
        Ok(tenants)
    }

    /// Creates a tenant; creating one that exists is not an error.
    pub async fn create_tenant(&self, tenant: &str) -> Result<()> {
        validate_tenant(tenant)?;
        self.meta.create_tenant(tenant).await
    }

    /// Fails unless `tenant` is a valid name of an existing tenant.
    async fn check_tenant(&self, tenant: &str) -> Result<()> {
        validate_tenant(tenant)?;
        if self.meta.tenants().await?.iter().any(|t| t == tenant) {
            Ok(())
        } else {
            Err(tenant_not_found(tenant))
        }
    }

    /// The topic, after checking both names (invalid names are reported
    /// before anything is looked up).
    async fn topic(&self, tenant: &str, name: &str) -> Result<TopicMeta> {
        validate_tenant(tenant)?;
        validate_topic(name)?;
        match self.meta.topic(tenant, name).await? {
            Some(t) => Ok(t),
            None => {
                self.check_tenant(tenant).await?;
                Err(ApiError::new(
                    ErrorCode::TopicNotFound,
                    format!("topic {name:?} does not exist in tenant {tenant:?}"),
                )
                .with_details(serde_json::json!({ "tenant": tenant, "topic": name })))
            }
        }
    }

    fn partition(&self, topic: &TopicMeta, partition: u32) -> Result<Partition> {
        if partition >= topic.partitions {
            return Err(partition_not_found(topic, partition));
        }
        self.log
            .partition(&partition_key(topic, partition))
            .map_err(from_log)
    }

    /// The partition for this request's unkeyed records: one per request so
    /// they form one batch, rotating across requests so partitions fill evenly.
    fn spread_partition(&self, topic: &TopicMeta) -> u32 {
        let mut spread = self.spread.lock();
        let next = spread.entry(topic.id).or_insert(0);
        let partition = *next % topic.partitions.max(1);
        *next = next.wrapping_add(1);
        partition
    }

    /// Produces records, each to its own partition; returns `(partition, offset)` per record,
    /// in request order.
    ///
    /// Records of one partition are appended as one batch, all-or-nothing;
    /// across partitions (as in Kafka) some may be written when another fails.
    #[tracing::instrument(skip_all, fields(tenant = %meta.tenant, topic = %meta.name, partition))]
    pub(crate) async fn produce_here(
        &self,
        meta: &TopicMeta,
        records: Vec<ProduceRecord>,
        acks: Acks,
    ) -> Result<Vec<(u32, u64)>> {
        let started = Instant::now();
        let tenant = meta.tenant.as_str();
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.check_disk_budget()?;
        let max_message = u64::try_from(meta.config.max_message_bytes).unwrap_or(0);
        records::check_sizes(&records, max_message, self.config.max_request_bytes)?;

        // Place every record before anything is written, so a bad partition
        // number fails the whole request.
        let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut spread = None;
        for (index, record) in records.iter().enumerate() {
            let partition = match (record.partition, &record.key) {
                (Some(p), _) if p >= meta.partitions => return Err(partition_not_found(meta, p)),
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, meta.partitions),
                (None, None) => *spread.get_or_insert_with(|| self.spread_partition(meta)),
            };
            by_partition.entry(partition).or_default().push(index);
        }
        if by_partition.len() == 1
            && let Some(&partition) = by_partition.keys().next()
        {
            tracing::Span::current().record("partition", partition);
        }
        let now = now_ms();
        let mut jobs = Vec::with_capacity(by_partition.len());
        let mut logs = Vec::with_capacity(by_partition.len());
        for (partition, indices) in by_partition {
            let batch = records::build_batch(indices.iter().filter_map(|&i| records.get(i)), now)?;
            let p = self.local_partition(meta, partition).await?;
            if acks == Acks::Fsync {
                self.check_in_sync(&p)?;
            }
            logs.push((partition, p.clone()));
            jobs.push((partition, indices, p, batch));
        }

        let options = AppendOptions {
            durability: Some(durability(acks)),
            ..AppendOptions::default()
        };
        let mut out = vec![(0u32, 0u64); records.len()];
        for (partition, indices, result) in append_all(jobs, options).await? {
            let appended = result.map_err(from_log)?;
            if acks == Acks::Fsync
                && let Some((_, p)) = logs.iter().find(|(n, _)| *n == partition)
            {
                self.await_replicated(p, appended.leader_epoch, appended.next_offset)
                    .await?;
            }
            for (position, index) in (0u64..).zip(indices) {
                if let Some(slot) = out.get_mut(index) {
                    *slot = (partition, appended.base_offset + position);
                }
            }
        }
        let bytes = records.iter().map(records::record_size).sum();
        metrics::produced(tenant, records.len(), bytes, started);
        Ok(out)
    }

    /// Appends records to one partition atomically (one batch); with
    /// `expected_offset`, only if the partition ends there (else `offset_mismatch`
    /// with the actual end offset in the details).
    #[tracing::instrument(skip_all, fields(tenant = %meta.tenant, topic = %meta.name, partition = partition))]
    pub(crate) async fn append_here(
        &self,
        meta: &TopicMeta,
        partition: u32,
        records: Vec<ProduceRecord>,
        expected_offset: Option<u64>,
        acks: Acks,
    ) -> Result<AppendResult> {
        let started = Instant::now();
        let tenant = meta.tenant.as_str();
        let p = self.local_partition(meta, partition).await?;
        let max_message = u64::try_from(meta.config.max_message_bytes).unwrap_or(0);
        records::check_sizes(&records, max_message, self.config.max_request_bytes)?;
        self.check_disk_budget()?;
        if acks == Acks::Fsync {
            self.check_in_sync(&p)?;
        }
        let batch = records::build_batch(&records, now_ms())?;
        let options = AppendOptions {
            expected_offset,
            durability: Some(durability(acks)),
            ..AppendOptions::default()
        };
        let appended = p.append(&batch[..], options).await.map_err(from_log)?;
        if acks == Acks::Fsync {
            self.await_replicated(&p, appended.leader_epoch, appended.next_offset)
                .await?;
        }
        let bytes = records.iter().map(records::record_size).sum();
        metrics::produced(tenant, records.len(), bytes, started);
        Ok(AppendResult {
            partition,
            base_offset: appended.base_offset,
            next_offset: appended.next_offset,
        })
    }

    #[tracing::instrument(skip_all, fields(tenant = %meta.tenant, topic = %meta.name, partition = partition))]
    pub(crate) async fn read_here(
        &self,
        meta: &TopicMeta,
        partition: u32,
        request: ReadRequest,
    ) -> Result<ReadResult> {
        let tenant = meta.tenant.as_str();
        let p = self.local_partition(meta, partition).await?;
        self.check_readable(&p)?;
        let offsets = p.offsets();
        // Offsets up to the log end are valid to ask for; only those below
        // the high watermark (what a majority of replicas hold) are served.
        let (start, end) = (offsets.log_start, offsets.end);
        let offset = match request.start {
            ReadStart::Offset(o) if o < start || o > end => {
                return Err(out_of_range(o, start, end));
            }
            ReadStart::Offset(o) => o,
            ReadStart::Timestamp(ts) => match p.offset_for_timestamp(ts).await.map_err(from_log)? {
                Some(o) => o.max(start).min(offsets.high_watermark),
                // Nothing that recent yet: read from the end (and wait there).
                None => p.high_watermark(),
            },
            ReadStart::Tail(n) => offsets.high_watermark.saturating_sub(n).max(start),
        };
        let max_records = request
            .max_records
            .unwrap_or(self.config.default_max_read_records)
            .clamp(1, MAX_READ_RECORDS) as usize;
        let max_bytes = request
            .max_bytes
            .unwrap_or(self.config.default_max_read_bytes)
            .max(1);
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);

        if p.high_watermark() <= offset && !request.wait.is_zero() {
            // Long poll: `wait_for` checks the current value first, so an
            // append between the check above and the subscription is not missed.
            let mut visible = p.watch_high_watermark();
            let wait = request.wait.min(self.config.max_wait);
            let _ = tokio::time::timeout(wait, visible.wait_for(|&hw| hw > offset)).await;
        }

        let read = if p.high_watermark() > offset {
            self.read_batches(meta, partition, &p, offset, max_bytes)
                .await?
        } else {
            let now = p.offsets();
            ReadBatches {
                chunks: Vec::new(),
                next_offset: offset,
                end_offset: now.high_watermark,
                log_start: now.log_start,
            }
        };
        let max_uncompressed = self.log.config().max_uncompressed_batch_bytes;
        let (records, cut) =
            records::decode(read.batches(), offset, max_records, max_uncompressed)?;
        // Whole batches came back; when the record limit cut one short, the
        // next read starts right after the last record returned.
        let next_offset = match records.last() {
            Some(last) if cut => last.offset + 1,
            _ => read.next_offset.max(offset),
        };
        metrics::read(tenant, records.len(), read.len_bytes());
        Ok(ReadResult {
            records,
            next_offset,
            high_watermark: read.end_offset,
            start_offset: read.log_start,
        })
    }

    /// `(start_offset, end_offset)` of a partition led here.
    pub(crate) async fn check_tail_here(
        &self,
        tenant: &str,
        topic: &str,
        partition: u32,
    ) -> Result<(u64, u64)> {
        let meta = self.topic(tenant, topic).await?;
        let p = self.local_partition(&meta, partition).await?;
        self.check_readable(&p)?;
        let offsets = p.offsets();
        Ok((offsets.log_start, offsets.high_watermark))
    }

    /// Sets the per-partition offset gauges (`strata_partition_start_offset`,
    /// `strata_partition_end_offset`) from the log; called before a scrape.
    pub async fn refresh_partition_metrics(&self) -> Result<()> {
        crate::metrics::PARTITION_START.reset();
        crate::metrics::PARTITION_END.reset();
        for tenant in self.meta.tenants().await? {
            for topic in self.meta.topics(&tenant).await? {
                for p in 0..topic.partitions {
                    if let Ok(partition) = self.partition(&topic, p) {
                        let o = partition.offsets();
                        let labels = [tenant.as_str(), topic.name.as_str(), &p.to_string()];
                        crate::metrics::PARTITION_START
                            .with_label_values(&labels)
                            .set(o.log_start as i64);
                        crate::metrics::PARTITION_END
                            .with_label_values(&labels)
                            .set(o.high_watermark as i64);
                    }
                }
            }
        }
        Ok(())
    }

    /// Follows the end offset of a partition led here.
    pub(crate) async fn watch_end_here(
        &self,
        tenant: &str,
        topic: &str,
        partition: u32,
    ) -> Result<tokio::sync::watch::Receiver<u64>> {
        let meta = self.topic(tenant, topic).await?;
        Ok(self
            .local_partition(&meta, partition)
            .await?
            .watch_high_watermark())
    }

    /// Stops retention and closes the log after flushing it.
    ///
    /// Later calls fail with `unavailable`. The data directory stays locked
    /// until the broker is dropped.
    pub async fn shutdown(&self) {
        let retention = self.retention.lock().take();
        if let Some((stop, tasks)) = retention {
            let _ = stop.send(true);
            for mut task in tasks {
                if tokio::time::timeout(RETENTION_STOP_TIMEOUT, &mut task)
                    .await
                    .is_err()
                {
                    warn!("a retention or offload pass did not stop in time; abandoning it");
                    task.abort();
                }
            }
        }
        let log = self.log.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || log.close()).await {
            warn!(error = %e, "closing the log failed");
        }
        info!("broker shut down");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Without shutdown, the retention task would keep the log open.
        if let Some((stop, tasks)) = self.retention.get_mut().take() {
            let _ = stop.send(true);
            for task in tasks {
                task.abort();
            }
        }
    }
}
