//! `strata-meta`: the metadata group. The broker's metadata (tenants,
//! topics, configs, group offsets, segment manifests) plus the cluster's own
//! (brokers and their liveness) replicated with Raft (`openraft`).
//!
//! - [`machine`]: the replicated state and its commands, pure and
//!   deterministic;
//! - [`log_store`]: the Raft log and vote in `redb`, fsynced before
//!   acknowledging;
//! - [`state_machine`]: the applied state, snapshots on disk and in the
//!   bucket ([`snapshots`]);
//! - [`node`]: a running node: writes (forwarded to the leader), read
//!   barriers, membership changes, status;
//! - [`network`] and [`service`]: the peer gRPC protocol, internal only;
//! - [`store`]: the broker's `MetadataStore` on top of it;
//! - [`placement`], [`election`] and [`rebalance`]: where partitions go,
//!   who leads them after a failure, and how they move when brokers join.
//!
//! A single node is a one-voter group in the same process, with no peer
//! listener.

pub mod election;
pub mod log_store;
pub mod machine;
pub mod network;
pub mod node;
pub mod placement;
pub mod reachability;
pub mod rebalance;
pub mod replication;
pub mod service;
pub mod snapshots;
pub mod state_machine;
pub mod store;
pub mod types;

/// The generated peer protocol.
pub mod proto {
    tonic::include_proto!("strata.peer.v1");
}

pub use machine::ClusterState;
pub use node::{MembershipChange, MetaConfig, MetaNode, RaftStatus};
pub use service::{BrokerSlot, PeerService};
pub use store::{RaftClusterView, RaftMetadataStore};
pub use types::{BrokerInfo, Command, NodeId, Reply};
