//! Topics: creation, alteration, deletion, and keeping the log in step with the metadata.

use std::collections::HashSet;
use std::sync::Arc;

use strata_api::{ApiError, ErrorCode};
use strata_log::{Log, LogError, SegmentConfig};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::{Broker, PartitionDescription, Result, TopicDescription, internal, now_micros, now_ms};
use crate::config::{MAX_REPLICATION_FACTOR, TopicConfig, TopicConfigPatch};
use crate::errors::from_log;
use crate::metadata::{MetadataStore, TopicMeta};
use crate::names::{validate_tenant, validate_topic};

/// Most partitions a topic may have.
pub(super) const MAX_PARTITIONS: u32 = 10_000;

/// Refuses a `min_insync_replicas` above the replicas a partition has: no
/// acks=all write could ever be acknowledged.
pub(super) fn check_min_insync(config: &TopicConfig, replication_factor: u32) -> Result<()> {
    if config.min_insync_replicas > i64::from(replication_factor) {
        return Err(ApiError::new(
            ErrorCode::InvalidConfig,
            format!(
                "invalid topic config: min_insync_replicas is {}, more than the topic's {} \
                 replicas: no acks=all write could be acknowledged",
                config.min_insync_replicas, replication_factor
            ),
        )
        .with_details(serde_json::json!({
            "field": "min_insync_replicas",
            "value": config.min_insync_replicas,
            "replication_factor": replication_factor,
        })));
    }
    Ok(())
}

/// The log partition holding a topic partition. The id keeps a deleted
/// topic's partitions apart from those of a new topic of the same name.
pub fn partition_key(topic: &TopicMeta, partition: u32) -> String {
    format!("{}/{}/{}/{}", topic.tenant, topic.name, topic.id, partition)
}

/// Whether a log partition key has the shape [`partition_key`] makes.
fn is_topic_partition_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    matches!(parts.as_slice(), [tenant, topic, id, partition]
        if validate_tenant(tenant).is_ok()
            && validate_topic(topic).is_ok()
            && id.parse::<u64>().is_ok()
            && partition.parse::<u32>().is_ok())
}

/// Creates log partitions concurrently (each is a durable journal write, and
/// a topic may have thousands). On failure, the ones created are deleted again.
pub(super) async fn create_partitions(
    log: &Arc<Log>,
    keys: Vec<String>,
    config: SegmentConfig,
) -> Result<()> {
    let mut tasks = JoinSet::new();
    for key in keys {
        let log = log.clone();
        tasks.spawn(async move {
            let result = log.create_partition(&key, Some(config)).await.map(|_| ());
            (key, result)
        });
    }
    let mut created = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((key, Ok(()))) => created.push(key),
            Ok((key, Err(e))) => {
                warn!(key, error = %e, "cannot create log partition");
                failure.get_or_insert(from_log(e));
            }
            Err(e) => {
                failure.get_or_insert(internal("partition creation task failed", e));
            }
        }
    }
    match failure {
        None => Ok(()),
        Some(e) => {
            delete_partitions(log, created).await;
            Err(e)
        }
    }
}

/// Deletes log partitions concurrently; ones already gone are fine, other
/// failures are logged (the next open's reconciliation retries them).
pub(super) async fn delete_partitions(log: &Arc<Log>, keys: Vec<String>) {
    let mut tasks = JoinSet::new();
    for key in keys {
        let log = log.clone();
        tasks.spawn(async move {
            match log.delete_partition(&key).await {
                Ok(()) | Err(LogError::UnknownPartition(_)) => {}
                Err(e) => warn!(key, error = %e, "cannot delete log partition"),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Makes the log hold exactly the partitions the metadata names: a crash
/// between the metadata change and the log change of a topic creation or
/// deletion leaves one side behind.
pub(super) async fn reconcile(log: &Arc<Log>, meta: &dyn MetadataStore) -> Result<u64> {
    let mut expected = HashSet::new();
    let mut last_id = 0;
    for tenant in meta.tenants().await? {
        for topic in meta.topics(&tenant).await? {
            last_id = last_id.max(topic.id);
            let config = topic.config.segment_config();
            let mut missing = Vec::new();
            for partition in 0..topic.partitions {
                let key = partition_key(&topic, partition);
                match log.partition(&key) {
                    Ok(p) if p.segment_config() != config => {
                        p.set_segment_config(config).await.map_err(from_log)?;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // History in the bucket: the local log continues after it.
                        let manifest = meta.manifest(&key).await?;
                        match (manifest.first(), manifest.last()) {
                            (Some(first), Some(last)) => {
                                // Retention or DeleteRecords may have moved the
                                // start past the first segment still listed.
                                let start = meta
                                    .log_start(&key)
                                    .await?
                                    .unwrap_or(0)
                                    .clamp(first.base_offset, last.end_offset);
                                info!(
                                    key,
                                    start,
                                    end = last.end_offset,
                                    "restoring a partition from its manifest"
                                );
                                log.create_partition_at(&key, Some(config), start, last.end_offset)
                                    .await
                                    .map_err(from_log)?;
                            }
                            _ => missing.push(key.clone()),
                        }
                    }
                }
                expected.insert(key);
            }
            if !missing.is_empty() {
                info!(
                    tenant,
                    topic = topic.name,
                    count = missing.len(),
                    "creating missing log partitions"
                );
                create_partitions(log, missing, config).await?;
            }
        }
    }
    let orphans: Vec<String> = log
        .partition_keys()
        .into_iter()
        .filter(|k| !expected.contains(k) && is_topic_partition_key(k))
        .collect();
    if !orphans.is_empty() {
        info!(
            count = orphans.len(),
            "deleting log partitions of deleted topics"
        );
        delete_partitions(log, orphans).await;
    }
    Ok(last_id)
}

impl Broker {
    /// A new topic id: wall-clock microseconds, always above every id handed
    /// out before, so a recreated topic never meets its predecessor's partitions.
    fn next_topic_id(&self) -> u64 {
        let mut last = self.last_topic_id.lock();
        *last = now_micros().max(last.saturating_add(1));
        *last
    }

    pub async fn create_topic(
        &self,
        tenant: &str,
        name: &str,
        partitions: u32,
        config: TopicConfigPatch,
    ) -> Result<TopicMeta> {
        self.create_topic_with(tenant, name, partitions, None, config)
            .await
    }

    /// Creates a topic whose partitions each have `replication_factor`
    /// replicas (`None`: [`crate::DEFAULT_REPLICATION_FACTOR`], or as many as
    /// there are live brokers if fewer).
    pub async fn create_topic_with(
        &self,
        tenant: &str,
        name: &str,
        partitions: u32,
        replication_factor: Option<u32>,
        config: TopicConfigPatch,
    ) -> Result<TopicMeta> {
        validate_tenant(tenant)?;
        validate_topic(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                format!("a topic has 1 to {MAX_PARTITIONS} partitions, not {partitions}"),
            )
            .with_details(
                serde_json::json!({ "partitions": partitions, "max_partitions": MAX_PARTITIONS }),
            ));
        }
        let topic_config = self.config.default_topic.patched(&config);
        topic_config.validate(self.config.max_request_bytes)?;
        let replication_factor = self.check_replication_factor(replication_factor)?;
        check_min_insync(&topic_config, replication_factor)?;
        self.check_tenant(tenant).await?;

        let _admin = self.admin.lock().await;
        if self.meta.topic(tenant, name).await?.is_some() {
            return Err(ApiError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic {name:?} already exists in tenant {tenant:?}"),
            )
            .with_details(serde_json::json!({ "tenant": tenant, "topic": name })));
        }
        let topic = TopicMeta {
            tenant: tenant.to_string(),
            name: name.to_string(),
            id: self.next_topic_id(),
            partitions,
            replication_factor,
            config: topic_config,
            created_ms: now_ms(),
        };
        // Log first: a topic is visible only once it can take records. A
        // crash in between leaves orphan partitions, which open deletes.
        let keys: Vec<String> = (0..partitions).map(|p| partition_key(&topic, p)).collect();
        create_partitions(&self.log, keys.clone(), topic_config.segment_config()).await?;
        if let Err(e) = self.meta.create_topic(topic.clone()).await {
            delete_partitions(&self.log, keys).await;
            return Err(e);
        }
        info!(
            tenant,
            topic = name,
            id = topic.id,
            partitions,
            "topic created"
        );
        Ok(topic)
    }

    /// Brokers that can hold replicas now (this node alone when single).
    pub(crate) fn live_brokers(&self) -> usize {
        self.cluster.brokers().len().max(1)
    }

    /// The replication factor a new topic gets: the one asked for if the
    /// live brokers can hold it, else the default capped at their number.
    pub(super) fn check_replication_factor(&self, asked: Option<u32>) -> Result<u32> {
        let brokers = self.live_brokers();
        let Some(asked) = asked else {
            let default = self.config.default_replication_factor as usize;
            return Ok(u32::try_from(default.clamp(1, brokers)).unwrap_or(1));
        };
        let details = serde_json::json!({
            "replication_factor": asked,
            "live_brokers": brokers,
            "max_replication_factor": MAX_REPLICATION_FACTOR,
        });
        if asked == 0 || asked > MAX_REPLICATION_FACTOR {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {asked} is not allowed: a topic has 1 to \
                     {MAX_REPLICATION_FACTOR} replicas per partition"
                ),
            )
            .with_details(details));
        }
        if asked as usize > brokers {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {asked} is larger than the {brokers} live broker(s): \
                     each replica of a partition needs a broker of its own"
                ),
            )
            .with_details(details));
        }
        Ok(asked)
    }

    pub async fn list_topics(&self, tenant: &str) -> Result<Vec<TopicMeta>> {
        self.meta.barrier().await?;
        self.check_tenant(tenant).await?;
        let mut topics = self.meta.topics(tenant).await?;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics
            .into_iter()
            .map(|t| self.with_replication_factor(t))
            .collect())
    }

    /// `topic` with its replication factor filled in where it records none
    /// (a topic from before replication factors were recorded).
    fn with_replication_factor(&self, mut topic: TopicMeta) -> TopicMeta {
        if topic.replication_factor == 0 {
            let wanted = topic.replicas_wanted(self.live_brokers());
            topic.replication_factor = u32::try_from(wanted).unwrap_or(u32::MAX);
        }
        topic
    }

    pub async fn describe_topic(&self, tenant: &str, name: &str) -> Result<TopicDescription> {
        self.meta.barrier().await?;
        let topic = self.with_replication_factor(self.topic(tenant, name).await?);
        let now = now_ms();
        let mut partitions = Vec::with_capacity(topic.partitions as usize);
        for partition in 0..topic.partitions {
            partitions.push(self.describe_partition(&topic, partition, now).await?);
        }
        Ok(TopicDescription { topic, partitions })
    }

    /// A partition led here, as `describe_topic` reports it.
    pub(crate) async fn describe_partition_here(
        &self,
        topic: &TopicMeta,
        partition: u32,
        now: i64,
    ) -> Result<PartitionDescription> {
        let p = self.local_partition(topic, partition).await?;
        self.check_readable(&p)?;
        let offsets = p.offsets();
        let segments = p.segments();
        let manifest = self.meta.manifest(&partition_key(topic, partition)).await?;
        let local_bytes = segments
            .iter()
            .filter(|s| s.end_offset > offsets.local_start)
            .map(|s| s.bytes)
            .sum();
        let waiting: Vec<_> = segments
            .iter()
            .filter(|s| s.sealed && !s.offloaded && s.end_offset > offsets.log_start)
            .collect();
        let remote = manifest.iter().filter(|m| m.end_offset > offsets.log_start);
        let (first, last) = (manifest.first(), manifest.last());
        Ok(PartitionDescription {
            partition,
            start_offset: offsets.log_start,
            end_offset: offsets.high_watermark,
            local_start_offset: offsets.local_start.max(offsets.log_start),
            local_bytes,
            remote_start_offset: first
                .map_or(offsets.log_start, |f| f.base_offset.max(offsets.log_start)),
            remote_end_offset: last.map_or(offsets.log_start, |l| l.end_offset),
            remote_bytes: remote.clone().map(|m| m.size).sum(),
            remote_segments: u32::try_from(remote.count()).unwrap_or(u32::MAX),
            offload_lag_bytes: waiting.iter().map(|s| s.bytes).sum(),
            offload_lag_ms: waiting
                .first()
                .and_then(|s| s.last_append_ms)
                .map_or(0, |t| now.saturating_sub(t).max(0)),
        })
    }

    pub async fn alter_topic(
        &self,
        tenant: &str,
        name: &str,
        patch: TopicConfigPatch,
    ) -> Result<TopicMeta> {
        validate_tenant(tenant)?;
        validate_topic(name)?;
        let _admin = self.admin.lock().await;
        let mut topic = self.topic(tenant, name).await?;
        let config = topic.config.patched(&patch);
        config.validate(self.config.max_request_bytes)?;
        check_min_insync(
            &config,
            u32::try_from(topic.replicas_wanted(self.live_brokers())).unwrap_or(u32::MAX),
        )?;
        let segment_changed = config.segment_config() != topic.config.segment_config();
        topic.config = config;
        // Metadata first: if pushing the segment config to the log fails
        // midway, the next open finishes it from the metadata.
        self.meta.update_topic(topic.clone()).await?;
        if segment_changed {
            for partition in 0..topic.partitions {
                self.partition(&topic, partition)?
                    .set_segment_config(config.segment_config())
                    .await
                    .map_err(from_log)?;
            }
        }
        info!(tenant, topic = name, ?config, "topic altered");
        Ok(topic)
    }

    pub async fn delete_topic(&self, tenant: &str, name: &str) -> Result<()> {
        validate_tenant(tenant)?;
        validate_topic(name)?;
        let _admin = self.admin.lock().await;
        let topic = self.topic(tenant, name).await?;
        // Metadata first: the topic is gone for clients at once; partitions
        // left behind by a crash are deleted at the next open.
        self.meta.delete_topic(tenant, name).await?;
        let keys = (0..topic.partitions)
            .map(|p| partition_key(&topic, p))
            .collect();
        delete_partitions(&self.log, keys).await;
        self.spread.lock().remove(&topic.id);
        info!(tenant, topic = name, id = topic.id, "topic deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_round_trip_the_shape_check() {
        let topic = TopicMeta {
            tenant: "acme".into(),
            name: "orders.v1".into(),
            id: 1_700_000_000_000_000,
            partitions: 3,
            replication_factor: 1,
            config: crate::config::TopicConfig::default(),
            created_ms: 0,
        };
        let key = partition_key(&topic, 2);
        assert_eq!(key, "acme/orders.v1/1700000000000000/2");
        assert!(is_topic_partition_key(&key));
        for other in [
            "acme/orders",
            "x/y/z/w",
            "acme/orders/1/2/3",
            "Acme/orders/1/2",
            "__internal",
        ] {
            assert!(!is_topic_partition_key(other), "{other}");
        }
    }
}
