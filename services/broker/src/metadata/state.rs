//! The metadata as a value: what every store holds, and the one place where
//! changes are validated and applied. A change is a plain serializable value
//! applied deterministically (same state + same change = same result on every
//! machine), so the file store and the metadata Raft group share this code.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};

use super::{GroupOffset, RemoteSegmentRef, TopicMeta};

/// The tenant every store has, so a fresh broker is usable at once.
pub const DEFAULT_TENANT: &str = "default";

/// Tenants, topics, committed group offsets and segment manifests. Maps are
/// ordered so a serialized state is stable and diffable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    tenants: BTreeSet<String>,
    /// tenant → topic name → topic.
    topics: BTreeMap<String, BTreeMap<String, TopicMeta>>,
    /// tenant → group → committed offsets, sorted by (topic, partition).
    groups: BTreeMap<String, BTreeMap<String, Vec<GroupOffset>>>,
    /// log partition key → its segments in the bucket, in offset order.
    #[serde(default)]
    manifests: BTreeMap<String, Vec<RemoteSegmentRef>>,
    /// log partition key → its log start offset (retention, DeleteRecords),
    /// so a new leader of the partition starts where the old one had.
    #[serde(default)]
    log_starts: BTreeMap<String, u64>,
    /// The next idempotent-producer id to hand out.
    #[serde(default = "first_producer_id")]
    next_producer_id: i64,
}

/// Producer ids start here; lower ones are left for ids handed out before
/// the metadata group allocated them.
fn first_producer_id() -> i64 {
    1 << 56
}

/// One change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetadataChange {
    CreateTenant {
        tenant: String,
    },
    /// Fails with `topic_already_exists` if the name is taken.
    CreateTopic {
        topic: TopicMeta,
    },
    /// Replaces the topic with the same tenant, name and id.
    UpdateTopic {
        topic: TopicMeta,
    },
    DeleteTopic {
        tenant: String,
        name: String,
    },
    CommitOffsets {
        tenant: String,
        group: String,
        offsets: Vec<GroupOffset>,
    },
    DeleteGroup {
        tenant: String,
        group: String,
    },
    /// Must continue the manifest exactly unless it is empty; re-committing
    /// the same key is a no-op.
    CommitSegment {
        partition: String,
        segment: RemoteSegmentRef,
    },
    /// Several segments of one partition, in order, all or none (one
    /// metadata write per offload pass instead of one per segment).
    CommitSegments {
        partition: String,
        segments: Vec<RemoteSegmentRef>,
    },
    RemoveSegmentsBelow {
        partition: String,
        offset: u64,
    },
    DropManifest {
        partition: String,
    },
    /// Records a partition's log start offset; never moves it back.
    AdvanceLogStart {
        partition: String,
        offset: u64,
    },
    /// Reserves `count` idempotent-producer ids (a block a broker hands out).
    AllocateProducerIds {
        count: u32,
    },
}

/// What a successful change returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    Done,
    /// Whether something existed to be removed (`DeleteGroup`).
    Existed(bool),
    /// Manifest entries removed (`RemoveSegmentsBelow`, `DropManifest`).
    Segments(Vec<RemoteSegmentRef>),
    /// The first of the producer ids reserved (`AllocateProducerIds`).
    ProducerIds(i64),
}

impl Default for MetadataState {
    fn default() -> Self {
        MetadataState {
            tenants: BTreeSet::from([DEFAULT_TENANT.to_string()]),
            topics: BTreeMap::new(),
            groups: BTreeMap::new(),
            manifests: BTreeMap::new(),
            log_starts: BTreeMap::new(),
            next_producer_id: first_producer_id(),
        }
    }
}

impl MetadataState {
    /// Restores invariants a stored state may lack (older files).
    pub fn normalize(&mut self) {
        self.tenants.insert(DEFAULT_TENANT.to_string());
    }

    /// Whether `change` would leave the state as it is, so a store can skip
    /// persisting it. Conservative: `false` when unsure.
    pub fn is_noop(&self, change: &MetadataChange) -> bool {
        match change {
            MetadataChange::CreateTenant { tenant } => self.tenants.contains(tenant),
            MetadataChange::DeleteGroup { tenant, group } => !self
                .groups
                .get(tenant)
                .is_some_and(|g| g.contains_key(group)),
            MetadataChange::RemoveSegmentsBelow { partition, offset } => self
                .manifests
                .get(partition)
                .and_then(|m| m.first())
                .is_none_or(|f| f.end_offset > *offset),
            MetadataChange::DropManifest { partition } => {
                !self.manifests.contains_key(partition) && !self.log_starts.contains_key(partition)
            }
            MetadataChange::AdvanceLogStart { partition, offset } => {
                self.log_starts.get(partition).is_some_and(|s| s >= offset)
            }
            _ => false,
        }
    }

    /// Validates and applies `change`. On error the state is unchanged.
    pub fn apply(&mut self, change: &MetadataChange) -> Result<ChangeOutcome, ApiError> {
        match change {
            MetadataChange::CreateTenant { tenant } => {
                self.tenants.insert(tenant.clone());
                Ok(ChangeOutcome::Done)
            }
            MetadataChange::CreateTopic { topic } => self.create_topic(topic),
            MetadataChange::UpdateTopic { topic } => {
                let slot = self
                    .topics
                    .get_mut(&topic.tenant)
                    .and_then(|t| t.get_mut(&topic.name))
                    .filter(|t| t.id == topic.id)
                    .ok_or_else(|| topic_not_found(&topic.tenant, &topic.name))?;
                *slot = topic.clone();
                Ok(ChangeOutcome::Done)
            }
            MetadataChange::DeleteTopic { tenant, name } => {
                self.topics
                    .get_mut(tenant)
                    .and_then(|t| t.remove(name))
                    .ok_or_else(|| topic_not_found(tenant, name))?;
                // As Kafka: a deleted topic's committed offsets go with it, so a
                // new topic of the same name does not inherit them.
                if let Some(groups) = self.groups.get_mut(tenant) {
                    for offsets in groups.values_mut() {
                        offsets.retain(|o| &o.topic != name);
                    }
                }
                Ok(ChangeOutcome::Done)
            }
            MetadataChange::CommitOffsets {
                tenant,
                group,
                offsets,
            } => self.commit_offsets(tenant, group, offsets),
            MetadataChange::DeleteGroup { tenant, group } => {
                let removed = self.groups.get_mut(tenant).and_then(|g| g.remove(group));
                if self.groups.get(tenant).is_some_and(BTreeMap::is_empty) {
                    self.groups.remove(tenant);
                }
                Ok(ChangeOutcome::Existed(
                    removed.is_some_and(|offsets| !offsets.is_empty()),
                ))
            }
            MetadataChange::CommitSegment { partition, segment } => {
                self.commit_segments(partition, std::slice::from_ref(segment))
            }
            MetadataChange::CommitSegments {
                partition,
                segments,
            } => self.commit_segments(partition, segments),
            MetadataChange::RemoveSegmentsBelow { partition, offset } => {
                let Some(manifest) = self.manifests.get_mut(partition) else {
                    return Ok(ChangeOutcome::Segments(Vec::new()));
                };
                let keep = manifest
                    .iter()
                    .position(|m| m.end_offset > *offset)
                    .unwrap_or(manifest.len());
                Ok(ChangeOutcome::Segments(manifest.drain(..keep).collect()))
            }
            MetadataChange::DropManifest { partition } => {
                self.log_starts.remove(partition);
                Ok(ChangeOutcome::Segments(
                    self.manifests.remove(partition).unwrap_or_default(),
                ))
            }
            MetadataChange::AdvanceLogStart { partition, offset } => {
                let start = self.log_starts.entry(partition.clone()).or_insert(0);
                *start = (*start).max(*offset);
                Ok(ChangeOutcome::Done)
            }
            MetadataChange::AllocateProducerIds { count } => {
                let first = self.next_producer_id;
                let next = first
                    .checked_add(i64::from(*count))
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ApiError::new(ErrorCode::Unavailable, "producer ids are exhausted")
                    })?;
                self.next_producer_id = next;
                Ok(ChangeOutcome::ProducerIds(first))
            }
        }
    }

    fn create_topic(&mut self, topic: &TopicMeta) -> Result<ChangeOutcome, ApiError> {
        if !self.tenants.contains(&topic.tenant) {
            return Err(tenant_not_found(&topic.tenant));
        }
        let topics = self.topics.entry(topic.tenant.clone()).or_default();
        if topics.contains_key(&topic.name) {
            return Err(ApiError::new(
                ErrorCode::TopicAlreadyExists,
                format!(
                    "topic {:?} already exists in tenant {:?}",
                    topic.name, topic.tenant
                ),
            )
            .with_details(serde_json::json!({ "tenant": topic.tenant, "topic": topic.name })));
        }
        topics.insert(topic.name.clone(), topic.clone());
        Ok(ChangeOutcome::Done)
    }

    fn commit_offsets(
        &mut self,
        tenant: &str,
        group: &str,
        offsets: &[GroupOffset],
    ) -> Result<ChangeOutcome, ApiError> {
        if !self.tenants.contains(tenant) {
            return Err(tenant_not_found(tenant));
        }
        let stored = self
            .groups
            .entry(tenant.to_string())
            .or_default()
            .entry(group.to_string())
            .or_default();
        for offset in offsets {
            match stored.binary_search_by(|o| {
                (o.topic.as_str(), o.partition).cmp(&(&offset.topic, offset.partition))
            }) {
                Ok(i) => {
                    if let Some(slot) = stored.get_mut(i) {
                        *slot = offset.clone();
                    }
                }
                Err(i) => stored.insert(i, offset.clone()),
            }
        }
        Ok(ChangeOutcome::Done)
    }

    /// Appends `segments` to the manifest, each continuing it exactly
    /// (re-committing a key is a no-op); on any error nothing changes.
    fn commit_segments(
        &mut self,
        partition: &str,
        segments: &[RemoteSegmentRef],
    ) -> Result<ChangeOutcome, ApiError> {
        let mut manifest = self.manifests.get(partition).cloned().unwrap_or_default();
        for segment in segments {
            if manifest.iter().any(|m| m.key == segment.key) {
                continue;
            }
            if let Some(last) = manifest.last()
                && last.end_offset != segment.base_offset
            {
                return Err(ApiError::new(
                    ErrorCode::Internal,
                    format!(
                        "segment {}..{} does not continue the manifest of {partition}, which ends at {}",
                        segment.base_offset, segment.end_offset, last.end_offset
                    ),
                ));
            }
            manifest.push(segment.clone());
        }
        if !manifest.is_empty() {
            self.manifests.insert(partition.to_string(), manifest);
        }
        Ok(ChangeOutcome::Done)
    }

    pub fn tenants(&self) -> Vec<String> {
        self.tenants.iter().cloned().collect()
    }

    pub fn topics(&self, tenant: &str) -> Result<Vec<TopicMeta>, ApiError> {
        if !self.tenants.contains(tenant) {
            return Err(tenant_not_found(tenant));
        }
        Ok(self
            .topics
            .get(tenant)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default())
    }

    pub fn topic(&self, tenant: &str, name: &str) -> Option<TopicMeta> {
        self.topics.get(tenant).and_then(|t| t.get(name)).cloned()
    }

    /// Every topic of every tenant.
    pub fn all_topics(&self) -> impl Iterator<Item = &TopicMeta> {
        self.topics.values().flat_map(|t| t.values())
    }

    pub fn fetch_offsets(&self, tenant: &str, group: &str) -> Option<Vec<GroupOffset>> {
        self.groups.get(tenant).and_then(|g| g.get(group)).cloned()
    }

    /// The groups of `tenant` that have at least one committed offset, sorted.
    pub fn groups(&self, tenant: &str) -> Result<Vec<String>, ApiError> {
        if !self.tenants.contains(tenant) {
            return Err(tenant_not_found(tenant));
        }
        // A group whose every offset went with a deleted topic no longer exists.
        Ok(self
            .groups
            .get(tenant)
            .map(|groups| {
                groups
                    .iter()
                    .filter(|(_, offsets)| !offsets.is_empty())
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn manifest(&self, partition: &str) -> Vec<RemoteSegmentRef> {
        self.manifests.get(partition).cloned().unwrap_or_default()
    }

    pub fn manifest_from(
        &self,
        partition: &str,
        offset: u64,
        limit: usize,
    ) -> Vec<RemoteSegmentRef> {
        let Some(manifest) = self.manifests.get(partition) else {
            return Vec::new();
        };
        // Entries are contiguous and in offset order: search by end offset.
        let first = manifest.partition_point(|m| m.end_offset <= offset);
        manifest.iter().skip(first).take(limit).cloned().collect()
    }

    /// A partition's recorded log start offset, if it ever advanced.
    pub fn log_start(&self, partition: &str) -> Option<u64> {
        self.log_starts.get(partition).copied()
    }

    pub fn manifests(&self) -> BTreeMap<String, Vec<RemoteSegmentRef>> {
        self.manifests.clone()
    }
}

fn tenant_not_found(tenant: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TenantNotFound,
        format!("tenant {tenant:?} does not exist"),
    )
    .with_details(serde_json::json!({ "tenant": tenant }))
}

fn topic_not_found(tenant: &str, name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TopicNotFound,
        format!("topic {name:?} does not exist in tenant {tenant:?}"),
    )
    .with_details(serde_json::json!({ "tenant": tenant, "topic": name }))
}
