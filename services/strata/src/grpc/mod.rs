//! The gRPC API (tonic): `strata.v1.Strata`, with server reflection.

mod convert;
mod decode_errors;
mod session;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use strata_api::ApiError;
use strata_api::proto;
use strata_api::proto::strata_server::{Strata, StrataServer};
use strata_broker::{Broker, ReadStart};
use tonic::server::NamedService;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, Span};

use crate::state::AppState;
use convert::tenant;

/// Protobuf framing and field tags on top of the records themselves, so a
/// request of exactly `max_request_bytes` of records is not cut off by the codec.
const DECODE_SLACK_BYTES: u64 = 1024 * 1024;

/// The gRPC service and reflection as routes to merge with the HTTP router
/// (gRPC is HTTP/2 on the same listener).
///
/// The services are mounted with `route_service` rather than through
/// `tonic::service::Routes`, whose router carries a custom fallback: axum
/// panics when merging two routers that both have one, and the HTTP router
/// owns the fallback (its JSON 404).
pub fn routes(state: AppState) -> Router {
    let limit = state
        .broker
        .config()
        .max_request_bytes
        .saturating_add(DECODE_SLACK_BYTES);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let strata = StrataServer::new(StrataService { state }).max_decoding_message_size(limit);
    let mut router =
        Router::new().route_service(&service_path::<StrataServer<StrataService>>(), strata);
    match tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
    {
        Ok(reflection) => {
            router = router.route_service(&service_path_of(&reflection), reflection);
        }
        // Reflection is a convenience for tools like grpcurl; serve the API without it.
        Err(e) => tracing::warn!("gRPC reflection disabled: {e}"),
    }
    router.layer(axum::middleware::map_response(decode_errors::map))
}

fn service_path<S: NamedService>() -> String {
    format!("/{}/{{*rest}}", S::NAME)
}

fn service_path_of<S: NamedService>(_: &S) -> String {
    service_path::<S>()
}

#[derive(Clone)]
pub struct StrataService {
    state: AppState,
}

impl StrataService {
    fn broker(&self) -> &Arc<Broker> {
        &self.state.broker
    }
}

/// Runs one call inside its span and logs failures there.
async fn traced<T>(
    span: Span,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response<T>, Status> {
    match call.instrument(span.clone()).await {
        Ok(v) => Ok(Response::new(v)),
        Err(e) => {
            span.in_scope(|| tracing::debug!(code = %e.code, "{}", e.message));
            Err(e.into())
        }
    }
}

/// One Append: to one partition atomically when the request names it, else
/// record by record where the partitioner puts them.
pub(crate) async fn append(
    broker: &Broker,
    req: proto::AppendRequest,
) -> Result<proto::AppendResponse, ApiError> {
    let acks = convert::acks_from_proto(req.acks)?;
    let tenant = tenant(&req.tenant);
    let count = req.records.len();
    let records = req
        .records
        .into_iter()
        .map(convert::record_from_proto)
        .collect();
    let offsets = match req.partition {
        Some(partition) => {
            let r = broker
                .append(
                    tenant,
                    &req.topic,
                    partition,
                    records,
                    req.expected_offset,
                    acks,
                )
                .await?;
            convert::append_offsets(r.partition, r.base_offset, count)
        }
        None => {
            if req.expected_offset.is_some() {
                return Err(ApiError::new(
                    strata_api::ErrorCode::BadRequest,
                    "expected_offset needs a partition",
                ));
            }
            broker
                .produce(tenant, &req.topic, records, acks)
                .await?
                .into_iter()
                .map(|(partition, offset)| proto::RecordOffset { partition, offset })
                .collect()
        }
    };
    Ok(proto::AppendResponse { offsets })
}

/// Where a read starts: the requested position, else the partition's first record.
async fn resolve_start(
    broker: &Broker,
    tenant: &str,
    topic: &str,
    partition: u32,
    start: Option<proto::read_request::Start>,
) -> Result<ReadStart, ApiError> {
    match convert::read_start(start) {
        Some(s) => Ok(s),
        None => {
            let (start_offset, _) = broker.check_tail(tenant, topic, partition).await?;
            Ok(ReadStart::Offset(start_offset))
        }
    }
}

#[tonic::async_trait]
impl Strata for StrataService {
    async fn create_topic(
        &self,
        request: Request<proto::CreateTopicRequest>,
    ) -> Result<Response<proto::Topic>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.create_topic", tenant, topic = %req.name, partitions = req.partitions);
        traced(span, async {
            let patch = convert::patch_from_proto(req.config);
            let meta = self
                .broker()
                .create_topic_with(
                    &tenant,
                    &req.name,
                    req.partitions,
                    req.replication_factor,
                    patch,
                )
                .await?;
            Ok(convert::topic_to_proto(&meta))
        })
        .await
    }

    async fn list_topics(
        &self,
        request: Request<proto::ListTopicsRequest>,
    ) -> Result<Response<proto::ListTopicsResponse>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.list_topics", tenant);
        traced(span, async {
            let topics = self.broker().list_topics(&tenant).await?;
            Ok(proto::ListTopicsResponse {
                topics: topics.iter().map(convert::topic_to_proto).collect(),
            })
        })
        .await
    }

    async fn describe_topic(
        &self,
        request: Request<proto::DescribeTopicRequest>,
    ) -> Result<Response<proto::Topic>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.describe_topic", tenant, topic = %req.topic);
        traced(span, async {
            let d = self.broker().describe_topic(&tenant, &req.topic).await?;
            Ok(convert::description_to_proto(&d))
        })
        .await
    }

    async fn alter_topic(
        &self,
        request: Request<proto::AlterTopicRequest>,
    ) -> Result<Response<proto::Topic>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.alter_topic", tenant, topic = %req.topic);
        traced(span, async {
            let patch = convert::patch_from_proto(req.config);
            let meta = self
                .broker()
                .alter_topic(&tenant, &req.topic, patch)
                .await?;
            Ok(convert::topic_to_proto(&meta))
        })
        .await
    }

    async fn delete_topic(
        &self,
        request: Request<proto::DeleteTopicRequest>,
    ) -> Result<Response<proto::DeleteTopicResponse>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.delete_topic", tenant, topic = %req.topic);
        traced(span, async {
            self.broker().delete_topic(&tenant, &req.topic).await?;
            Ok(proto::DeleteTopicResponse {})
        })
        .await
    }

    async fn append(
        &self,
        request: Request<proto::AppendRequest>,
    ) -> Result<Response<proto::AppendResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "grpc.append",
            tenant = tenant(&req.tenant),
            topic = %req.topic,
            records = req.records.len()
        );
        traced(span, append(self.broker(), req)).await
    }

    type AppendSessionStream = session::AppendStream;

    async fn append_session(
        &self,
        request: Request<Streaming<proto::AppendRequest>>,
    ) -> Result<Response<Self::AppendSessionStream>, Status> {
        let span = tracing::info_span!("grpc.append_session", remote = ?request.remote_addr());
        let stream = session::append_session(self.state.clone(), request.into_inner(), span);
        Ok(Response::new(stream))
    }

    async fn read(
        &self,
        request: Request<proto::ReadRequest>,
    ) -> Result<Response<proto::ReadResponse>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span =
            tracing::info_span!("grpc.read", tenant, topic = %req.topic, partition = req.partition);
        traced(span, async {
            let broker = self.broker();
            let start =
                resolve_start(broker, &tenant, &req.topic, req.partition, req.start).await?;
            let wait = Duration::from_millis(u64::from(req.wait_ms)).min(broker.config().max_wait);
            let read = |wait| {
                let request = convert::read_request(start, req.max_records, req.max_bytes, wait);
                broker.read(&tenant, &req.topic, req.partition, request)
            };
            // A long poll ends early at shutdown with whatever is there.
            let result = tokio::select! {
                r = read(wait) => r?,
                () = self.state.shutdown.cancelled() => read(Duration::ZERO).await?,
            };
            Ok(convert::read_result_to_proto(result))
        })
        .await
    }

    type ReadSessionStream = session::ReadStream;

    async fn read_session(
        &self,
        request: Request<proto::ReadRequest>,
    ) -> Result<Response<Self::ReadSessionStream>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.read_session", tenant, topic = %req.topic, partition = req.partition);
        // Resolve the start now so a bad topic or partition fails the call itself.
        let start = resolve_start(self.broker(), &tenant, &req.topic, req.partition, req.start)
            .instrument(span.clone())
            .await
            .map_err(Status::from)?;
        let stream = session::read_session(self.state.clone(), tenant, req, start, span);
        Ok(Response::new(stream))
    }

    async fn create_tenant(
        &self,
        request: Request<proto::CreateTenantRequest>,
    ) -> Result<Response<proto::CreateTenantResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!("grpc.create_tenant", tenant = %req.tenant);
        traced(span, async {
            let existed = self.broker().list_tenants().await?.contains(&req.tenant);
            self.broker().create_tenant(&req.tenant).await?;
            Ok(proto::CreateTenantResponse { created: !existed })
        })
        .await
    }

    async fn list_tenants(
        &self,
        _request: Request<proto::ListTenantsRequest>,
    ) -> Result<Response<proto::ListTenantsResponse>, Status> {
        let span = tracing::info_span!("grpc.list_tenants");
        traced(span, async {
            Ok(proto::ListTenantsResponse {
                tenants: self.broker().list_tenants().await?,
            })
        })
        .await
    }

    async fn check_tail(
        &self,
        request: Request<proto::CheckTailRequest>,
    ) -> Result<Response<proto::CheckTailResponse>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.check_tail", tenant, topic = %req.topic, partition = req.partition);
        traced(span, async {
            let (start_offset, next_offset) = self
                .broker()
                .check_tail(&tenant, &req.topic, req.partition)
                .await?;
            Ok(proto::CheckTailResponse {
                next_offset,
                start_offset,
            })
        })
        .await
    }

    async fn commit_offsets(
        &self,
        request: Request<proto::CommitOffsetsRequest>,
    ) -> Result<Response<proto::CommitOffsetsResponse>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.commit_offsets", tenant, group = %req.group, offsets = req.offsets.len());
        traced(span, async {
            let offsets = req
                .offsets
                .into_iter()
                .map(convert::group_offset_from_proto)
                .collect();
            self.broker()
                .commit_offsets(&tenant, &req.group, offsets)
                .await?;
            Ok(proto::CommitOffsetsResponse {})
        })
        .await
    }

    async fn fetch_offsets(
        &self,
        request: Request<proto::FetchOffsetsRequest>,
    ) -> Result<Response<proto::FetchOffsetsResponse>, Status> {
        let req = request.into_inner();
        let tenant = tenant(&req.tenant).to_string();
        let span = tracing::info_span!("grpc.fetch_offsets", tenant, group = %req.group);
        traced(span, async {
            let offsets = self.broker().fetch_offsets(&tenant, &req.group).await?;
            Ok(proto::FetchOffsetsResponse {
                offsets: offsets
                    .into_iter()
                    .map(convert::group_offset_to_proto)
                    .collect(),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests;
