//! The errors of tiered storage: [`FormatError`] for bytes that are not a
//! valid segment object (pure decoding, see [`crate::segment`]) and
//! [`TierError`] for everything that reads or writes objects.

use std::fmt;

use strata_log::batch::BatchError;

use crate::segment::{FORMAT_VERSION, MAX_NAME_LEN};

/// A part of a segment object, to say where a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The whole object (its size).
    Object,
    /// The header.
    Header,
    /// The record batches area (while building).
    Batches,
    /// One index block; `position` is its byte position from the start of
    /// the batches area.
    Block { first_offset: u64, position: u64 },
    /// The index.
    Index,
    /// The 32-byte trailer.
    Trailer,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Object => f.write_str("segment object"),
            Region::Header => f.write_str("segment header"),
            Region::Batches => f.write_str("record batches"),
            Region::Block {
                first_offset,
                position,
            } => write!(
                f,
                "block at batches byte {position} (first offset {first_offset})"
            ),
            Region::Index => f.write_str("segment index"),
            Region::Trailer => f.write_str("segment trailer"),
        }
    }
}

/// Why bytes are not a valid segment object (or part of one), or why a
/// segment could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The header or trailer magic is wrong: not a segment object.
    #[error("bad {region} magic {found:02x?}")]
    BadMagic { region: Region, found: [u8; 8] },
    /// A format version this build cannot read.
    #[error("unsupported segment format version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    /// A stored CRC-32C does not match the bytes it covers.
    #[error("{region} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        region: Region,
        stored: u32,
        computed: u32,
    },
    /// The bytes end before the structure they must hold.
    #[error("{region} truncated: needs {needed} bytes, only {available} available")]
    Truncated {
        region: Region,
        needed: u64,
        available: u64,
    },
    /// A region is longer than its lengths say.
    #[error("{region} length mismatch: expected {expected} bytes, found {actual}")]
    LengthMismatch {
        region: Region,
        expected: u64,
        actual: u64,
    },
    /// A name in the header is not UTF-8.
    #[error("segment header {field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    /// A name too long for the header's u16 length (when encoding).
    #[error("{field} is {len} bytes long, more than the format's limit of {MAX_NAME_LEN}")]
    NameTooLong { field: &'static str, len: usize },
    /// A record batch is malformed or fails its own CRC.
    #[error("invalid record batch at byte {position} of {region}: {source}")]
    InvalidBatch {
        region: Region,
        position: u64,
        #[source]
        source: BatchError,
    },
    /// Batch offsets are not contiguous (or do not start where they must).
    #[error("batch at byte {position} of {region} starts at offset {found}, expected {expected}")]
    OffsetGap {
        region: Region,
        position: u64,
        expected: u64,
        found: u64,
    },
    /// Fields that contradict each other (offsets, counts, positions).
    #[error("inconsistent {region}: {detail}")]
    Inconsistent { region: Region, detail: String },
}

impl FormatError {
    pub(crate) fn inconsistent(region: Region, detail: impl Into<String>) -> FormatError {
        FormatError::Inconsistent {
            region,
            detail: detail.into(),
        }
    }

    /// Checks the CRC-32C of `bytes` against `stored`.
    pub(crate) fn check_crc(region: Region, bytes: &[u8], stored: u32) -> Result<(), FormatError> {
        let computed = crc32c::crc32c(bytes);
        if computed == stored {
            Ok(())
        } else {
            Err(FormatError::ChecksumMismatch {
                region,
                stored,
                computed,
            })
        }
    }

    /// Checks that a region is exactly `expected` bytes: shorter is
    /// [`FormatError::Truncated`], longer [`FormatError::LengthMismatch`].
    pub(crate) fn check_len(region: Region, expected: u64, actual: u64) -> Result<(), FormatError> {
        match actual.cmp(&expected) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(FormatError::Truncated {
                region,
                needed: expected,
                available: actual,
            }),
            std::cmp::Ordering::Greater => Err(FormatError::LengthMismatch {
                region,
                expected,
                actual,
            }),
        }
    }
}

/// An error of tiered storage.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// A call to the object store failed (after the store layer's own
    /// retries); see [`TierError::retryable`].
    #[error("object store: {0}")]
    Store(#[source] object_store::Error),
    /// The object does not exist.
    #[error("object {key} not found")]
    NotFound { key: String },
    /// Bytes given to be made into an object are not valid (building a
    /// segment object from the log's batches).
    #[error("cannot build segment object: {0}")]
    Format(#[from] FormatError),
    /// An object's bytes are not what was written: a checksum mismatch, a
    /// truncated object, fields that contradict each other. Never served.
    #[error("corrupt segment object {key}: {detail}")]
    Corrupt { key: String, detail: String },
    /// A read asked for a block past the object's last.
    #[error("segment object {key} has {blocks} blocks, no block {block}")]
    NoSuchBlock {
        key: String,
        block: usize,
        blocks: usize,
    },
    /// A read asked for an offset the object does not hold.
    #[error("offset {offset} is outside segment object {key} (offsets [{start}, {end}))")]
    OffsetOutOfRange {
        key: String,
        offset: u64,
        start: u64,
        end: u64,
    },
}

impl From<object_store::Error> for TierError {
    /// A store's "not found" becomes [`TierError::NotFound`].
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => TierError::NotFound { key: path },
            e => TierError::Store(e),
        }
    }
}

impl TierError {
    /// A corrupt object at `key`, `detail` saying what is wrong and where.
    pub fn corrupt(key: impl fmt::Display, detail: impl fmt::Display) -> TierError {
        TierError::Corrupt {
            key: key.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Whether trying again may succeed: timeouts, 5xx and throttling
    /// responses, connection failures (as classified by
    /// [`crate::resilient::is_transient`]). Not found, permission and
    /// authentication failures, format errors and corruption are permanent.
    pub fn retryable(&self) -> bool {
        match self {
            TierError::Store(e) => crate::resilient::is_transient(e),
            TierError::NotFound { .. }
            | TierError::Format(_)
            | TierError::Corrupt { .. }
            | TierError::NoSuchBlock { .. }
            | TierError::OffsetOutOfRange { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: Box<dyn std::error::Error + Send + Sync>) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source,
        }
    }

    #[test]
    fn not_found_is_its_own_variant_and_permanent() {
        let e = TierError::from(object_store::Error::NotFound {
            path: "a/b.seg".into(),
            source: "missing".into(),
        });
        assert!(matches!(&e, TierError::NotFound { key } if key == "a/b.seg"));
        assert!(!e.retryable());
    }

    #[test]
    fn permission_and_authentication_are_permanent() {
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "403".into(),
        };
        let unauthenticated = object_store::Error::Unauthenticated {
            path: "k".into(),
            source: "401".into(),
        };
        assert!(!TierError::from(denied).retryable());
        assert!(!TierError::from(unauthenticated).retryable());
    }

    #[test]
    fn timeouts_and_connection_failures_are_retryable() {
        use std::io::{Error, ErrorKind};
        for kind in [
            ErrorKind::TimedOut,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionRefused,
        ] {
            let e = TierError::from(generic(Box::new(Error::new(kind, "boom"))));
            assert!(e.retryable(), "{kind:?}");
        }
        let http = object_store::client::HttpError::new(
            object_store::client::HttpErrorKind::Connect,
            Error::other("refused"),
        );
        assert!(TierError::from(generic(Box::new(http))).retryable());
        let other = TierError::from(generic(Box::new(Error::new(ErrorKind::InvalidData, "x"))));
        assert!(!other.retryable());
    }

    #[test]
    fn format_and_corruption_are_permanent() {
        let f = FormatError::UnsupportedVersion(9);
        assert!(!TierError::from(f.clone()).retryable());
        let c = TierError::corrupt("k", &f);
        assert!(!c.retryable());
        assert_eq!(
            c.to_string(),
            "corrupt segment object k: unsupported segment format version 9 (this build reads version 1)"
        );
    }

    #[test]
    fn helpers_report_precisely() {
        assert_eq!(
            FormatError::check_len(Region::Index, 36, 20),
            Err(FormatError::Truncated {
                region: Region::Index,
                needed: 36,
                available: 20
            })
        );
        assert_eq!(
            FormatError::check_len(Region::Index, 36, 40),
            Err(FormatError::LengthMismatch {
                region: Region::Index,
                expected: 36,
                actual: 40
            })
        );
        let e = FormatError::check_crc(Region::Header, b"abc", 0).unwrap_err();
        assert!(matches!(
            e,
            FormatError::ChecksumMismatch {
                region: Region::Header,
                stored: 0,
                ..
            }
        ));
        let block = Region::Block {
            first_offset: 7,
            position: 128,
        };
        assert_eq!(
            block.to_string(),
            "block at batches byte 128 (first offset 7)"
        );
    }
}
