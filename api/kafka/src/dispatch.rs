//! Routes a decoded request to the module of its API.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};

use crate::apis;
use crate::codec::Request;
use crate::context::{Session, Shared};
use crate::group;

/// A response that finishes after the request was taken in: the connection
/// goes on reading while it runs, and answers in request order.
pub(crate) type PendingResponse = Pin<Box<dyn Future<Output = ResponseKind> + Send>>;

/// How a request is answered.
pub(crate) enum Reply {
    /// Worked on in request order; the answer is ready.
    Ready(Box<ResponseKind>),
    /// Taken in in request order (a produce's batches are queued for the log
    /// before the next request is read); the answer comes later.
    Pending(PendingResponse),
    /// No answer at all (Produce with acks=0).
    Nothing,
    /// No answer, and the connection is closed once the answers before it
    /// are sent: a Produce with acks=0 to a partition led by another node,
    /// so the producer (which reads no answer) refreshes its metadata, as
    /// Kafka does.
    Close,
}

/// Handles one request. `None`: a request the codec should never have let
/// through; the connection is closed.
pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    session: &mut Session,
    request: Request,
) -> Option<Reply> {
    let v = request.version;
    let s = shared.as_ref();
    let ready = |r: ResponseKind| Some(Reply::Ready(Box::new(r)));
    match request.body {
        RequestKind::ApiVersions(r) => {
            ready(ResponseKind::ApiVersions(apis::api_versions::handle(&r, v)))
        }
        RequestKind::SaslHandshake(r) => ready(ResponseKind::SaslHandshake(apis::sasl::handshake(
            session, &r, v,
        ))),
        RequestKind::SaslAuthenticate(r) => ready(ResponseKind::SaslAuthenticate(
            apis::sasl::authenticate(s, session, &r, v).await,
        )),
        RequestKind::Metadata(r) => ready(ResponseKind::Metadata(
            apis::metadata::handle(s, session, r, v).await,
        )),
        RequestKind::Produce(r) => Some(apis::produce::handle(shared, session, r, v).await),
        RequestKind::Fetch(r) => {
            let (shared, tenant) = (shared.clone(), session.tenant.clone());
            Some(Reply::Pending(Box::pin(async move {
                ResponseKind::Fetch(apis::fetch::handle(&shared, &tenant, r, v).await)
            })))
        }
        RequestKind::ListOffsets(r) => ready(ResponseKind::ListOffsets(
            apis::list_offsets::handle(s, session, r, v).await,
        )),
        RequestKind::FindCoordinator(r) => ready(ResponseKind::FindCoordinator(
            apis::find_coordinator::handle(s, session, r, v),
        )),
        RequestKind::InitProducerId(r) => ready(ResponseKind::InitProducerId(
            apis::init_producer_id::handle(s, session, r, v).await,
        )),
        RequestKind::CreateTopics(r) => ready(ResponseKind::CreateTopics(
            apis::create_topics::handle(s, session, r, v).await,
        )),
        RequestKind::DeleteTopics(r) => ready(ResponseKind::DeleteTopics(
            apis::delete_topics::handle(s, session, r, v).await,
        )),
        RequestKind::CreatePartitions(r) => ready(ResponseKind::CreatePartitions(
            apis::create_partitions::handle(s, session, r, v).await,
        )),
        RequestKind::DescribeConfigs(r) => ready(ResponseKind::DescribeConfigs(
            apis::describe_configs::handle(s, session, r, v).await,
        )),
        RequestKind::AlterConfigs(r) => ready(ResponseKind::AlterConfigs(
            apis::alter_configs::handle(s, session, r, v).await,
        )),
        RequestKind::IncrementalAlterConfigs(r) => ready(ResponseKind::IncrementalAlterConfigs(
            apis::alter_configs::handle_incremental(s, session, r, v).await,
        )),
        RequestKind::DeleteRecords(r) => ready(ResponseKind::DeleteRecords(
            apis::delete_records::handle(s, session, r, v).await,
        )),
        RequestKind::DescribeCluster(r) => ready(ResponseKind::DescribeCluster(
            apis::describe_cluster::handle(s, session, r, v),
        )),
        RequestKind::JoinGroup(r) => {
            let (shared, tenant) = (shared.clone(), session.tenant.clone());
            Some(Reply::Pending(Box::pin(async move {
                ResponseKind::JoinGroup(group::join::handle(&shared, &tenant, r, v).await)
            })))
        }
        RequestKind::SyncGroup(r) => {
            let (shared, tenant) = (shared.clone(), session.tenant.clone());
            Some(Reply::Pending(Box::pin(async move {
                ResponseKind::SyncGroup(group::sync::handle(&shared, &tenant, r, v).await)
            })))
        }
        RequestKind::Heartbeat(r) => ready(ResponseKind::Heartbeat(group::heartbeat::handle(
            s, session, r, v,
        ))),
        RequestKind::LeaveGroup(r) => ready(ResponseKind::LeaveGroup(group::leave::handle(
            s, session, r, v,
        ))),
        RequestKind::OffsetCommit(r) => ready(ResponseKind::OffsetCommit(
            group::offset_commit::handle(s, session, r, v).await,
        )),
        RequestKind::OffsetFetch(r) => ready(ResponseKind::OffsetFetch(
            group::offset_fetch::handle(s, session, r, v).await,
        )),
        RequestKind::DescribeGroups(r) => ready(ResponseKind::DescribeGroups(
            group::describe::handle(s, session, r, v).await,
        )),
        RequestKind::ListGroups(r) => ready(ResponseKind::ListGroups(
            group::list::handle(s, session, r, v).await,
        )),
        RequestKind::DeleteGroups(r) => ready(ResponseKind::DeleteGroups(
            group::delete::handle(s, session, r, v).await,
        )),
        _ => None,
    }
}
