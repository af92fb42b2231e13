//! `/v1/cluster`: the metadata group and the brokers as this node sees them,
//! and removing a node from the cluster.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};
use strata_meta::{Command, MembershipChange};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiPath, ErrorBody, HttpResult};
use crate::cluster::now_ms;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    pub raft: RaftInfo,
    pub brokers: Vec<BrokerStatus>,
    /// The leader of every assigned partition.
    pub partitions: Vec<PartitionLeaderStatus>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartitionLeaderStatus {
    /// The log partition key, `tenant/topic/topic_id/partition`.
    pub partition: String,
    pub leader: u64,
    pub leader_epoch: u64,
    pub replicas: Vec<u64>,
    /// In-sync replicas (the leader alone until partitions are replicated).
    pub isr: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RaftInfo {
    /// `leader`, `follower`, `candidate` or `learner`.
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    /// The highest log index this node knows to be committed.
    pub commit_index: u64,
    pub applied_index: u64,
    /// The highest index in this node's log, committed or not.
    pub last_log_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BrokerStatus {
    pub node_id: u64,
    pub api_addr: String,
    pub kafka_addr: Option<String>,
    pub peer_addr: String,
    pub zone: String,
    pub roles: Vec<String>,
    /// Whether its liveness lease (1.5 s, renewed every 300 ms) is current.
    pub alive: bool,
    pub last_heartbeat_age_ms: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePath {
    /// The node id.
    pub node: u64,
}

fn no_group() -> ApiError {
    ApiError::new(ErrorCode::Unavailable, "this server runs no metadata group")
}

/// The metadata group (Raft state, leader, term, commit index) and the brokers.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    responses((status = 200, description = "The cluster as this node sees it", body = ClusterStatus))
)]
#[tracing::instrument(name = "http.cluster_status", skip_all)]
pub async fn status(State(state): State<AppState>) -> HttpResult<Json<ClusterStatus>> {
    let meta = state.meta.as_ref().ok_or_else(no_group)?;
    let raft = meta.status();
    let now = now_ms();
    let lease = strata_meta::placement::LIVENESS_LEASE_MS;
    let partitions = meta.read(|s| {
        s.assignments
            .iter()
            .map(|(key, a)| PartitionLeaderStatus {
                partition: key.clone(),
                leader: a.leader,
                leader_epoch: a.leader_epoch,
                replicas: a.replicas.clone(),
                isr: a.isr.clone(),
            })
            .collect()
    });
    let brokers = meta.read(|s| {
        s.brokers
            .values()
            .map(|b| BrokerStatus {
                node_id: b.node_id,
                api_addr: b.api_addr.clone(),
                kafka_addr: b.kafka_addr.clone(),
                peer_addr: b.peer_addr.clone(),
                zone: b.zone.clone(),
                roles: b.roles.clone(),
                alive: now - b.last_heartbeat_ms < lease,
                last_heartbeat_age_ms: now - b.last_heartbeat_ms,
            })
            .collect()
    });
    Ok(Json(ClusterStatus {
        node_id: raft.node_id,
        raft: RaftInfo {
            state: raft.state,
            leader: raft.leader,
            term: raft.term,
            commit_index: raft.commit_index,
            applied_index: raft.applied_index,
            last_log_index: raft.last_log_index,
            voters: raft.voters,
            learners: raft.learners,
        },
        brokers,
        partitions,
    }))
}

/// Removes a node from the metadata group and forgets it as a broker.
#[utoipa::path(
    delete,
    path = "/v1/cluster/nodes/{node}",
    tag = "cluster",
    params(NodePath),
    responses(
        (status = 204, description = "Removed"),
        (status = 503, description = "No metadata leader reachable", body = ErrorBody)
    )
)]
#[tracing::instrument(name = "http.remove_node", skip_all)]
pub async fn remove_node(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<NodePath>,
) -> HttpResult<StatusCode> {
    let meta = state.meta.as_ref().ok_or_else(no_group)?;
    meta.request_membership_change(MembershipChange::Remove { node_id: p.node })
        .await?;
    meta.write(Command::RemoveBroker { node_id: p.node })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
