//! The broker's view of the cluster: which node leads each partition, the
//! live brokers, and a way to run a partition operation on another node.
//! A single node leads everything ([`SingleNode`]); in a cluster the
//! metadata group assigns partitions (`strata-meta` implements the trait).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};

use crate::broker::{
    Acks, AppendResult, PartitionDescription, ProduceRecord, ReadRequest, ReadResult,
};
use crate::replication::{ReplicaAssignment, ReplicaChannel};

/// A broker as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub node_id: u64,
    /// HTTP and gRPC.
    pub api_addr: String,
    /// The advertised Kafka listener, `host:port`, if the node has one.
    pub kafka_addr: Option<String>,
    pub zone: String,
}

/// Who serves a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionLeader {
    /// This node.
    Local { epoch: u64 },
    /// Another node.
    Remote { node_id: u64, epoch: u64 },
}

/// An operation on partitions, sent to the node that leads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionOp {
    /// Records that all name their partition (all led by the receiver).
    Produce {
        tenant: String,
        topic: String,
        records: Vec<ProduceRecord>,
        acks: Acks,
    },
    Append {
        tenant: String,
        topic: String,
        partition: u32,
        records: Vec<ProduceRecord>,
        expected_offset: Option<u64>,
        acks: Acks,
    },
    Read {
        tenant: String,
        topic: String,
        partition: u32,
        request: ReadRequest,
    },
    Describe {
        tenant: String,
        topic: String,
        partition: u32,
    },
    /// Prepares a leadership transfer of the partition (by log key) led at
    /// `epoch` to replica `to`: the leader stops taking writes and waits up
    /// to `wait` until `to` holds its whole log. An election follows.
    HandOff {
        partition_key: String,
        epoch: u64,
        to: u64,
        wait: std::time::Duration,
    },
    /// Waits up to `wait` for the end offset to pass `after`; returns it.
    WaitEnd {
        tenant: String,
        topic: String,
        partition: u32,
        after: u64,
        wait: std::time::Duration,
    },
}

/// The result of a [`PartitionOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionReply {
    Produced(Vec<(u32, u64)>),
    Appended(AppendResult),
    Read(ReadResult),
    Described(Box<PartitionDescription>),
    End(u64),
    /// The transfer's target holds the leader's log up to this end offset.
    HandedOff(u64),
}

#[async_trait]
pub trait ClusterView: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> u64;
    /// Whether this node is the whole cluster (every partition is local).
    fn is_single_node(&self) -> bool {
        false
    }
    /// The live brokers, by node id; empty for a single node.
    fn brokers(&self) -> Vec<BrokerEndpoint>;
    /// The leader of a partition (by log partition key) and its leader
    /// epoch; `None` if the metadata group assigned it to no one (a single
    /// node, or a topic older than the cluster), which means "this node".
    fn leader(&self, partition_key: &str) -> Option<(u64, u64)>;
    /// Runs `op` on node `node_id`'s broker.
    async fn forward(&self, node_id: u64, op: PartitionOp) -> Result<PartitionReply, ApiError>;
    /// A partition's replicas (the leader first) and its in-sync replicas as
    /// the metadata records them; `None` where it has no assignment.
    fn replicas(&self, _partition_key: &str) -> Option<(Vec<u64>, Vec<u64>)> {
        None
    }
    /// Every partition assignment (replicas, leader, epoch); empty for a single node.
    fn assignments(&self) -> Vec<ReplicaAssignment> {
        Vec::new()
    }
    /// Records the in-sync replicas of a partition this node leads at `epoch`.
    async fn report_isr(
        &self,
        _partition_key: &str,
        _epoch: u64,
        _isr: Vec<u64>,
    ) -> Result<(), ApiError> {
        Ok(())
    }
    /// Opens the replication stream to node `leader`.
    async fn open_replication(&self, leader: u64) -> Result<Box<dyn ReplicaChannel>, ApiError> {
        Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("this node cannot replicate from node {leader}"),
        ))
    }
}

/// One node serving every partition.
pub struct SingleNode;

#[async_trait]
impl ClusterView for SingleNode {
    fn node_id(&self) -> u64 {
        1
    }

    fn is_single_node(&self) -> bool {
        true
    }

    fn brokers(&self) -> Vec<BrokerEndpoint> {
        Vec::new()
    }

    fn leader(&self, _partition_key: &str) -> Option<(u64, u64)> {
        None
    }

    async fn forward(&self, node_id: u64, _op: PartitionOp) -> Result<PartitionReply, ApiError> {
        Err(ApiError::new(
            ErrorCode::Internal,
            format!("a single node cannot forward to node {node_id}"),
        ))
    }
}

/// A partition led elsewhere was asked for on a node that must serve it
/// itself (a forwarded operation that raced a leader change): retryable.
pub fn not_leader(partition_key: &str, leader: Option<u64>) -> ApiError {
    ApiError::new(
        ErrorCode::NotLeader,
        format!("this node does not lead partition {partition_key}; retry"),
    )
    .with_details(serde_json::json!({ "not_leader": true, "leader_id": leader }))
}
