//! Partition replication over the peer protocol: the `Replicate` stream (one
//! per follower and leader node, carrying all the partitions they share) and
//! the election's position queries. The replication rules live in
//! `strata_broker::replication`; this only moves its messages.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_api::{ApiError, ErrorCode};
use strata_broker::Broker;
use strata_broker::replication::{ReplicaChannel, ReplicaData, ReplicaFetch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::network::Peer;
use crate::proto::ReplicaFrame;

/// Fetches a follower may send before the leader answers the first.
const STREAM_DEPTH: usize = 4;

/// Largest frame either side accepts: the leader bounds an answer to
/// `strata_broker::replication::MAX_FETCH_BYTES` plus one batch per partition.
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, format!("{what}: {e}"))
}

/// The answer as a frame: the header as JSON, the batches beside it.
pub(crate) fn encode_data(data: ReplicaData) -> Result<ReplicaFrame, Status> {
    let json = serde_json::to_vec(&data).map_err(|e| Status::internal(e.to_string()))?;
    let batches = data.partitions.into_iter().map(|p| p.batches).collect();
    Ok(ReplicaFrame {
        json: json.into(),
        batches,
    })
}

fn decode_data(frame: ReplicaFrame) -> Result<ReplicaData, ApiError> {
    let mut data: ReplicaData = serde_json::from_slice(&frame.json)
        .map_err(|e| unavailable("malformed replica data", e))?;
    if frame.batches.len() != data.partitions.len() {
        return Err(unavailable(
            "malformed replica data",
            format!(
                "{} partitions but {} batch sets",
                data.partitions.len(),
                frame.batches.len()
            ),
        ));
    }
    for (p, batches) in data.partitions.iter_mut().zip(frame.batches) {
        p.batches = batches;
    }
    Ok(data)
}

/// Serves one follower's `Replicate` stream: each fetch is answered in turn.
pub(crate) fn serve_stream(
    broker: Arc<Broker>,
    mut incoming: Streaming<ReplicaFrame>,
) -> ReceiverStream<Result<ReplicaFrame, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_DEPTH);
    tokio::spawn(async move {
        loop {
            let frame = match incoming.message().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "replication stream ended");
                    return;
                }
            };
            let reply = match serde_json::from_slice::<ReplicaFetch>(&frame.json) {
                Ok(fetch) => encode_data(broker.serve_replica_fetch(fetch).await),
                Err(e) => Err(Status::invalid_argument(format!(
                    "malformed replica fetch: {e}"
                ))),
            };
            if tx.send(reply).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// A follower's end of a `Replicate` stream to one leader node.
pub struct ReplicaStream {
    requests: mpsc::Sender<ReplicaFrame>,
    answers: Streaming<ReplicaFrame>,
}

impl ReplicaStream {
    pub async fn open(addr: &str) -> Result<ReplicaStream, ApiError> {
        let peer = Peer::new(addr)?;
        let (requests, rx) = mpsc::channel(STREAM_DEPTH);
        let answers = tokio::time::timeout(
            Duration::from_secs(5),
            peer.client()
                .max_decoding_message_size(MAX_FRAME_BYTES)
                .max_encoding_message_size(MAX_FRAME_BYTES)
                .replicate(ReceiverStream::new(rx)),
        )
        .await
        .map_err(|_| unavailable("cannot open a replication stream", addr))?
        .map_err(|e| unavailable(&format!("cannot open a replication stream to {addr}"), e))?
        .into_inner();
        Ok(ReplicaStream { requests, answers })
    }
}

#[async_trait::async_trait]
impl ReplicaChannel for ReplicaStream {
    async fn exchange(&mut self, fetch: ReplicaFetch) -> Result<ReplicaData, ApiError> {
        let json = serde_json::to_vec(&fetch).map_err(|e| unavailable("encoding a fetch", e))?;
        let frame = ReplicaFrame {
            json: json.into(),
            batches: Vec::<Bytes>::new(),
        };
        self.requests
            .send(frame)
            .await
            .map_err(|e| unavailable("replication stream closed", e))?;
        match self.answers.message().await {
            Ok(Some(frame)) => decode_data(frame),
            Ok(None) => Err(unavailable("replication stream closed", "by the leader")),
            Err(e) => Err(unavailable("replication stream failed", e)),
        }
    }
}
