//! Log errors as API errors: the one place that decides how a storage
//! failure looks to clients.

use strata_api::{ApiError, ErrorCode};
use strata_log::LogError;

/// Maps a log error to the code a client can act on.
pub fn from_log(e: LogError) -> ApiError {
    match e {
        LogError::DiskFull => ApiError::new(ErrorCode::Unavailable, e.to_string()),
        LogError::Closed(_) => ApiError::new(ErrorCode::Unavailable, e.to_string()),
        LogError::Corrupt { .. } => {
            // Never served, but someone has to look at the disk: say so loudly.
            tracing::error!(error = %e, "corrupt data in the write-ahead log");
            ApiError::new(ErrorCode::Internal, e.to_string())
        }
        LogError::InvalidBatch(_) => ApiError::new(ErrorCode::InvalidRecord, e.to_string()),
        LogError::BatchTooLarge { size, limit } => {
            ApiError::new(ErrorCode::RequestTooLarge, e.to_string())
                .with_details(serde_json::json!({ "batch_bytes": size, "max_batch_bytes": limit }))
        }
        LogError::OffsetOutOfRange { offset, start, end } => out_of_range(offset, start, end),
        LogError::OffsetMismatch { expected, actual } => {
            ApiError::new(ErrorCode::OffsetMismatch, e.to_string()).with_details(
                serde_json::json!({ "expected_offset": expected, "end_offset": actual }),
            )
        }
        LogError::UnknownPartition(_) => ApiError::new(ErrorCode::PartitionNotFound, e.to_string()),
        LogError::NotLeader(_) => ApiError::new(ErrorCode::NotLeader, e.to_string()),
        _ => {
            tracing::warn!(error = %e, "unexpected write-ahead log error");
            ApiError::new(ErrorCode::Internal, e.to_string())
        }
    }
}

/// `offset_out_of_range` with the valid range in the details.
pub(crate) fn out_of_range(offset: u64, start: u64, end: u64) -> ApiError {
    ApiError::new(
        ErrorCode::OffsetOutOfRange,
        format!("offset {offset} is out of range: the partition holds offsets [{start}, {end})"),
    )
    .with_details(serde_json::json!({ "offset": offset, "start_offset": start, "end_offset": end }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(from_log(LogError::DiskFull).code, ErrorCode::Unavailable);
        assert!(from_log(LogError::DiskFull).code.is_retryable());
        assert_eq!(
            from_log(LogError::Closed("x".into())).code,
            ErrorCode::Unavailable
        );
        assert_eq!(
            from_log(LogError::BatchTooLarge { size: 2, limit: 1 }).code,
            ErrorCode::RequestTooLarge
        );
        assert_eq!(
            from_log(LogError::UnknownPartition("p".into())).code,
            ErrorCode::PartitionNotFound
        );
        assert_eq!(
            from_log(LogError::InvalidOperation("x".into())).code,
            ErrorCode::Internal
        );
        let e = from_log(LogError::OffsetMismatch {
            expected: 3,
            actual: 5,
        });
        assert_eq!(e.code, ErrorCode::OffsetMismatch);
        assert_eq!(
            e.details,
            Some(serde_json::json!({ "expected_offset": 3, "end_offset": 5 }))
        );
        let e = from_log(LogError::OffsetOutOfRange {
            offset: 9,
            start: 1,
            end: 4,
        });
        assert_eq!(e.code, ErrorCode::OffsetOutOfRange);
        assert_eq!(e.details.unwrap()["end_offset"], 4);
    }
}
