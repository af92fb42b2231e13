//! Metadata behind a trait: tenants, topics and their configs, committed
//! group offsets, segment manifests. The state and its validated changes are
//! a plain value ([`MetadataState`], [`MetadataChange`]); a store decides only
//! how changes are made durable: [`LocalMetadataStore`] rewrites a file in the
//! data directory, the metadata Raft group (`strata-meta`) replicates them.

mod local;
mod state;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_api::ApiError;

use crate::config::TopicConfig;

pub use local::LocalMetadataStore;
pub use state::{ChangeOutcome, DEFAULT_TENANT, MetadataChange, MetadataState};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub tenant: String,
    pub name: String,
    /// Distinguishes a topic from an earlier one of the same name.
    pub id: u64,
    pub partitions: u32,
    /// Copies of each partition, fixed when the topic is created. 0: a topic
    /// from before replication factors were recorded, which gets up to
    /// [`DEFAULT_REPLICATION_FACTOR`], as many as there are brokers.
    #[serde(default)]
    pub replication_factor: u32,
    pub config: TopicConfig,
    pub created_ms: i64,
}

/// Replicas per partition when a topic asks for none: survives losing one
/// broker (a majority of three is two), as many as there are brokers below three.
pub const DEFAULT_REPLICATION_FACTOR: u32 = 3;

impl TopicMeta {
    /// The replicas each partition is meant to have, given `brokers` brokers
    /// when the topic records no replication factor.
    pub fn replicas_wanted(&self, brokers: usize) -> usize {
        match self.replication_factor {
            0 => (DEFAULT_REPLICATION_FACTOR as usize).min(brokers.max(1)),
            n => n as usize,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    #[serde(default)]
    pub metadata: String,
}

/// One segment object in the bucket, as the partition's manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegmentRef {
    pub base_offset: u64,
    /// One past the last offset.
    pub end_offset: u64,
    /// The object's key in the store (without the store's URL).
    pub key: String,
    /// The object's size in bytes.
    pub size: u64,
    /// Bytes of record batches in it.
    pub batch_bytes: u64,
    pub record_count: u64,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    /// Wall-clock time of the segment's last append (for time retention).
    pub last_append_ms: Option<i64>,
    /// When the object was committed to the manifest.
    pub committed_ms: i64,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Waits until this node's view includes every change acknowledged
    /// anywhere before the call (a no-op for a single local store). Reads
    /// are served from the local view; API reads call this first.
    async fn barrier(&self) -> Result<(), ApiError>;
    async fn tenants(&self) -> Result<Vec<String>, ApiError>;
    async fn create_tenant(&self, tenant: &str) -> Result<(), ApiError>;
    async fn topics(&self, tenant: &str) -> Result<Vec<TopicMeta>, ApiError>;
    async fn topic(&self, tenant: &str, name: &str) -> Result<Option<TopicMeta>, ApiError>;
    /// Fails with `topic_already_exists` if the name is taken.
    async fn create_topic(&self, topic: TopicMeta) -> Result<(), ApiError>;
    async fn update_topic(&self, topic: TopicMeta) -> Result<(), ApiError>;
    async fn delete_topic(&self, tenant: &str, name: &str) -> Result<(), ApiError>;
    async fn commit_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: &[GroupOffset],
    ) -> Result<(), ApiError>;
    async fn fetch_offsets(
        &self,
        tenant: &str,
        group: &str,
    ) -> Result<Option<Vec<GroupOffset>>, ApiError>;
    /// The groups of `tenant` that have at least one committed offset, sorted.
    async fn groups(&self, tenant: &str) -> Result<Vec<String>, ApiError>;
    /// Forgets a group's committed offsets; `false` if it had none.
    async fn delete_group(&self, tenant: &str, group: &str) -> Result<bool, ApiError>;
    /// A partition's manifest (its segments in the bucket), in offset order.
    /// `partition` is the log partition key (`tenant/topic/id/partition`).
    async fn manifest(&self, partition: &str) -> Result<Vec<RemoteSegmentRef>, ApiError>;
    /// Up to `limit` manifest entries of a partition, from the one holding
    /// `offset` on (or from the first that ends past it): what a read needs,
    /// without copying a long manifest on every read.
    async fn manifest_from(
        &self,
        partition: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<RemoteSegmentRef>, ApiError>;
    /// Every manifest, by log partition key.
    async fn manifests(&self) -> Result<BTreeMap<String, Vec<RemoteSegmentRef>>, ApiError>;
    /// Commits an uploaded segment to the manifest. It must continue the
    /// manifest exactly (start where the last one ends) unless the manifest
    /// is empty; re-committing the same key is a no-op.
    async fn commit_segment(
        &self,
        partition: &str,
        segment: RemoteSegmentRef,
    ) -> Result<(), ApiError>;
    /// Commits several uploaded segments of one partition, in order, all
    /// or none, under the rules of [`Self::commit_segment`].
    async fn commit_segments(
        &self,
        partition: &str,
        segments: Vec<RemoteSegmentRef>,
    ) -> Result<(), ApiError>;
    /// Removes the segments that end at or below `offset` (retention);
    /// returns them, so their objects can be deleted next.
    async fn remove_segments_below(
        &self,
        partition: &str,
        offset: u64,
    ) -> Result<Vec<RemoteSegmentRef>, ApiError>;
    /// Forgets a partition's manifest and log start (its topic was
    /// deleted); returns the manifest.
    async fn drop_manifest(&self, partition: &str) -> Result<Vec<RemoteSegmentRef>, ApiError>;
    /// Records that a partition's log now starts at `offset` (never back).
    async fn advance_log_start(&self, partition: &str, offset: u64) -> Result<(), ApiError>;
    /// The partition's recorded log start offset, if it ever advanced.
    async fn log_start(&self, partition: &str) -> Result<Option<u64>, ApiError>;
    /// Reserves `count` idempotent-producer ids; returns the first.
    async fn allocate_producer_ids(&self, count: u32) -> Result<i64, ApiError>;
}

/// How a store keeps a [`MetadataState`]: a local view to read, and a way to
/// make a change durable. Every such store is a [`MetadataStore`].
#[async_trait]
pub trait MetadataBackend: Send + Sync + 'static {
    /// Runs `read` on this node's current view.
    fn read<T>(&self, read: impl FnOnce(&MetadataState) -> T) -> T;
    /// Makes `change` durable and applies it; on return, [`Self::read`]
    /// sees it.
    async fn change(&self, change: MetadataChange) -> Result<ChangeOutcome, ApiError>;
    /// See [`MetadataStore::barrier`].
    async fn barrier(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Skips changes that the local view shows would change nothing. Only used
/// where a stale view is harmless (the change is retried or idempotent).
async fn change_unless_noop<B: MetadataBackend>(
    backend: &B,
    change: MetadataChange,
) -> Result<ChangeOutcome, ApiError> {
    if backend.read(|s| s.is_noop(&change)) {
        return Ok(match change {
            MetadataChange::DeleteGroup { .. } => ChangeOutcome::Existed(false),
            MetadataChange::RemoveSegmentsBelow { .. } | MetadataChange::DropManifest { .. } => {
                ChangeOutcome::Segments(Vec::new())
            }
            _ => ChangeOutcome::Done,
        });
    }
    backend.change(change).await
}

fn segments(outcome: ChangeOutcome) -> Vec<RemoteSegmentRef> {
    match outcome {
        ChangeOutcome::Segments(s) => s,
        _ => Vec::new(),
    }
}

#[async_trait]
impl<B: MetadataBackend> MetadataStore for B {
    async fn barrier(&self) -> Result<(), ApiError> {
        MetadataBackend::barrier(self).await
    }

    async fn tenants(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.read(|s| s.tenants()))
    }

    async fn create_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        let tenant = tenant.to_string();
        change_unless_noop(self, MetadataChange::CreateTenant { tenant })
            .await
            .map(drop)
    }

    async fn topics(&self, tenant: &str) -> Result<Vec<TopicMeta>, ApiError> {
        self.read(|s| s.topics(tenant))
    }

    async fn topic(&self, tenant: &str, name: &str) -> Result<Option<TopicMeta>, ApiError> {
        Ok(self.read(|s| s.topic(tenant, name)))
    }

    async fn create_topic(&self, topic: TopicMeta) -> Result<(), ApiError> {
        self.change(MetadataChange::CreateTopic { topic })
            .await
            .map(drop)
    }

    async fn update_topic(&self, topic: TopicMeta) -> Result<(), ApiError> {
        self.change(MetadataChange::UpdateTopic { topic })
            .await
            .map(drop)
    }

    async fn delete_topic(&self, tenant: &str, name: &str) -> Result<(), ApiError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.change(MetadataChange::DeleteTopic { tenant, name })
            .await
            .map(drop)
    }

    async fn commit_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: &[GroupOffset],
    ) -> Result<(), ApiError> {
        self.change(MetadataChange::CommitOffsets {
            tenant: tenant.to_string(),
            group: group.to_string(),
            offsets: offsets.to_vec(),
        })
        .await
        .map(drop)
    }

    async fn fetch_offsets(
        &self,
        tenant: &str,
        group: &str,
    ) -> Result<Option<Vec<GroupOffset>>, ApiError> {
        Ok(self.read(|s| s.fetch_offsets(tenant, group)))
    }

    async fn groups(&self, tenant: &str) -> Result<Vec<String>, ApiError> {
        self.read(|s| s.groups(tenant))
    }

    async fn delete_group(&self, tenant: &str, group: &str) -> Result<bool, ApiError> {
        let change = MetadataChange::DeleteGroup {
            tenant: tenant.to_string(),
            group: group.to_string(),
        };
        Ok(matches!(
            change_unless_noop(self, change).await?,
            ChangeOutcome::Existed(true)
        ))
    }

    async fn manifest(&self, partition: &str) -> Result<Vec<RemoteSegmentRef>, ApiError> {
        Ok(self.read(|s| s.manifest(partition)))
    }

    async fn manifest_from(
        &self,
        partition: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<RemoteSegmentRef>, ApiError> {
        Ok(self.read(|s| s.manifest_from(partition, offset, limit)))
    }

    async fn manifests(&self) -> Result<BTreeMap<String, Vec<RemoteSegmentRef>>, ApiError> {
        Ok(self.read(|s| s.manifests()))
    }

    async fn commit_segment(
        &self,
        partition: &str,
        segment: RemoteSegmentRef,
    ) -> Result<(), ApiError> {
        let partition = partition.to_string();
        self.change(MetadataChange::CommitSegment { partition, segment })
            .await
            .map(drop)
    }

    async fn commit_segments(
        &self,
        partition: &str,
        segments: Vec<RemoteSegmentRef>,
    ) -> Result<(), ApiError> {
        if segments.is_empty() {
            return Ok(());
        }
        let partition = partition.to_string();
        self.change(MetadataChange::CommitSegments {
            partition,
            segments,
        })
        .await
        .map(drop)
    }

    async fn remove_segments_below(
        &self,
        partition: &str,
        offset: u64,
    ) -> Result<Vec<RemoteSegmentRef>, ApiError> {
        let partition = partition.to_string();
        change_unless_noop(
            self,
            MetadataChange::RemoveSegmentsBelow { partition, offset },
        )
        .await
        .map(segments)
    }

    async fn drop_manifest(&self, partition: &str) -> Result<Vec<RemoteSegmentRef>, ApiError> {
        let partition = partition.to_string();
        change_unless_noop(self, MetadataChange::DropManifest { partition })
            .await
            .map(segments)
    }

    async fn advance_log_start(&self, partition: &str, offset: u64) -> Result<(), ApiError> {
        let partition = partition.to_string();
        change_unless_noop(self, MetadataChange::AdvanceLogStart { partition, offset })
            .await
            .map(drop)
    }

    async fn log_start(&self, partition: &str) -> Result<Option<u64>, ApiError> {
        Ok(self.read(|s| s.log_start(partition)))
    }

    async fn allocate_producer_ids(&self, count: u32) -> Result<i64, ApiError> {
        match self
            .change(MetadataChange::AllocateProducerIds { count })
            .await?
        {
            ChangeOutcome::ProducerIds(first) => Ok(first),
            other => Err(ApiError::new(
                strata_api::ErrorCode::Internal,
                format!("unexpected outcome of a producer id allocation: {other:?}"),
            )),
        }
    }
}
