//! One client connection: frames in, responses out, in request order.
//!
//! The reader takes requests in one at a time (so a produce's batches reach
//! the log in request order) and hands each answer, ready or still running,
//! to the writer through a bounded queue; the writer sends them in order.
//! The queue bounds the requests a client can have in flight: when it is
//! full, the connection is not read further.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::codec::{self, CodecError, Decoded};
use crate::context::{Session, Shared};
use crate::dispatch::{Reply, dispatch};
use crate::metrics;

/// An answer in the writer's queue.
enum Outgoing {
    Frame(Bytes),
    Running {
        correlation_id: i32,
        api: ApiKey,
        version: i16,
        task: JoinHandle<ResponseKind>,
    },
}

/// Why the reader stopped.
#[derive(Debug)]
enum Closed {
    Eof,
    Io(std::io::Error),
    Oversized(i64),
    Codec(CodecError),
    WriterGone,
    /// A request that closes the connection by design ([`Reply::Close`]).
    Asked,
}

/// Serves one connection until the client closes it or breaks the protocol.
pub(crate) async fn serve<S>(shared: Arc<Shared>, stream: S, peer: String)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    metrics::CONNECTIONS.inc();
    let (reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(shared.config.max_in_flight.max(1));
    let writer = tokio::spawn(write_loop(writer, rx));
    let mut session = Session::new(&shared.config);
    let closed = read_loop(&shared, &mut session, reader, tx).await;
    match &closed {
        Closed::Eof | Closed::WriterGone => debug!(peer, "kafka connection closed"),
        Closed::Asked => debug!(
            peer,
            "kafka connection closed after an unanswered produce to another node's partition"
        ),
        Closed::Io(e) => debug!(peer, error = %e, "kafka connection failed"),
        Closed::Oversized(len) => {
            metrics::REJECTED_FRAMES.with_label_values(&["size"]).inc();
            warn!(
                peer,
                len, "kafka frame size out of bounds; closing the connection"
            );
        }
        Closed::Codec(e) => {
            let reason = match e {
                CodecError::UnknownApi(_) | CodecError::Unimplemented { .. } => "api",
                CodecError::UnsupportedVersion { .. } => "version",
                _ => "malformed",
            };
            metrics::REJECTED_FRAMES.with_label_values(&[reason]).inc();
            warn!(peer, error = %e, "bad kafka request; closing the connection");
        }
    }
    // The writer sends every answer queued before the reader stopped.
    let _ = writer.await;
    metrics::CONNECTIONS.dec();
}

async fn read_loop<R>(
    shared: &Arc<Shared>,
    session: &mut Session,
    mut reader: R,
    tx: mpsc::Sender<Outgoing>,
) -> Closed
where
    R: AsyncRead + Unpin,
{
    let max = shared.config.max_frame_bytes;
    loop {
        let len = match reader.read_i32().await {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Closed::Eof,
            Err(e) => return Closed::Io(e),
        };
        let Some(len) = usize::try_from(len).ok().filter(|&l| l <= max) else {
            return Closed::Oversized(i64::from(len));
        };
        let mut frame = BytesMut::zeroed(len);
        if let Err(e) = reader.read_exact(&mut frame).await {
            return Closed::Io(e);
        }
        let outgoing = match codec::decode_request(frame.freeze()) {
            Err(e) => return Closed::Codec(e),
            Ok(Decoded::UnsupportedApiVersions { correlation_id }) => {
                match codec::unsupported_api_versions(correlation_id) {
                    Ok(frame) => Outgoing::Frame(frame),
                    Err(e) => return Closed::Codec(e),
                }
            }
            Ok(Decoded::Request(request)) => {
                let (api, version) = (request.api, request.version);
                let correlation_id = request.header.correlation_id;
                metrics::REQUESTS.with_label_values(&[api_name(api)]).inc();
                match dispatch(shared, session, *request).await {
                    None => {
                        return Closed::Codec(CodecError::Unimplemented { api });
                    }
                    Some(Reply::Nothing) => continue,
                    Some(Reply::Close) => return Closed::Asked,
                    Some(Reply::Ready(body)) => {
                        match codec::encode_response(correlation_id, api, version, &body) {
                            Ok(frame) => Outgoing::Frame(frame),
                            Err(e) => return Closed::Codec(e),
                        }
                    }
                    Some(Reply::Pending(fut)) => Outgoing::Running {
                        correlation_id,
                        api,
                        version,
                        task: tokio::spawn(fut),
                    },
                }
            }
        };
        if tx.send(outgoing).await.is_err() {
            return Closed::WriterGone;
        }
    }
}

async fn write_loop<W>(writer: W, mut rx: mpsc::Receiver<Outgoing>)
where
    W: AsyncWrite + Unpin,
{
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(outgoing) = rx.recv().await {
        let frame = match outgoing {
            Outgoing::Frame(frame) => frame,
            Outgoing::Running {
                correlation_id,
                api,
                version,
                task,
            } => {
                let body = match task.await {
                    Ok(body) => body,
                    Err(e) => {
                        warn!(error = %e, ?api, "kafka request task failed; closing the connection");
                        break;
                    }
                };
                match codec::encode_response(correlation_id, api, version, &body) {
                    Ok(frame) => frame,
                    Err(e) => {
                        warn!(error = %e, "cannot encode a kafka response; closing the connection");
                        break;
                    }
                }
            }
        };
        if writer.write_all(&frame).await.is_err() {
            break;
        }
        // Flush when nothing else is ready to go, so answers that finish
        // together leave in one write.
        if rx.is_empty() && writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

fn api_name(api: ApiKey) -> &'static str {
    crate::versions::name(api)
}
