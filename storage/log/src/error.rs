//! The error every public call of the log returns.
//!
//! Callers match on the variant: `OffsetOutOfRange` becomes Kafka's
//! OFFSET_OUT_OF_RANGE and HTTP 416, `DiskFull` a retryable back-pressure
//! error, `Corrupt` an alarm with the exact place on disk, and so on.

use std::path::PathBuf;

use crate::batch::BatchError;

/// Where on disk something was found wrong: a journal file and a byte position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub position: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.file.display(), self.position)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A batch offered for append is not a valid Kafka RecordBatch v2.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A batch is larger than `max_batch_bytes`.
    #[error("record batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("partition {0:?} does not exist")]
    UnknownPartition(String),
    #[error("partition {0:?} already exists")]
    PartitionExists(String),
    #[error("invalid partition key {0:?}: {1}")]
    InvalidPartitionKey(String, &'static str),
    /// The requested offset is outside `[start, end]` of what this log holds.
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    /// A conditional append whose expected end offset did not match.
    #[error("expected end offset {expected}, but the partition ends at {actual}")]
    OffsetMismatch { expected: u64, actual: u64 },
    /// A replicated append whose first offset is not the partition's end offset.
    #[error("replicated batch starts at offset {got}, the partition ends at {expected}")]
    NonContiguous { expected: u64, got: u64 },
    /// A leader epoch older than the newest epoch the partition has seen.
    #[error("leader epoch {got} is older than the partition's epoch {current}")]
    StaleEpoch { got: i32, current: i32 },
    /// An operation that is not allowed in the partition's current state.
    #[error("{0}")]
    InvalidOperation(String),
    /// A leader append to a partition this log holds as a follower replica.
    #[error("partition {0:?} is a follower replica here: it takes no leader appends")]
    NotLeader(String),
    /// The disk is full. Nothing of the failed commit was kept; retry once space is freed.
    #[error("disk full while writing the journal; retry once space is freed")]
    DiskFull,
    /// Bytes on disk fail their checksum or structure: never served to a reader.
    #[error("corrupt journal data in {location}: {reason}")]
    Corrupt { location: Location, reason: String },
    /// The log is shut down, or stopped after a failed fsync (whose outcome is unknowable).
    #[error("the log is closed: {0}")]
    Closed(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    /// True for errors a caller may retry as they are (after back-off).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LogError::DiskFull | LogError::NotLeader(_))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return LogError::DiskFull;
        }
        LogError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> Self {
        LogError::Corrupt {
            location: Location {
                file: file.into(),
                position,
            },
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
