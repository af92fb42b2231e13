//! The broker's metadata store and cluster view, backed by the metadata
//! group: reads from the state applied on this node, changes through Raft,
//! partition operations for other nodes over the peer protocol.

use std::sync::Arc;

use async_trait::async_trait;
use strata_api::{ApiError, ErrorCode};
use strata_broker::replication::{ReplicaAssignment, ReplicaChannel};
use strata_broker::{
    BrokerEndpoint, ChangeOutcome, ClusterView, MetadataBackend, MetadataChange, MetadataState,
    PartitionOp, PartitionReply,
};

use crate::node::MetaNode;
use crate::placement;
use crate::replication::ReplicaStream;
use crate::types::Command;

/// A [`strata_broker::MetadataStore`] replicated by the metadata group.
pub struct RaftMetadataStore {
    node: Arc<MetaNode>,
}

impl RaftMetadataStore {
    pub fn new(node: Arc<MetaNode>) -> RaftMetadataStore {
        RaftMetadataStore { node }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl MetadataBackend for RaftMetadataStore {
    fn read<T>(&self, read: impl FnOnce(&MetadataState) -> T) -> T {
        self.node.read(|s| read(&s.metadata))
    }

    async fn change(&self, change: MetadataChange) -> Result<ChangeOutcome, ApiError> {
        // New partitions are placed here, from this node's view of the live
        // brokers; the command carries the decision.
        let placement = match &change {
            MetadataChange::CreateTopic { topic } | MetadataChange::UpdateTopic { topic } => {
                self.node.read(|s| {
                    let now = now_ms();
                    let wanted = topic.replicas_wanted(placement::live_brokers(s, now));
                    let unplaced = (0..topic.partitions)
                        .filter(|p| {
                            !s.assignments
                                .contains_key(&strata_broker::partition_key(topic, *p))
                        })
                        .map(|p| (p, wanted));
                    placement::place(s, unplaced, now).into_iter().collect()
                })
            }
            _ => Vec::new(),
        };
        self.node
            .write(Command::Metadata { change, placement })
            .await
    }

    async fn barrier(&self) -> Result<(), ApiError> {
        self.node.barrier().await
    }
}

/// The broker's [`ClusterView`] from the metadata group.
pub struct RaftClusterView {
    node: Arc<MetaNode>,
}

impl RaftClusterView {
    pub fn new(node: Arc<MetaNode>) -> RaftClusterView {
        RaftClusterView { node }
    }
}

#[async_trait]
impl ClusterView for RaftClusterView {
    fn node_id(&self) -> u64 {
        self.node.id()
    }

    fn brokers(&self) -> Vec<BrokerEndpoint> {
        let now = now_ms();
        self.node.read(|s| {
            s.brokers
                .values()
                .filter(|b| placement::is_live_broker(b, now))
                .map(|b| BrokerEndpoint {
                    node_id: b.node_id,
                    api_addr: b.api_addr.clone(),
                    kafka_addr: b.kafka_addr.clone(),
                    zone: b.zone.clone(),
                })
                .collect()
        })
    }

    fn leader(&self, partition_key: &str) -> Option<(u64, u64)> {
        self.node.read(|s| {
            s.assignments
                .get(partition_key)
                .map(|a| (a.leader, a.leader_epoch))
        })
    }

    fn replicas(&self, partition_key: &str) -> Option<(Vec<u64>, Vec<u64>)> {
        self.node.read(|s| {
            s.assignments
                .get(partition_key)
                .map(|a| (a.replicas.clone(), a.isr.clone()))
        })
    }

    fn assignments(&self) -> Vec<ReplicaAssignment> {
        self.node.read(|s| {
            // Keys are `tenant/topic/id/partition`: the topic's by its prefix.
            let min_insync: std::collections::HashMap<String, usize> = s
                .metadata
                .all_topics()
                .filter_map(|t| {
                    let key = strata_broker::partition_key(t, 0);
                    let (prefix, _) = key.rsplit_once('/')?;
                    let n = usize::try_from(t.config.min_insync_replicas).unwrap_or(1);
                    Some((prefix.to_string(), n))
                })
                .collect();
            s.assignments
                .iter()
                .map(|(key, a)| ReplicaAssignment {
                    key: key.clone(),
                    leader: a.leader,
                    leader_epoch: a.leader_epoch,
                    replicas: a.replicas.clone(),
                    min_insync: key
                        .rsplit_once('/')
                        .and_then(|(prefix, _)| min_insync.get(prefix).copied())
                        .unwrap_or(1),
                })
                .collect()
        })
    }

    async fn report_isr(
        &self,
        partition_key: &str,
        epoch: u64,
        isr: Vec<u64>,
    ) -> Result<(), ApiError> {
        self.node
            .write(Command::UpdateIsr {
                partition: partition_key.to_string(),
                leader_epoch: epoch,
                isr,
            })
            .await
            .map(drop)
    }

    async fn open_replication(&self, leader: u64) -> Result<Box<dyn ReplicaChannel>, ApiError> {
        let addr = self.peer_addr(leader)?;
        Ok(Box::new(ReplicaStream::open(&addr).await?))
    }

    async fn forward(&self, node_id: u64, op: PartitionOp) -> Result<PartitionReply, ApiError> {
        let addr = self.peer_addr(node_id)?;
        self.node.forward_partition_op(&addr, &op).await
    }
}

impl RaftClusterView {
    /// The peer address node `node_id` registered.
    fn peer_addr(&self, node_id: u64) -> Result<String, ApiError> {
        self.node
            .read(|s| s.brokers.get(&node_id).map(|b| b.peer_addr.clone()))
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!("node {node_id} leads this partition but its address is unknown"),
                )
            })
    }
}
