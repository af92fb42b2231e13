//! A node of the metadata group: the Raft instance with its durable log and
//! state machine, and the client-facing operations every other part uses:
//! write a command (forwarded to the leader when this node is not it), wait
//! for a linearizable read point, read the applied state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};
use strata_broker::ChangeOutcome;
use tracing::{info, warn};

use crate::log_store::{self, LogStore};
use crate::machine::ClusterState;
use crate::network::{Network, Peer};
use crate::reachability::Reachability;
use crate::snapshots::SnapshotUploader;
use crate::state_machine::{Shared, StateMachine};
use crate::types::{Command, Node, NodeId, Raft, Reply};

/// How a node runs its part of the metadata group.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub node_id: NodeId,
    /// Where the Raft log and snapshots live (`<data dir>/meta`).
    pub dir: PathBuf,
    /// Where other nodes reach this node's peer listener; `None` for a
    /// single node with no peers.
    pub peer_addr: Option<String>,
    /// The initial voters of a statically bootstrapped cluster (empty for a
    /// single node, or a node that joins).
    pub bootstrap: BTreeMap<NodeId, String>,
    /// A peer address of a running cluster to join.
    pub join: Option<String>,
    /// Whether this node votes (role `meta`); otherwise it is a learner.
    pub voter: bool,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
}

impl MetaConfig {
    pub fn single(dir: PathBuf) -> MetaConfig {
        MetaConfig {
            node_id: 1,
            dir,
            peer_addr: None,
            bootstrap: BTreeMap::new(),
            join: None,
            voter: true,
            // A dead metadata leader is replaced within about a second:
            // partition failover waits on it when the two coincide.
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            snapshot_every: 5000,
        }
    }
}

/// A membership change sent to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipChange {
    /// Adds a node as a learner, waits for it to catch up, then (if
    /// `voter`) promotes it.
    Add {
        node_id: NodeId,
        addr: String,
        voter: bool,
    },
    /// Removes a node from the group.
    Remove { node_id: NodeId },
}

/// The Raft state of this node, for `strata cluster status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaftStatus {
    pub node_id: NodeId,
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The highest log index this node knows to be committed (it applies
    /// only committed entries, so: the highest it applied).
    pub commit_index: u64,
    pub applied_index: u64,
    /// The highest index in this node's log (committed or not).
    pub last_log_index: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// Peer address of every member.
    pub nodes: BTreeMap<NodeId, String>,
}

pub struct MetaNode {
    id: NodeId,
    raft: Raft,
    shared: Arc<Shared>,
    /// Clients of other nodes, by peer address.
    peers: Mutex<BTreeMap<String, Peer>>,
    /// Which peers Raft's messages find down (see [`Reachability`]).
    reachability: Arc<Reachability>,
}

/// How long a write or a read barrier waits for a leader before failing
/// with a retryable error.
const LEADER_WAIT: Duration = Duration::from_secs(10);

fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, msg)
}

fn internal(msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, msg.to_string())
}

impl MetaNode {
    /// Opens the durable state in `config.dir`, starts Raft and, for a new
    /// group, initializes or joins it.
    pub async fn start(
        config: MetaConfig,
        snapshot_store: Option<Arc<dyn ObjectStore>>,
    ) -> Result<Arc<MetaNode>, ApiError> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", config.dir.display())))?;
        let log = LogStore::open(&config.dir.join("raft.redb"))
            .map_err(|e| internal(format!("cannot open the metadata log: {e}")))?;
        match log_store::node_id_of(&log).map_err(internal)? {
            Some(id) if id != config.node_id => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "{} belongs to node {id}, not node {}",
                        config.dir.display(),
                        config.node_id
                    ),
                ));
            }
            Some(_) => {}
            None => log_store::set_node_id(&log, config.node_id)
                .await
                .map_err(internal)?,
        }
        let uploader = snapshot_store.map(SnapshotUploader::spawn);
        let sm = StateMachine::open(&config.dir, uploader).map_err(internal)?;
        let shared = sm.shared.clone();

        let raft_config = openraft::Config {
            cluster_name: "strata-meta".into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout.as_millis() as u64,
            election_timeout_max: config.election_timeout.as_millis() as u64 * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(internal)?);
        let reachability = Arc::new(Reachability::default());
        let network = Network {
            reachability: reachability.clone(),
        };
        let raft = Raft::new(config.node_id, raft_config, network, log, sm)
            .await
            .map_err(internal)?;
        let node = Arc::new(MetaNode {
            id: config.node_id,
            raft,
            shared,
            peers: Mutex::new(BTreeMap::new()),
            reachability,
        });
        node.initialize(&config).await?;
        Ok(node)
    }

    async fn initialize(&self, config: &MetaConfig) -> Result<(), ApiError> {
        let initialized = self.raft.is_initialized().await.map_err(internal)?;
        if !initialized {
            if let Some(join) = &config.join {
                // The leader adds this node once it is reachable; see `join`.
                info!(node_id = self.id, join = %join, "joining the metadata group");
            } else if config.bootstrap.is_empty() {
                let addr = config.peer_addr.clone().unwrap_or_default();
                let members = BTreeMap::from([(self.id, Node { addr })]);
                self.raft.initialize(members).await.map_err(internal)?;
            } else if config.bootstrap.keys().next() == Some(&self.id) {
                // The lowest id initializes the group for everyone; the others
                // learn the membership from it.
                let members: BTreeMap<NodeId, Node> = config
                    .bootstrap
                    .iter()
                    .map(|(id, addr)| (*id, Node { addr: addr.clone() }))
                    .collect();
                info!(
                    node_id = self.id,
                    ?members,
                    "bootstrapping the metadata group"
                );
                self.raft.initialize(members).await.map_err(internal)?;
            }
        }
        if config.bootstrap.is_empty() && config.join.is_none() {
            // A single node: usable as soon as it leads itself.
            self.raft
                .wait(Some(LEADER_WAIT))
                .state(ServerState::Leader, "single node leads")
                .await
                .map_err(|e| unavailable(format!("metadata node did not become leader: {e}")))?;
        }
        Ok(())
    }

    /// Asks the cluster at `join` to add this node; retried until it works
    /// or `deadline` passes.
    pub async fn join(
        &self,
        join: &str,
        addr: &str,
        voter: bool,
        deadline: Duration,
    ) -> Result<(), ApiError> {
        let start = Instant::now();
        let change = MembershipChange::Add {
            node_id: self.id,
            addr: addr.to_string(),
            voter,
        };
        let mut target = join.to_string();
        loop {
            match self.peer(&target)?.change_membership(&change).await {
                Ok(()) => return Ok(()),
                Err(e) if e.code == ErrorCode::Unavailable && start.elapsed() < deadline => {
                    // The details name the leader when the node asked was not it.
                    if let Some(leader) = e.details.as_ref().and_then(|d| d["leader_addr"].as_str())
                    {
                        target = leader.to_string();
                    }
                    warn!(error = %e.message, "join not accepted yet; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The peers this node's last Raft message to was refused by (only a
    /// leader sends to all of them; see [`Reachability`]).
    pub fn down_peers(&self) -> std::collections::BTreeSet<NodeId> {
        self.reachability.down()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Runs `read` on the state applied on this node.
    pub fn read<T>(&self, read: impl FnOnce(&ClusterState) -> T) -> T {
        read(&self.shared.applied.read().state)
    }

    fn peer(&self, addr: &str) -> Result<Peer, ApiError> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(addr) {
            return Ok(p.clone());
        }
        let p = Peer::new(addr)?;
        peers.insert(addr.to_string(), p.clone());
        Ok(p)
    }

    /// Waits until this node has applied the log up to `index`.
    async fn wait_applied(&self, index: u64) -> Result<(), ApiError> {
        let mut rx = self.shared.applied_index.subscribe();
        tokio::time::timeout(LEADER_WAIT, rx.wait_for(|i| *i >= index))
            .await
            .map_err(|_| unavailable(format!("metadata not applied up to {index} in time")))?
            .map_err(|_| unavailable("metadata node is shutting down"))?;
        Ok(())
    }

    /// The current leader's peer address, waiting a little for an election.
    async fn leader_addr(&self) -> Result<String, ApiError> {
        let start = Instant::now();
        loop {
            let metrics = self.raft.metrics().borrow().clone();
            if let Some(leader) = metrics.current_leader
                && leader != self.id
                && let Some(node) = metrics.membership_config.membership().get_node(&leader)
            {
                return Ok(node.addr.clone());
            }
            if metrics.current_leader == Some(self.id) {
                return Err(unavailable("this node became the leader; retry"));
            }
            if start.elapsed() > LEADER_WAIT {
                return Err(unavailable("the metadata group has no leader"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Proposes `command` and waits until it is committed and applied on
    /// this node, so a read here right after sees it.
    pub async fn write(&self, command: Command) -> Result<ChangeOutcome, ApiError> {
        let start = Instant::now();
        loop {
            let result = match self.write_on_leader(command.clone()).await {
                Err(e) if is_not_leader(&e) => {
                    // Not the leader: send it there.
                    match self.leader_addr().await {
                        Ok(addr) => {
                            match self.peer(&addr)?.forward::<_, (Reply, u64)>(&command).await {
                                Ok((reply, index)) => {
                                    self.wait_applied(index).await?;
                                    Ok(reply)
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Err(e) => Err(e),
                    }
                }
                other => other.map(|(reply, _)| reply),
            };
            match result {
                Ok(reply) => return reply.into_result(),
                Err(e) if e.code == ErrorCode::Unavailable && start.elapsed() < LEADER_WAIT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Proposes `command` on this node, which must be the leader; returns
    /// the reply and the log index it was applied at. When this node is not
    /// the leader the error is `unavailable` with details naming the leader.
    pub(crate) async fn write_on_leader(&self, command: Command) -> Result<(Reply, u64), ApiError> {
        match self.raft.client_write(command).await {
            Ok(resp) => Ok((resp.data, resp.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(not_leader(f.leader_id, f.leader_node.map(|n| n.addr)))
            }
            Err(e) => Err(unavailable(format!("metadata write failed: {e}"))),
        }
    }

    /// Waits until this node has applied every change committed before the
    /// call anywhere in the group (a linearizable read point).
    pub async fn barrier(&self) -> Result<(), ApiError> {
        let start = Instant::now();
        loop {
            let index = match self.read_index_on_leader().await {
                Err(e) if is_not_leader(&e) => match self.leader_addr().await {
                    Ok(addr) => self.peer(&addr)?.read_index().await,
                    Err(e) => Err(e),
                },
                other => other,
            };
            match index {
                Ok(index) => return self.wait_applied(index).await,
                Err(e) if e.code == ErrorCode::Unavailable && start.elapsed() < LEADER_WAIT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// On the leader: the index a linearizable read must wait for.
    pub(crate) async fn read_index_on_leader(&self) -> Result<u64, ApiError> {
        use openraft::error::CheckIsLeaderError;
        match self.raft.get_read_log_id().await {
            Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(not_leader(f.leader_id, f.leader_node.map(|n| n.addr)))
            }
            Err(e) => Err(unavailable(format!("metadata read barrier failed: {e}"))),
        }
    }

    /// On the leader: applies a membership change.
    pub(crate) async fn change_membership(&self, change: MembershipChange) -> Result<(), ApiError> {
        let map_err = |e: RaftError<NodeId, ClientWriteError<NodeId, Node>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                not_leader(f.leader_id, f.leader_node.map(|n| n.addr))
            }
            e => unavailable(format!("membership change failed: {e}")),
        };
        match change {
            MembershipChange::Add {
                node_id,
                addr,
                voter,
            } => {
                info!(node_id, %addr, voter, "adding a node to the metadata group");
                self.raft
                    .add_learner(node_id, Node { addr }, true)
                    .await
                    .map_err(map_err)?;
                if voter {
                    self.raft
                        .change_membership(
                            ChangeMembers::AddVoterIds(BTreeSet::from([node_id])),
                            false,
                        )
                        .await
                        .map_err(map_err)?;
                }
            }
            MembershipChange::Remove { node_id } => {
                info!(node_id, "removing a node from the metadata group");
                let voters: BTreeSet<NodeId> = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .collect();
                if voters.contains(&node_id) {
                    self.raft
                        .change_membership(
                            ChangeMembers::RemoveVoters(BTreeSet::from([node_id])),
                            false,
                        )
                        .await
                        .map_err(map_err)?;
                }
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node_id])), false)
                    .await
                    .map_err(map_err)?;
            }
        }
        Ok(())
    }

    /// Sends a membership change to the leader (from any node).
    pub async fn request_membership_change(
        &self,
        change: MembershipChange,
    ) -> Result<(), ApiError> {
        match self.change_membership(change.clone()).await {
            Err(e) if is_not_leader(&e) => {
                let addr = self.leader_addr().await?;
                self.peer(&addr)?.change_membership(&change).await
            }
            other => other,
        }
    }

    /// Runs a partition operation on the broker of the node at `addr`.
    pub async fn forward_partition_op(
        &self,
        addr: &str,
        op: &strata_broker::PartitionOp,
    ) -> Result<strata_broker::PartitionReply, ApiError> {
        self.peer(addr)?.partition(op).await
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        RaftStatus {
            node_id: self.id,
            state: format!("{:?}", m.state).to_lowercase(),
            leader: m.current_leader,
            term: m.current_term,
            commit_index: m
                .last_applied
                .map_or(0, |l| l.index)
                .max(*self.shared.applied_index.borrow()),
            applied_index: *self.shared.applied_index.borrow(),
            last_log_index: m.last_log_index.unwrap_or(0),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "metadata Raft did not shut down cleanly");
        }
    }
}

/// Whether `e` is [`not_leader`]'s error.
fn is_not_leader(e: &ApiError) -> bool {
    e.code == ErrorCode::Unavailable
        && e.details
            .as_ref()
            .is_some_and(|d| d["not_leader"] == serde_json::Value::Bool(true))
}

/// The error a non-leader returns; its details let the caller find the leader.
fn not_leader(leader: Option<NodeId>, addr: Option<String>) -> ApiError {
    unavailable(match leader {
        Some(id) => format!("not the metadata leader; node {id} is"),
        None => "not the metadata leader; no leader is known".to_string(),
    })
    .with_details(
        serde_json::json!({ "not_leader": true, "leader_id": leader, "leader_addr": addr }),
    )
}
