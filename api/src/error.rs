//! One error model for every protocol.
//!
//! A failure is an [`ApiError`]: a stable [`ErrorCode`] (what clients match
//! on), a message for people, and optional structured details (the valid
//! offset range, the actual end offset, ...). Each code has exactly one HTTP
//! status, one gRPC code and one Kafka error code, so the same failure is
//! reported consistently through HTTP, gRPC and the Kafka protocol.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request itself is malformed: bad JSON, wrong types, missing fields.
    BadRequest,
    /// A tenant, topic or group name is not allowed.
    InvalidName,
    /// A configuration value is out of range or unknown.
    InvalidConfig,
    /// A partition count or number is not allowed.
    InvalidPartitions,
    /// A replication factor the cluster cannot give (more replicas than
    /// live brokers, or below 1).
    InvalidReplicationFactor,
    /// A record or batch is malformed (bad encoding, bad checksum).
    InvalidRecord,
    TenantNotFound,
    TopicNotFound,
    PartitionNotFound,
    GroupNotFound,
    TopicAlreadyExists,
    /// A conditional append's expected offset is not the partition's end.
    OffsetMismatch,
    /// One record is larger than the topic allows.
    RecordTooLarge,
    /// The request as a whole is larger than the server allows.
    RequestTooLarge,
    /// An offset outside the partition's valid range.
    OffsetOutOfRange,
    /// The request's content type is not supported.
    UnsupportedMediaType,
    /// The server cannot take writes right now (disk full, shutting down); retry later.
    Unavailable,
    /// This node does not lead the partition (any more): ask again, or ask
    /// the leader the error names. Retryable.
    NotLeader,
    /// Too few replicas are in sync to make a write as durable as asked
    /// (`min_insync_replicas`, or no majority); nothing was written. Retryable.
    NotEnoughReplicas,
    /// The write is on the leader, but a majority of replicas did not confirm
    /// it in time; it may still become visible. Retryable (idempotent
    /// producers retry without duplicates).
    ReplicationTimeout,
    /// A bug or an unexpected condition on the server.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidName,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidRecord,
        ErrorCode::TenantNotFound,
        ErrorCode::TopicNotFound,
        ErrorCode::PartitionNotFound,
        ErrorCode::GroupNotFound,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::OffsetMismatch,
        ErrorCode::RecordTooLarge,
        ErrorCode::RequestTooLarge,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unavailable,
        ErrorCode::NotLeader,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::ReplicationTimeout,
        ErrorCode::Internal,
    ];

    /// The snake_case name used in JSON bodies and gRPC error details.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::InvalidPartitions => "invalid_partitions",
            ErrorCode::InvalidReplicationFactor => "invalid_replication_factor",
            ErrorCode::InvalidRecord => "invalid_record",
            ErrorCode::TenantNotFound => "tenant_not_found",
            ErrorCode::TopicNotFound => "topic_not_found",
            ErrorCode::PartitionNotFound => "partition_not_found",
            ErrorCode::GroupNotFound => "group_not_found",
            ErrorCode::TopicAlreadyExists => "topic_already_exists",
            ErrorCode::OffsetMismatch => "offset_mismatch",
            ErrorCode::RecordTooLarge => "record_too_large",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::OffsetOutOfRange => "offset_out_of_range",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::NotEnoughReplicas => "not_enough_replicas",
            ErrorCode::ReplicationTimeout => "replication_timeout",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidName
            | ErrorCode::InvalidConfig
            | ErrorCode::InvalidPartitions
            | ErrorCode::InvalidReplicationFactor
            | ErrorCode::InvalidRecord => 400,
            ErrorCode::TenantNotFound
            | ErrorCode::TopicNotFound
            | ErrorCode::PartitionNotFound
            | ErrorCode::GroupNotFound => 404,
            ErrorCode::TopicAlreadyExists => 409,
            ErrorCode::OffsetMismatch => 412,
            ErrorCode::RecordTooLarge | ErrorCode::RequestTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::OffsetOutOfRange => 416,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable
            | ErrorCode::NotLeader
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::ReplicationTimeout => 503,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidName
            | ErrorCode::InvalidConfig
            | ErrorCode::InvalidPartitions
            | ErrorCode::InvalidReplicationFactor
            | ErrorCode::InvalidRecord
            | ErrorCode::UnsupportedMediaType => Code::InvalidArgument,
            ErrorCode::TenantNotFound
            | ErrorCode::TopicNotFound
            | ErrorCode::PartitionNotFound
            | ErrorCode::GroupNotFound => Code::NotFound,
            ErrorCode::TopicAlreadyExists => Code::AlreadyExists,
            ErrorCode::OffsetMismatch => Code::FailedPrecondition,
            ErrorCode::RecordTooLarge | ErrorCode::RequestTooLarge => Code::ResourceExhausted,
            ErrorCode::OffsetOutOfRange => Code::OutOfRange,
            ErrorCode::Unavailable
            | ErrorCode::NotLeader
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::ReplicationTimeout => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        }
    }

    /// Kafka's error code for the same failure (Kafka's `Errors` enum).
    pub fn kafka_code(self) -> i16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnsupportedMediaType => 42, // INVALID_REQUEST
            ErrorCode::InvalidName => 17,   // INVALID_TOPIC_EXCEPTION
            ErrorCode::InvalidConfig => 40, // INVALID_CONFIG
            ErrorCode::InvalidPartitions => 37, // INVALID_PARTITIONS
            ErrorCode::InvalidReplicationFactor => 38, // INVALID_REPLICATION_FACTOR
            ErrorCode::InvalidRecord => 87, // INVALID_RECORD
            ErrorCode::TenantNotFound | ErrorCode::TopicNotFound | ErrorCode::PartitionNotFound => {
                3
            } // UNKNOWN_TOPIC_OR_PARTITION
            ErrorCode::GroupNotFound => 69, // GROUP_ID_NOT_FOUND
            ErrorCode::TopicAlreadyExists => 36, // TOPIC_ALREADY_EXISTS
            ErrorCode::OffsetMismatch => 42, // INVALID_REQUEST: Kafka has no conditional append
            ErrorCode::RecordTooLarge => 10, // MESSAGE_TOO_LARGE
            ErrorCode::RequestTooLarge => 18, // RECORD_LIST_TOO_LARGE
            ErrorCode::OffsetOutOfRange => 1, // OFFSET_OUT_OF_RANGE
            ErrorCode::Unavailable => 56,   // KAFKA_STORAGE_ERROR (retriable)
            ErrorCode::NotLeader => 6,      // NOT_LEADER_OR_FOLLOWER
            ErrorCode::NotEnoughReplicas => 19, // NOT_ENOUGH_REPLICAS
            ErrorCode::ReplicationTimeout => 20, // NOT_ENOUGH_REPLICAS_AFTER_APPEND
            ErrorCode::Internal => -1,      // UNKNOWN_SERVER_ERROR
        }
    }

    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable
                | ErrorCode::NotLeader
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::ReplicationTimeout
        )
    }

    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure as every front end reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Structured facts about the failure, e.g. `{"start_offset":0,"end_offset":12}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The HTTP body: `{"error":{"code","message","details"?}}`.
    pub fn to_json_body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self })
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let info = crate::proto::ErrorInfo {
            code: e.code.as_str().to_string(),
            message: e.message.clone(),
        };
        let message = match &e.details {
            Some(d) => format!("{} ({d})", e.message),
            None => e.message.clone(),
        };
        tonic::Status::with_details(
            e.code.grpc_code(),
            message,
            prost::Message::encode_to_vec(&info).into(),
        )
    }
}

impl ApiError {
    /// Recovers the Strata error from a gRPC status made by `From<ApiError>`.
    pub fn from_status(status: &tonic::Status) -> ApiError {
        let decoded: Option<crate::proto::ErrorInfo> =
            prost::Message::decode(status.details()).ok();
        match decoded.and_then(|i| ErrorCode::from_name(&i.code).map(|c| (c, i.message))) {
            Some((code, message)) => ApiError::new(code, message),
            None => ApiError::new(ErrorCode::Internal, status.message().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_that_round_trips() {
        let mut names = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(names.insert(code.as_str()));
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::json!(code.as_str()));
        }
    }

    #[test]
    fn bad_input_is_never_a_server_error() {
        for code in ErrorCode::ALL {
            // The server's own state (a bug, a full disk, a leader change,
            // too few replicas), never the request's: 5xx, and all but
            // `internal` retryable.
            if code.is_retryable() {
                assert_eq!(code.http_status(), 503, "{code}");
            } else if code != ErrorCode::Internal {
                assert!(
                    code.http_status() < 500,
                    "{code} maps to {}",
                    code.http_status()
                );
            }
        }
    }

    #[test]
    fn grpc_status_carries_the_code() {
        let e = ApiError::new(ErrorCode::OffsetOutOfRange, "offset 9 is past the end 3");
        let status: tonic::Status = e.clone().into();
        assert_eq!(status.code(), tonic::Code::OutOfRange);
        assert_eq!(ApiError::from_status(&status), e);
    }
}
