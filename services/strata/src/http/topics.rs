//! `/v1/tenants/{tenant}/topics`: create, list, describe, alter, delete.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_broker::{
    PartitionDescription, TopicConfig, TopicConfigPatch, TopicDescription, TopicMeta,
};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiJson, ApiPath, ErrorBody, HttpResult};
use super::tenants::TenantPath;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TopicPath {
    pub tenant: String,
    pub topic: String,
}

/// Topic settings to set; fields left out keep their value (or the broker default).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConfigIn {
    /// Records older than this are deleted; -1 keeps them forever.
    pub retention_ms: Option<i64>,
    /// Per partition: oldest segments are deleted while the partition is larger; -1: no limit.
    pub retention_bytes: Option<i64>,
    pub segment_bytes: Option<i64>,
    pub segment_ms: Option<i64>,
    /// Largest record accepted.
    pub max_message_bytes: Option<i64>,
    /// Segments already in the bucket leave local disk once older than this;
    /// -1: never by age, -2: the same as `retention_ms`.
    pub local_retention_ms: Option<i64>,
    /// Per partition: segments already in the bucket leave local disk while the
    /// local copy is larger than this; -1: no limit, -2: the same as `retention_bytes`.
    pub local_retention_bytes: Option<i64>,
    /// An acks=all write needs this many replicas in sync and is acknowledged
    /// once this many (and a majority) hold it; at most the replication factor.
    pub min_insync_replicas: Option<i64>,
}

impl From<TopicConfigIn> for TopicConfigPatch {
    fn from(c: TopicConfigIn) -> Self {
        TopicConfigPatch {
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            segment_bytes: c.segment_bytes,
            segment_ms: c.segment_ms,
            max_message_bytes: c.max_message_bytes,
            local_retention_ms: c.local_retention_ms,
            local_retention_bytes: c.local_retention_bytes,
            min_insync_replicas: c.min_insync_replicas,
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicRequest {
    pub name: String,
    /// Number of partitions (default 1).
    #[serde(default = "one")]
    #[schema(default = 1)]
    pub partitions: u32,
    /// Copies of each partition, each on its own broker (default 3, or the
    /// number of live brokers if fewer); fixed once the topic exists.
    pub replication_factor: Option<u32>,
    #[serde(default)]
    pub config: TopicConfigIn,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlterTopicRequest {
    pub config: TopicConfigIn,
}

/// A topic's effective configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicConfigOut {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i64,
    /// As set: -2 means "the same as `retention_ms`", -1 "never by age".
    pub local_retention_ms: i64,
    /// As set: -2 means "the same as `retention_bytes`", -1 "no limit".
    pub local_retention_bytes: i64,
    pub min_insync_replicas: i64,
}

impl From<TopicConfig> for TopicConfigOut {
    fn from(c: TopicConfig) -> Self {
        TopicConfigOut {
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            segment_bytes: c.segment_bytes,
            segment_ms: c.segment_ms,
            max_message_bytes: c.max_message_bytes,
            local_retention_ms: c.local_retention_ms,
            local_retention_bytes: c.local_retention_bytes,
            min_insync_replicas: c.min_insync_replicas,
        }
    }
}

/// A partition's valid offset range: `start_offset..end_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartitionInfo {
    pub partition: u32,
    /// The first offset still stored.
    pub start_offset: u64,
    /// One past the last offset (the next offset to be written).
    pub end_offset: u64,
}

/// A partition as a topic description shows it: its readable offsets
/// (`start_offset..end_offset`, whichever tier holds them), the part on local
/// disk, the part in the bucket, and what still waits for upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartitionDetails {
    pub partition: u32,
    /// The first offset still readable, on local disk or in the bucket.
    pub start_offset: u64,
    /// One past the last offset (the next offset to be written).
    pub end_offset: u64,
    /// Offsets on local disk: `local_start_offset..end_offset`.
    pub local_start_offset: u64,
    /// Bytes of record batches on local disk.
    pub local_bytes: u64,
    /// Offsets in the bucket: `remote_start_offset..remote_end_offset`
    /// (equal when the bucket holds none).
    pub remote_start_offset: u64,
    pub remote_end_offset: u64,
    /// Bytes of the partition's segment objects in the bucket.
    pub remote_bytes: u64,
    /// How many segment objects the bucket holds for the partition.
    pub remote_segments: u32,
    /// Bytes of sealed segments waiting for upload.
    pub offload_lag_bytes: u64,
    /// Age in milliseconds of the oldest sealed segment waiting for upload (0 when none).
    pub offload_lag_ms: i64,
}

impl From<PartitionDescription> for PartitionDetails {
    fn from(p: PartitionDescription) -> Self {
        let PartitionDescription {
            partition,
            start_offset,
            end_offset,
            local_start_offset,
            local_bytes,
            remote_start_offset,
            remote_end_offset,
            remote_bytes,
            remote_segments,
            offload_lag_bytes,
            offload_lag_ms,
        } = p;
        PartitionDetails {
            partition,
            start_offset,
            end_offset,
            local_start_offset,
            local_bytes,
            remote_start_offset,
            remote_end_offset,
            remote_bytes,
            remote_segments,
            offload_lag_bytes,
            offload_lag_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Topic {
    pub tenant: String,
    pub name: String,
    /// Distinguishes a topic from an earlier one of the same name.
    pub id: u64,
    pub partitions: u32,
    /// Copies of each partition.
    pub replication_factor: u32,
    pub config: TopicConfigOut,
    pub created_ms: i64,
    /// Per-partition offsets and tiers; only when describing one topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_info: Option<Vec<PartitionDetails>>,
}

impl From<TopicMeta> for Topic {
    fn from(t: TopicMeta) -> Self {
        Topic {
            tenant: t.tenant,
            name: t.name,
            id: t.id,
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            config: t.config.into(),
            created_ms: t.created_ms,
            partition_info: None,
        }
    }
}

impl From<TopicDescription> for Topic {
    fn from(d: TopicDescription) -> Self {
        let mut t = Topic::from(d.topic);
        t.partition_info = Some(d.partitions.into_iter().map(Into::into).collect());
        t
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopicList {
    pub topics: Vec<Topic>,
}

/// Create a topic.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/topics",
    tag = "topics",
    params(TenantPath),
    request_body = CreateTopicRequest,
    responses(
        (status = 201, description = "Created", body = Topic),
        (status = 400, description = "Invalid name, partitions, replication factor, config or body", body = ErrorBody),
        (status = 404, description = "Unknown tenant", body = ErrorBody),
        (status = 409, description = "The topic exists", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.create_topic", skip_all, fields(tenant = %p.tenant))]
pub async fn create(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<TenantPath>,
    ApiJson(body): ApiJson<CreateTopicRequest>,
) -> HttpResult<Response> {
    let meta = state
        .broker
        .create_topic_with(
            &p.tenant,
            &body.name,
            body.partitions,
            body.replication_factor,
            body.config.into(),
        )
        .await?;
    let location = format!("/v1/tenants/{}/topics/{}", meta.tenant, meta.name);
    let topic = Topic::from(meta);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(topic),
    )
        .into_response())
}

/// List a tenant's topics.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/topics",
    tag = "topics",
    params(TenantPath),
    responses(
        (status = 200, description = "The topics", body = TopicList),
        (status = 404, description = "Unknown tenant", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.list_topics", skip_all, fields(tenant = %p.tenant))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<TenantPath>,
) -> HttpResult<Json<TopicList>> {
    let topics = state.broker.list_topics(&p.tenant).await?;
    Ok(Json(TopicList {
        topics: topics.into_iter().map(Topic::from).collect(),
    }))
}

/// Describe a topic: its config, each partition's offsets, what of it is on
/// local disk and in the bucket, and its offload lag.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/topics/{topic}",
    tag = "topics",
    params(TopicPath),
    responses(
        (status = 200, description = "The topic with `partition_info`", body = Topic),
        (status = 404, description = "Unknown tenant or topic", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.describe_topic", skip_all, fields(tenant = %p.tenant, topic = %p.topic))]
pub async fn describe(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<TopicPath>,
) -> HttpResult<Json<Topic>> {
    let d = state.broker.describe_topic(&p.tenant, &p.topic).await?;
    Ok(Json(d.into()))
}

/// Change a topic's config.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{tenant}/topics/{topic}",
    tag = "topics",
    params(TopicPath),
    request_body = AlterTopicRequest,
    responses(
        (status = 200, description = "The changed topic", body = Topic),
        (status = 400, description = "Invalid config or body", body = ErrorBody),
        (status = 404, description = "Unknown tenant or topic", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.alter_topic", skip_all, fields(tenant = %p.tenant, topic = %p.topic))]
pub async fn alter(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<TopicPath>,
    ApiJson(body): ApiJson<AlterTopicRequest>,
) -> HttpResult<Json<Topic>> {
    let meta = state
        .broker
        .alter_topic(&p.tenant, &p.topic, body.config.into())
        .await?;
    Ok(Json(meta.into()))
}

/// Delete a topic and its records.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/topics/{topic}",
    tag = "topics",
    params(TopicPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Unknown tenant or topic", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.delete_topic", skip_all, fields(tenant = %p.tenant, topic = %p.topic))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<TopicPath>,
) -> HttpResult<StatusCode> {
    state.broker.delete_topic(&p.tenant, &p.topic).await?;
    Ok(StatusCode::NO_CONTENT)
}
