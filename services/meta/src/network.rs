//! The client side of the peer protocol: Raft messages and forwarded
//! commands sent to another node's peer listener over gRPC.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_api::{ApiError, ErrorCode};
use tonic::transport::{Channel, Endpoint};

use crate::proto::Envelope;
use crate::proto::peer_client::PeerClient;
use crate::reachability::{Delivery, Reachability};
use crate::types::{Node, NodeId, TypeConfig};

/// How long a forwarded command or membership change may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a forwarded partition operation may take (reads long-poll).
const PARTITION_TIMEOUT: Duration = Duration::from_secs(75);

/// A lazily connected client of one peer.
#[derive(Clone)]
pub struct Peer {
    addr: String,
    client: PeerClient<Channel>,
}

/// Why a peer call failed: the transport, or the peer's own answer.
pub enum CallError<E> {
    Transport(tonic::Status),
    Remote(E),
}

impl Peer {
    pub fn new(addr: &str) -> Result<Peer, ApiError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("bad peer address {addr:?}: {e}"),
                )
            })?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            // Replication answers carry megabytes: HTTP/2's default 64 KiB
            // windows would stall each on window updates.
            .initial_stream_window_size(16 * 1024 * 1024)
            .initial_connection_window_size(32 * 1024 * 1024);
        Ok(Peer {
            addr: addr.to_string(),
            client: PeerClient::new(endpoint.connect_lazy()),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn client(&self) -> PeerClient<Channel> {
        self.client.clone()
    }

    /// Asks a replica for its position at an election for `epoch` of
    /// `partition` (it promises to take nothing from older leaders first).
    pub async fn replica_position(
        &self,
        partition: &str,
        epoch: u64,
        timeout: Duration,
    ) -> Result<strata_broker::replication::PositionReply, ApiError> {
        self.call(&(partition, epoch), timeout, |mut c, e| async move {
            c.replica_position(e).await
        })
        .await
        .map_err(|e| self.api_error(e))
    }

    /// Sends `req` with `rpc` and decodes the peer's `Result<T, E>`.
    async fn call<Req, T, E, F, Fut>(
        &self,
        req: &Req,
        timeout: Duration,
        rpc: F,
    ) -> Result<T, CallError<E>>
    where
        Req: Serialize,
        T: DeserializeOwned,
        E: DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, Envelope) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Envelope>, tonic::Status>>,
    {
        let json = serde_json::to_vec(req)
            .map_err(|e| CallError::Transport(tonic::Status::internal(e.to_string())))?;
        let envelope = Envelope { json: json.into() };
        let reply = tokio::time::timeout(timeout, rpc(self.client.clone(), envelope))
            .await
            .map_err(|_| {
                CallError::Transport(tonic::Status::deadline_exceeded("peer call timed out"))
            })?
            .map_err(CallError::Transport)?;
        let result: Result<T, E> =
            serde_json::from_slice(&reply.into_inner().json).map_err(|e| {
                CallError::Transport(tonic::Status::internal(format!("bad peer reply: {e}")))
            })?;
        result.map_err(CallError::Remote)
    }

    /// Sends a command to this peer (the leader) and returns its JSON reply.
    pub async fn forward<Req: Serialize, T: DeserializeOwned>(
        &self,
        req: &Req,
    ) -> Result<T, ApiError> {
        self.call(req, FORWARD_TIMEOUT, |mut c, e| async move {
            c.forward(e).await
        })
        .await
        .map_err(|e| self.api_error(e))
    }

    /// A partition operation for this peer's broker; long enough for a
    /// long-polling read.
    pub async fn partition<Req: Serialize, T: DeserializeOwned>(
        &self,
        req: &Req,
    ) -> Result<T, ApiError> {
        self.call(req, PARTITION_TIMEOUT, |mut c, e| async move {
            c.partition(e).await
        })
        .await
        .map_err(|e| match e {
            CallError::Remote(e) => e,
            CallError::Transport(status) => ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "partition leader at {} unreachable: {}",
                    self.addr,
                    status.message()
                ),
            ),
        })
    }

    pub async fn read_index(&self) -> Result<u64, ApiError> {
        self.call(&(), FORWARD_TIMEOUT, |mut c, e| async move {
            c.read_index(e).await
        })
        .await
        .map_err(|e| self.api_error(e))
    }

    pub async fn change_membership<Req: Serialize>(&self, req: &Req) -> Result<(), ApiError> {
        // Adding a node waits for it to catch up: allow longer.
        self.call(req, FORWARD_TIMEOUT * 6, |mut c, e| async move {
            c.change_membership(e).await
        })
        .await
        .map_err(|e| self.api_error(e))
    }

    fn api_error(&self, e: CallError<ApiError>) -> ApiError {
        match e {
            CallError::Remote(e) => e,
            CallError::Transport(status) => ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "metadata leader at {} unreachable: {}",
                    self.addr,
                    status.message()
                ),
            ),
        }
    }
}

/// Creates [`Peer`] clients for Raft.
pub struct Network {
    /// What Raft's messages found out about each peer.
    pub reachability: Arc<Reachability>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> RaftPeer {
        RaftPeer {
            target,
            peer: Peer::new(&node.addr).map_err(|e| e.message),
            reachability: self.reachability.clone(),
        }
    }
}

/// Raft's view of one peer.
pub struct RaftPeer {
    target: NodeId,
    peer: Result<Peer, String>,
    reachability: Arc<Reachability>,
}

impl RaftPeer {
    async fn raft_call<Req, T, E, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        rpc: F,
    ) -> Result<T, RPCError<NodeId, Node, E>>
    where
        Req: Serialize,
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, Envelope) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Envelope>, tonic::Status>>,
    {
        let peer = self
            .peer
            .as_ref()
            .map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e.clone()))))?;
        let result = peer.call(req, option.hard_ttl(), rpc).await;
        let delivery = match &result {
            Ok(_) | Err(CallError::Remote(_)) => Delivery::Answered,
            Err(CallError::Transport(status)) => Delivery::of_status(status),
        };
        if let Err(CallError::Transport(status)) = &result {
            tracing::debug!(target = self.target, code = ?status.code(), message = status.message(), ?delivery, "raft message not delivered");
        }
        self.reachability.note(self.target, delivery);
        result.map_err(|e| match e {
            CallError::Remote(e) => RPCError::RemoteError(RemoteError::new(self.target, e)),
            CallError::Transport(status) => {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(status.to_string())))
            }
        })
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.raft_call(&rpc, &option, |mut c, e| async move {
            c.append_entries(e).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.raft_call(&rpc, &option, |mut c, e| async move {
            c.install_snapshot(e).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.raft_call(&rpc, &option, |mut c, e| async move { c.vote(e).await })
            .await
    }
}
