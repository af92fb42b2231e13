//! The Raft type configuration and the commands the metadata group agrees on.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use strata_api::ApiError;
use strata_broker::{ChangeOutcome, MetadataChange, MetadataState};

/// A node of the cluster, as Raft's membership records it: where its peer
/// listener is.
pub type Node = openraft::BasicNode;
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Strata's metadata group.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;

/// A broker as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node_id: NodeId,
    /// Internal traffic (Raft, forwarding).
    pub peer_addr: String,
    /// HTTP and gRPC, as clients should reach it.
    pub api_addr: String,
    /// The Kafka listener as advertised to clients; `None` if it has none.
    pub kafka_addr: Option<String>,
    /// Rack or zone label used to spread replicas.
    pub zone: String,
    /// Whether the node votes in the metadata group and/or serves partitions.
    pub roles: Vec<String>,
    /// The proposer's wall clock at its last heartbeat.
    pub last_heartbeat_ms: i64,
}

/// One command of the replicated log. Everything a command needs is inside
/// it (times come from the proposer), so applying it is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// A change to tenants, topics, offsets or manifests. A topic creation
    /// (or a partition increase) carries the placement of its new
    /// partitions, decided by the proposer: `(partition, replicas)`, leader
    /// first. (A list, not a map: integer map keys do not survive serde's
    /// internally tagged enums.)
    Metadata {
        change: MetadataChange,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        placement: Vec<(u32, Vec<NodeId>)>,
    },
    /// A node announces (or updates) itself.
    RegisterBroker { broker: BrokerInfo },
    /// A node is alive at `at_ms`; ignored for unknown nodes and for times
    /// older than the last one (a delayed duplicate never moves it back).
    Heartbeat { node_id: NodeId, at_ms: i64 },
    /// A node left the cluster.
    RemoveBroker { node_id: NodeId },
    /// Places partitions that have no assignment yet (topics imported or
    /// restored, or created while no broker was live): `(partition key,
    /// replicas)`, leader first. Keys already assigned or not naming a
    /// partition of an existing topic are ignored.
    Assign {
        placement: Vec<(String, Vec<NodeId>)>,
    },
    /// Seeds an empty group with the state of a single-node metadata file
    /// (an upgrade); rejected once the group holds any topic.
    Import { state: Box<MetadataState> },
    /// Makes `leader` (one of the partition's replicas) its leader at the
    /// next epoch, if the partition is still at `from_epoch`: an election's
    /// outcome, so a slower election of the same epoch cannot also win.
    ElectLeader {
        partition: String,
        from_epoch: u64,
        leader: NodeId,
    },
    /// Changes the replicas of `partition`, if it is still at
    /// `leader_epoch`, by one broker at a time (a rebalance): `replicas`
    /// must keep the leader first and add one known broker, or drop one
    /// follower while every replica left is in sync. One step at a time
    /// keeps every majority of the new set overlapping every majority of
    /// the old one, so nothing acknowledged is lost.
    SetReplicas {
        partition: String,
        leader_epoch: u64,
        replicas: Vec<NodeId>,
    },
    /// The leader of `partition` at `leader_epoch` reports its in-sync
    /// replicas; ignored for any other epoch.
    UpdateIsr {
        partition: String,
        leader_epoch: u64,
        isr: Vec<NodeId>,
    },
}

/// What applying a command returned. A rejected command changed nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Applied(ChangeOutcome),
    Rejected(ApiError),
}

impl Reply {
    pub fn into_result(self) -> Result<ChangeOutcome, ApiError> {
        match self {
            Reply::Applied(outcome) => Ok(outcome),
            Reply::Rejected(e) => Err(e),
        }
    }
}
