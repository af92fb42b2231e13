//! The server side of the peer protocol, served on the peer listener only.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_api::{ApiError, ErrorCode};
use tonic::{Request, Response, Status};

use crate::node::{MembershipChange, MetaNode};
use crate::proto::Envelope;
use crate::proto::peer_server::{Peer, PeerServer};
use crate::types::{Command, TypeConfig};

/// The peer gRPC service of one node.
pub struct PeerService {
    node: Arc<MetaNode>,
}

impl PeerService {
    pub fn server(node: Arc<MetaNode>) -> PeerServer<PeerService> {
        PeerServer::new(PeerService { node }).max_decoding_message_size(64 * 1024 * 1024)
    }
}

fn decode<T: DeserializeOwned>(req: Request<Envelope>) -> Result<T, Status> {
    serde_json::from_slice(&req.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("malformed peer message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<Envelope>, Status> {
    serde_json::to_vec(value)
        .map(|json| Response::new(Envelope { json: json.into() }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> = decode(req)?;
        encode(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let rpc = decode(req)?;
        encode(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let rpc: openraft::raft::InstallSnapshotRequest<TypeConfig> = decode(req)?;
        encode(&self.node.raft().install_snapshot(rpc).await)
    }

    async fn forward(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let command: Command = decode(req)?;
        encode(&self.node.write_on_leader(command).await)
    }

    async fn read_index(&self, _req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        encode(&self.node.read_index_on_leader().await)
    }

    async fn change_membership(
        &self,
        req: Request<Envelope>,
    ) -> Result<Response<Envelope>, Status> {
        let change: MembershipChange = decode(req)?;
        let result: Result<(), ApiError> = self.node.change_membership(change).await;
        if let Err(e) = &result
            && e.code == ErrorCode::Internal
        {
            tracing::warn!(error = %e.message, "membership change failed");
        }
        encode(&result)
    }
}
