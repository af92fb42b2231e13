//! The two streaming calls: pipelined appends and followed reads.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, Stream, StreamExt};
use strata_api::proto::{self, read_session_response::Event};
use strata_api::{ApiError, ErrorCode};
use strata_broker::ReadStart;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Status, Streaming};
use tracing::{Instrument, Span};

use super::convert;
use crate::state::AppState;

/// Appends of one session running at once; more requests wait in the
/// client's HTTP/2 flow-control window.
const MAX_IN_FLIGHT: usize = 64;
/// A session that is idle this long gets a heartbeat.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Batches read ahead of a slow ReadSession client.
const READ_AHEAD: usize = 4;

pub type AppendStream = Pin<Box<dyn Stream<Item = Result<proto::AppendResponse, Status>> + Send>>;
pub type ReadStream = ReceiverStream<Result<proto::ReadSessionResponse, Status>>;

type AppendOutcome = (
    Result<proto::AppendResponse, Status>,
    Option<OwnedSemaphorePermit>,
);

/// Reads requests as they come and starts each append at once; responses go
/// out strictly in request order. The first failure answers its request with
/// the error status and ends the session.
///
/// A request holds a permit of the window from when it is read until its
/// response has been handed to the transport, so a slow reader of responses
/// stops the session from reading more requests instead of growing a queue.
/// The appends run in this one task (not one task each) so they reach the
/// broker in request order.
pub fn append_session(
    state: AppState,
    mut input: Streaming<proto::AppendRequest>,
    span: Span,
) -> AppendStream {
    let (tx, rx) = mpsc::unbounded_channel::<AppendOutcome>();
    let window = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let task = async move {
        let broker = state.broker.clone();
        let mut in_flight = FuturesOrdered::new();
        let mut permit: Option<OwnedSemaphorePermit> = None;
        let mut input_done = false;
        let mut shutting_down = false;
        let mut appended = 0u64;
        loop {
            if input_done && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                Some((result, p)) = in_flight.next(), if !in_flight.is_empty() => {
                    let result: Result<proto::AppendResponse, ApiError> = result;
                    let failed = result.is_err();
                    if let Err(e) = &result {
                        tracing::debug!(code = %e.code, "append failed: {}", e.message);
                    } else {
                        appended += 1;
                    }
                    if tx.send((result.map_err(Status::from), p)).is_err() || failed {
                        return;
                    }
                }
                p = window.clone().acquire_owned(), if permit.is_none() && !input_done => {
                    match p {
                        Ok(p) => permit = Some(p),
                        Err(_) => return,
                    }
                }
                msg = input.message(), if permit.is_some() && !input_done => match msg {
                    Ok(Some(req)) => {
                        let p = permit.take();
                        let broker = broker.clone();
                        in_flight.push_back(async move { (super::append(&broker, req).await, p) });
                    }
                    Ok(None) => input_done = true,
                    Err(status) => {
                        // The client reset the stream or sent garbage: nobody to answer.
                        tracing::debug!("append session input ended: {status}");
                        return;
                    }
                },
                () = tx.closed() => return,
                () = state.shutdown.cancelled(), if !shutting_down => {
                    // Finish the appends already started, take no more.
                    shutting_down = true;
                    input_done = true;
                }
            }
        }
        tracing::debug!(appended, "append session ended");
        if shutting_down {
            let e = ApiError::new(ErrorCode::Unavailable, "the server is shutting down");
            let _ = tx.send((Err(e.into()), None));
        }
    };
    tokio::spawn(task.instrument(span));
    // Dropping the permit as the response is taken frees a slot in the window.
    Box::pin(UnboundedReceiverStream::new(rx).map(|(result, _permit)| result))
}

/// Follows a partition from `start`: a batch whenever records arrive, a
/// heartbeat after `HEARTBEAT_INTERVAL` of silence. Ends when the client goes
/// away, at shutdown, or with the first read error.
pub fn read_session(
    state: AppState,
    tenant: String,
    req: proto::ReadRequest,
    start: ReadStart,
    span: Span,
) -> ReadStream {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let task = async move {
        let broker = state.broker.clone();
        let mut start = start;
        let mut last_sent = Instant::now();
        loop {
            let wait = HEARTBEAT_INTERVAL.saturating_sub(last_sent.elapsed());
            let request = convert::read_request(start, req.max_records, req.max_bytes, wait);
            let read = broker.read(&tenant, &req.topic, req.partition, request);
            let result = tokio::select! {
                r = read => r,
                () = tx.closed() => return,
                () = state.shutdown.cancelled() => return shutting_down(&tx),
            };
            let event = match result {
                Ok(r) => {
                    start = ReadStart::Offset(r.next_offset);
                    if !r.records.is_empty() {
                        Event::Batch(convert::read_result_to_proto(r))
                    } else if last_sent.elapsed() >= HEARTBEAT_INTERVAL {
                        Event::Heartbeat(proto::Heartbeat {
                            high_watermark: r.high_watermark,
                        })
                    } else {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::debug!(code = %e.code, "read session failed: {}", e.message);
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let response = proto::ReadSessionResponse { event: Some(event) };
            tokio::select! {
                sent = tx.send(Ok(response)) => if sent.is_err() { return },
                () = state.shutdown.cancelled() => return shutting_down(&tx),
            }
            last_sent = Instant::now();
        }
    };
    tokio::spawn(task.instrument(span));
    ReceiverStream::new(rx)
}

/// Tells a follower why its session ends, if there is room to say it; either
/// way the stream ends so the server can stop.
fn shutting_down(tx: &mpsc::Sender<Result<proto::ReadSessionResponse, Status>>) {
    let e = ApiError::new(ErrorCode::Unavailable, "the server is shutting down");
    let _ = tx.try_send(Err(e.into()));
}
