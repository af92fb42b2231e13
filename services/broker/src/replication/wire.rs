//! What followers and leaders send each other. The peer protocol carries
//! these as a small JSON header plus the record batches as raw bytes (see
//! `strata-meta`'s `Replicate` stream); nothing here touches a socket.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::quorum::LogPosition;

/// A follower's fetch for every partition it replicates from one leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetch {
    pub follower: u64,
    pub partitions: Vec<PartitionFetch>,
    /// How long the leader may hold the fetch while nothing is new.
    pub max_wait_ms: u64,
    /// Most bytes of batches per partition.
    pub max_partition_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFetch {
    /// Log partition key (`tenant/topic/id/partition`).
    pub key: String,
    /// The leader epoch the follower follows.
    pub leader_epoch: u64,
    /// The follower's log end: everything below is durable on it.
    pub fetch_offset: u64,
    /// The newest epoch in the follower's log (-1: none).
    pub last_epoch: i32,
    /// The high watermark the follower last heard of (the leader answers at
    /// once when it has moved).
    pub known_high_watermark: u64,
}

/// The leader's answer, one entry per partition asked for, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaData {
    pub partitions: Vec<PartitionData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionData {
    pub key: String,
    pub outcome: FetchOutcome,
    pub high_watermark: u64,
    /// Where the leader's current epoch began: the follower begins the
    /// epoch once its log reaches it.
    pub epoch_start: u64,
    pub leader_end: u64,
    /// Whole batches from the fetch offset (for `FetchOutcome::Data`), sent
    /// apart from this JSON header.
    #[serde(skip)]
    pub batches: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchOutcome {
    /// Batches from the fetch offset (possibly none yet).
    Data,
    /// The logs part (see `quorum::FetchDecision::Diverging`): truncate to
    /// `quorum::truncation_point`, then fetch again.
    Diverging { epoch: i32, end_offset: u64 },
    /// Drop the local copy and start again at this offset.
    Reset { offset: u64 },
    /// This node does not lead the partition at the follower's epoch.
    NotLeader { leader_epoch: Option<u64> },
}

/// A replica's answer to an election: its position, after promising to
/// take nothing more from leaders older than the epoch being elected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionReply {
    pub position: LogPosition,
}
