//! Kafka `RecordBatch` v2 (magic 2): the on-the-wire and on-disk unit of the log.
//!
//! Strata stores exactly the bytes a Kafka producer sent (after the broker has
//! assigned the base offset and leader epoch), so that a fetch can hand them
//! back to a consumer unchanged. This module is therefore byte-for-byte
//! Kafka's format, not a Strata-specific one:
//!
//! * [`header`]: the fixed 61-byte batch header, parsed into [`BatchHeader`],
//!   and in-place rewrites of the two fields the broker owns
//!   ([`set_base_offset`], [`set_partition_leader_epoch`]); both lie outside
//!   the CRC, which is why the broker can change them without re-checksumming.
//! * [`verify`]: the checks a broker must run before trusting a batch
//!   ([`verify_batch`] on produce, the cheaper [`verify_batch_crc`] on every
//!   read from disk) and [`batches`] to split a buffer of concatenated batches.
//! * [`record`]: the records inside a batch and [`decode_records`].
//! * [`compression`]: the codecs Kafka defines for the records section.
//! * [`builder`]: [`BatchBuilder`], to write batches (tests, internal topics).
//! * [`varint`]: Kafka's zig-zag variable-length integers.
//!
//! Every function here treats its input as untrusted: lengths and counts read
//! from the bytes are checked before use, nothing indexes out of bounds, and
//! decompression is bounded so that a small batch cannot expand into an
//! unbounded allocation.

pub mod builder;
pub mod compression;
pub mod header;
pub mod record;
pub mod varint;
pub mod verify;

#[cfg(test)]
mod tests;

pub use builder::BatchBuilder;
pub use compression::Compression;
pub use header::{
    BatchHeader, HEADER_LEN, MAGIC_V2, TimestampType, set_base_offset, set_partition_leader_epoch,
};
pub use record::{Record, RecordHeader, decode_records};
pub use verify::{BatchIter, batches, verify_batch, verify_batch_crc};

/// Why a batch (or part of one) was rejected.
///
/// The variants are precise enough to be logged and returned to a client as
/// the reason a produce request was refused (Kafka's `CORRUPT_MESSAGE` /
/// `INVALID_RECORD` family).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The buffer ends before the structure it must hold.
    #[error("record batch truncated: needed {needed} bytes, only {available} available")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The magic byte is not 2; older message formats are not accepted.
    #[error("unsupported record batch magic {0} (only magic 2 is supported)")]
    BadMagic(i8),
    /// The batch length field is smaller than the fixed header it must cover.
    #[error("invalid record batch length {0} (must be at least 49)")]
    BadLength(i32),
    /// The buffer holds more bytes than the batch length field declares.
    #[error("record batch length field declares {declared} bytes but the buffer holds {actual}")]
    LengthMismatch {
        /// Total batch size implied by the header (12 + batch length).
        declared: usize,
        /// Size of the buffer given.
        actual: usize,
    },
    /// The stored CRC-32C does not match the bytes it covers.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over bytes 21.. of the batch.
        computed: u32,
    },
    /// The record count in the header is negative.
    #[error("invalid record count {0} in record batch header")]
    BadRecordCount(i32),
    /// The header's last offset delta cannot describe the batch's records
    /// (negative, or fewer offsets than records).
    #[error(
        "invalid last offset delta {last_offset_delta} for a record batch of {records_count} records"
    )]
    BadLastOffsetDelta {
        /// The header's last offset delta.
        last_offset_delta: i32,
        /// The header's record count.
        records_count: i32,
    },
    /// The records section does not hold the number of records the header declares.
    #[error("record batch header declares {header} records but the batch holds {actual}")]
    RecordCountMismatch {
        /// Count from the header.
        header: i32,
        /// Records actually found.
        actual: usize,
    },
    /// A record's offset delta is negative, not strictly increasing, or past
    /// the header's last offset delta.
    #[error(
        "record offset delta {delta} is out of order: deltas must increase strictly and lie within 0..={last_offset_delta}"
    )]
    BadOffsetDelta {
        /// The offending record's offset delta.
        delta: i32,
        /// The previous record's offset delta, if any.
        previous: Option<i32>,
        /// The header's last offset delta.
        last_offset_delta: i32,
    },
    /// A record inside the batch is structurally invalid; the text says how.
    #[error("malformed record: {0}")]
    MalformedRecord(&'static str),
    /// Compression codec bits name a codec Kafka does not define (5, 6 or 7).
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),
    /// The records section could not be decompressed.
    #[error("failed to decompress records: {0}")]
    Decompress(String),
    /// The records section could not be compressed.
    #[error("failed to compress records: {0}")]
    Compress(String),
    /// Data would exceed a size limit (decompressed size bound, or Kafka's
    /// i32 length fields when building).
    #[error("record batch too large: exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A batch must hold at least one record to be built.
    #[error("cannot build a record batch with no records")]
    EmptyBatch,
}
