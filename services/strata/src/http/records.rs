//! Records: produce, conditional append to one partition, read (JSON or SSE).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};
use strata_broker::{Acks, ReadRequest, ReadResult, ReadStart};
use utoipa::{IntoParams, ToSchema};

use super::codec::{Encoding, RecordIn, RecordOut, decode_records, encode_records};
use super::error::{ApiJson, ApiPath, ApiQuery, ErrorBody, HttpResult};
use super::topics::{PartitionInfo, TopicPath};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PartitionPath {
    pub tenant: String,
    pub topic: String,
    pub partition: u32,
}

/// When a produce is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AcksIn {
    /// After the records are durable on disk (the default).
    #[default]
    Fsync,
    /// After the records are written to the OS.
    Write,
}

impl From<AcksIn> for Acks {
    fn from(a: AcksIn) -> Self {
        match a {
            AcksIn::Fsync => Acks::Fsync,
            AcksIn::Write => Acks::Write,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    pub records: Vec<RecordIn>,
    #[serde(default)]
    pub acks: AcksIn,
    /// How keys, values and header values are written (default `utf8`).
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordOffset {
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProduceResponse {
    /// One per record, in request order.
    pub offsets: Vec<RecordOffset>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// Records for this partition; a record's `partition`, if given, must be this one.
    pub records: Vec<RecordIn>,
    /// Append only if the partition ends at this offset (else 412 `offset_mismatch`).
    pub expected_offset: Option<u64>,
    #[serde(default)]
    pub acks: AcksIn,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppendResponse {
    pub partition: u32,
    pub base_offset: u64,
    /// One past the last offset appended.
    pub next_offset: u64,
    /// The offset of each record, in request order.
    pub offsets: Vec<u64>,
}

/// Where to start reading: at most one of `offset`, `timestamp_ms`, `tail`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Start at this offset. With none of `offset`, `timestamp_ms`, `tail`: a JSON read
    /// starts at the partition's start offset; an SSE tail at `Last-Event-ID` or the end.
    pub offset: Option<u64>,
    /// Start at the first record at or after this time.
    pub timestamp_ms: Option<i64>,
    /// Start with the last N records.
    pub tail: Option<u64>,
    /// Most records to return (0 or absent: the server default).
    pub max_records: Option<u32>,
    /// Most bytes to return (0 or absent: the server default).
    pub max_bytes: Option<u64>,
    /// Wait up to this long for a record when there is none yet (long poll).
    pub wait_ms: Option<u64>,
    /// `utf8` (default) or `base64`.
    #[param(inline)]
    pub encoding: Option<Encoding>,
}

impl ReadQuery {
    /// The start the query asks for, if any.
    pub fn start(&self) -> Result<Option<ReadStart>, ApiError> {
        let starts = [
            self.offset.map(ReadStart::Offset),
            self.timestamp_ms.map(ReadStart::Timestamp),
            self.tail.map(ReadStart::Tail),
        ];
        let mut given = starts.into_iter().flatten();
        let first = given.next();
        if given.next().is_some() {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "give at most one of offset, timestamp_ms and tail",
            ));
        }
        Ok(first)
    }

    /// A broker read request from `start`, without waiting.
    pub fn request(&self, start: ReadStart) -> ReadRequest {
        ReadRequest {
            start,
            max_records: self.max_records.filter(|&n| n > 0),
            max_bytes: self.max_bytes.filter(|&n| n > 0),
            wait: Duration::ZERO,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadResponse {
    pub records: Vec<RecordOut>,
    /// The offset to read next.
    pub next_offset: u64,
    /// The partition's end offset (everything below it is readable).
    pub high_watermark: u64,
    /// The partition's first stored offset.
    pub start_offset: u64,
}

impl ReadResponse {
    pub fn new(r: ReadResult, encoding: Encoding) -> Result<Self, ApiError> {
        Ok(ReadResponse {
            records: encode_records(r.records, encoding)?,
            next_offset: r.next_offset,
            high_watermark: r.high_watermark,
            start_offset: r.start_offset,
        })
    }
}

/// Produce records, each to its key's partition (or the one it names).
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/topics/{topic}/records",
    tag = "records",
    params(TopicPath),
    request_body = ProduceRequest,
    responses(
        (status = 200, description = "The offset of each record", body = ProduceResponse),
        (status = 400, description = "Malformed body or records", body = ErrorBody),
        (status = 404, description = "Unknown tenant, topic or partition", body = ErrorBody),
        (status = 413, description = "A record or the request is too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.produce", skip_all, fields(tenant = %p.tenant, topic = %p.topic))]
pub async fn produce(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<TopicPath>,
    ApiJson(body): ApiJson<ProduceRequest>,
) -> HttpResult<Json<ProduceResponse>> {
    let records = decode_records(body.records, body.encoding)?;
    let offsets = state
        .broker
        .produce(&p.tenant, &p.topic, records, body.acks.into())
        .await?;
    Ok(Json(ProduceResponse {
        offsets: offsets
            .into_iter()
            .map(|(partition, offset)| RecordOffset { partition, offset })
            .collect(),
    }))
}

/// Append records to one partition atomically, optionally only at an expected offset.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/topics/{topic}/partitions/{partition}/records",
    tag = "records",
    params(PartitionPath),
    request_body = AppendRequest,
    responses(
        (status = 200, description = "Appended", body = AppendResponse),
        (status = 400, description = "Malformed body or records", body = ErrorBody),
        (status = 404, description = "Unknown tenant, topic or partition", body = ErrorBody),
        (status = 412, description = "`expected_offset` is not the end; `details.end_offset` is", body = ErrorBody),
        (status = 413, description = "A record or the request is too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.append", skip_all, fields(tenant = %p.tenant, topic = %p.topic, partition = p.partition))]
pub async fn append(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<PartitionPath>,
    ApiJson(body): ApiJson<AppendRequest>,
) -> HttpResult<Json<AppendResponse>> {
    if let Some((i, other)) = body
        .records
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.partition.filter(|&q| q != p.partition).map(|q| (i, q)))
    {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "records[{i}].partition is {other} but the request appends to partition {}",
                p.partition
            ),
        )
        .into());
    }
    let records = decode_records(body.records, body.encoding)?;
    let r = state
        .broker
        .append(
            &p.tenant,
            &p.topic,
            p.partition,
            records,
            body.expected_offset,
            body.acks.into(),
        )
        .await?;
    Ok(Json(AppendResponse {
        partition: r.partition,
        base_offset: r.base_offset,
        next_offset: r.next_offset,
        offsets: (r.base_offset..r.next_offset).collect(),
    }))
}

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// Read records from a partition, or tail it as Server-Sent Events.
///
/// With `Accept: text/event-stream` the partition is tailed: `records` events carry a
/// JSON `ReadResponse` (the event id is its `next_offset`, so `Last-Event-ID` resumes),
/// `heartbeat` events carry `{"next_offset","high_watermark"}` on connect and every ~5 s
/// while idle, and an `error` event carrying the error body ends the stream.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/topics/{topic}/partitions/{partition}/records",
    tag = "records",
    params(PartitionPath, ReadQuery),
    responses(
        (status = 200, description = "Records (JSON), or an SSE stream with `Accept: text/event-stream`",
            content((ReadResponse = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "Bad query, or non-UTF-8 data read with `encoding=utf8`", body = ErrorBody),
        (status = 404, description = "Unknown tenant, topic or partition", body = ErrorBody),
        (status = 416, description = "Offset outside the partition's range (given in `details`)", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.read", skip_all, fields(tenant = %p.tenant, topic = %p.topic, partition = p.partition))]
pub async fn read(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<PartitionPath>,
    ApiQuery(q): ApiQuery<ReadQuery>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    if wants_event_stream(&headers) {
        return super::stream::tail(state, p, q, &headers).await;
    }
    let start = match q.start()? {
        Some(s) => s,
        None => {
            let (start, _) = state
                .broker
                .check_tail(&p.tenant, &p.topic, p.partition)
                .await?;
            ReadStart::Offset(start)
        }
    };
    let request = q.request(start);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(state.broker.config().max_wait);
    let broker = &state.broker;
    let result = if wait.is_zero() {
        broker
            .read(&p.tenant, &p.topic, p.partition, request)
            .await?
    } else {
        let waiting = ReadRequest {
            wait,
            ..request.clone()
        };
        tokio::select! {
            r = broker.read(&p.tenant, &p.topic, p.partition, waiting) => r?,
            // Shutting down: answer with what is there now.
            _ = state.shutdown.cancelled() => broker.read(&p.tenant, &p.topic, p.partition, request).await?,
        }
    };
    let encoding = q.encoding.unwrap_or_default();
    Ok(Json(ReadResponse::new(result, encoding)?).into_response())
}

/// A partition's offsets.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/topics/{topic}/partitions/{partition}",
    tag = "records",
    params(PartitionPath),
    responses(
        (status = 200, description = "The partition's offset range", body = PartitionInfo),
        (status = 404, description = "Unknown tenant, topic or partition", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.partition", skip_all, fields(tenant = %p.tenant, topic = %p.topic, partition = p.partition))]
pub async fn partition(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<PartitionPath>,
) -> HttpResult<Json<PartitionInfo>> {
    let (start_offset, end_offset) = state
        .broker
        .check_tail(&p.tenant, &p.topic, p.partition)
        .await?;
    Ok(Json(PartitionInfo {
        partition: p.partition,
        start_offset,
        end_offset,
    }))
}
