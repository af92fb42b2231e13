//! The server side of the peer protocol, served on the peer listener only.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_api::{ApiError, ErrorCode};
use strata_broker::{Broker, PartitionOp, PartitionReply};
use tonic::{Request, Response, Status};

use crate::node::{MembershipChange, MetaNode};
use crate::proto::Envelope;
use crate::proto::peer_server::{Peer, PeerServer};
use crate::types::{Command, TypeConfig};

/// Set once the broker is open; partition operations wait for it.
pub type BrokerSlot = Arc<OnceLock<Arc<Broker>>>;

/// The peer gRPC service of one node.
pub struct PeerService {
    node: Arc<MetaNode>,
    broker: BrokerSlot,
}

impl PeerService {
    pub fn server(node: Arc<MetaNode>, broker: BrokerSlot) -> PeerServer<PeerService> {
        PeerServer::new(PeerService { node, broker })
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
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
    type ReplicateStream =
        tokio_stream::wrappers::ReceiverStream<Result<crate::proto::ReplicaFrame, Status>>;

    async fn replicate(
        &self,
        req: Request<tonic::Streaming<crate::proto::ReplicaFrame>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        let broker = self
            .broker
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("the broker is still starting"))?;
        Ok(Response::new(crate::replication::serve_stream(
            broker,
            req.into_inner(),
        )))
    }

    async fn replica_position(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let (partition, epoch): (String, u64) = decode(req)?;
        let result = match self.broker.get() {
            Some(broker) => broker.replica_position(&partition, epoch).await,
            None => Err(ApiError::new(
                ErrorCode::Unavailable,
                "the broker is still starting",
            )),
        };
        encode(&result)
    }

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

    async fn partition(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let op: PartitionOp = decode(req)?;
        let result: Result<PartitionReply, ApiError> = match self.broker.get() {
            Some(broker) => broker.serve_forwarded(op).await,
            None => Err(ApiError::new(
                ErrorCode::Unavailable,
                "the broker is still starting",
            )),
        };
        encode(&result)
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
