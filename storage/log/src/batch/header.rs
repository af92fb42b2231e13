//! The fixed 61-byte `RecordBatch` v2 header.
//!
//! Layout (all integers big-endian), as defined by Kafka's `DefaultRecordBatch`:
//!
//! | offset | field                  | type |
//! |-------:|------------------------|------|
//! |      0 | base offset            | i64  |
//! |      8 | batch length           | i32  |
//! |     12 | partition leader epoch | i32  |
//! |     16 | magic (= 2)            | i8   |
//! |     17 | CRC-32C                | u32  |
//! |     21 | attributes             | i16  |
//! |     23 | last offset delta      | i32  |
//! |     27 | base timestamp         | i64  |
//! |     35 | max timestamp          | i64  |
//! |     43 | producer id            | i64  |
//! |     51 | producer epoch         | i16  |
//! |     53 | base sequence          | i32  |
//! |     57 | records count          | i32  |
//! |     61 | records ...            |      |
//!
//! The batch length counts the bytes *after* the length field, so a whole
//! batch is `12 + batch_length` bytes. The CRC covers bytes `[21..end)`: it
//! deliberately excludes the base offset and the partition leader epoch so a
//! broker can assign both without recomputing it.

use super::BatchError;
use super::compression::Compression;

/// Byte offset of the base offset (i64).
pub const BASE_OFFSET: usize = 0;
/// Byte offset of the batch length (i32): the number of bytes after this field.
pub const BATCH_LENGTH: usize = 8;
/// Byte offset of the partition leader epoch (i32).
pub const PARTITION_LEADER_EPOCH: usize = 12;
/// Byte offset of the magic byte (i8).
pub const MAGIC: usize = 16;
/// Byte offset of the CRC-32C (u32) of bytes `[ATTRIBUTES..end)`.
pub const CRC: usize = 17;
/// Byte offset of the attributes (i16); also where the CRC coverage starts.
pub const ATTRIBUTES: usize = 21;
/// Byte offset of the last offset delta (i32).
pub const LAST_OFFSET_DELTA: usize = 23;
/// Byte offset of the base timestamp (i64).
pub const BASE_TIMESTAMP: usize = 27;
/// Byte offset of the max timestamp (i64).
pub const MAX_TIMESTAMP: usize = 35;
/// Byte offset of the producer id (i64).
pub const PRODUCER_ID: usize = 43;
/// Byte offset of the producer epoch (i16).
pub const PRODUCER_EPOCH: usize = 51;
/// Byte offset of the base sequence (i32).
pub const BASE_SEQUENCE: usize = 53;
/// Byte offset of the records count (i32).
pub const RECORDS_COUNT: usize = 57;
/// Size of the fixed header; the records section starts here.
pub const HEADER_LEN: usize = 61;
/// Bytes before the part counted by the batch length (base offset + length).
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal batch length: the header minus [`LOG_OVERHEAD`].
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only magic value this module accepts.
pub const MAGIC_V2: i8 = 2;

/// Attribute bits 0-2: compression codec.
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are log-append time.
pub const TIMESTAMP_TYPE_FLAG: i16 = 1 << 3;
/// Attribute bit 4: the batch is part of a transaction.
pub const TRANSACTIONAL_FLAG: i16 = 1 << 4;
/// Attribute bit 5: the batch holds control records (transaction markers).
pub const CONTROL_FLAG: i16 = 1 << 5;
/// Attribute bit 6: the base timestamp holds the log cleaner's delete horizon.
pub const DELETE_HORIZON_FLAG: i16 = 1 << 6;

/// What a batch's timestamps mean (attribute bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Set by the producer when the record was created.
    #[default]
    CreateTime,
    /// Set by the broker when the batch was appended; every record's
    /// timestamp is then the batch's max timestamp.
    LogAppendTime,
}

/// The parsed fixed header of a v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the broker).
    pub base_offset: i64,
    /// Bytes after the length field: the batch is `12 + batch_length` bytes.
    pub batch_length: i32,
    /// Leader epoch at append time (assigned by the broker).
    pub partition_leader_epoch: i32,
    /// Format version; always 2 once parsed.
    pub magic: i8,
    /// Stored CRC-32C of bytes `[21..end)`.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp that record timestamp deltas are relative to.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the log-append time).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

/// Reads `N` bytes at `at`, or reports how many were needed.
fn array<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], BatchError> {
    let end = at.saturating_add(N);
    buf.get(at..end)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(BatchError::Truncated {
            needed: end,
            available: buf.len(),
        })
}

pub(super) fn read_i16(buf: &[u8], at: usize) -> Result<i16, BatchError> {
    array(buf, at).map(i16::from_be_bytes)
}

pub(super) fn read_i32(buf: &[u8], at: usize) -> Result<i32, BatchError> {
    array(buf, at).map(i32::from_be_bytes)
}

pub(super) fn read_u32(buf: &[u8], at: usize) -> Result<u32, BatchError> {
    array(buf, at).map(u32::from_be_bytes)
}

pub(super) fn read_i64(buf: &[u8], at: usize) -> Result<i64, BatchError> {
    array(buf, at).map(i64::from_be_bytes)
}

impl BatchHeader {
    /// Parses the fixed header at the start of `buf`.
    ///
    /// Needs at least [`HEADER_LEN`] bytes and checks the magic and that the
    /// batch length covers at least the header. It does *not* need the whole
    /// batch to be present, so it can be used to learn how many bytes to read
    /// next; nor does it check the CRC (see [`super::verify_batch_crc`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let magic = i8::from_be_bytes(array(buf, MAGIC)?);
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let batch_length = read_i32(buf, BATCH_LENGTH)?;
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::BadLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: read_i64(buf, BASE_OFFSET)?,
            batch_length,
            partition_leader_epoch: read_i32(buf, PARTITION_LEADER_EPOCH)?,
            magic,
            crc: read_u32(buf, CRC)?,
            attributes: read_i16(buf, ATTRIBUTES)?,
            last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA)?,
            base_timestamp: read_i64(buf, BASE_TIMESTAMP)?,
            max_timestamp: read_i64(buf, MAX_TIMESTAMP)?,
            producer_id: read_i64(buf, PRODUCER_ID)?,
            producer_epoch: read_i16(buf, PRODUCER_EPOCH)?,
            base_sequence: read_i32(buf, BASE_SEQUENCE)?,
            records_count: read_i32(buf, RECORDS_COUNT)?,
        })
    }

    /// Size of the whole batch in bytes: `12 + batch_length`.
    ///
    /// A negative length (impossible after [`BatchHeader::parse`]) counts as 0.
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length)
            .unwrap_or(0)
            .saturating_add(LOG_OVERHEAD)
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    ///
    /// Wraps on overflow like Kafka's Java arithmetic instead of panicking.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset the next batch in the log should start at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// Codec of the records section (attribute bits 0-2).
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    /// Meaning of the timestamps (attribute bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_FLAG != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// Whether the batch holds control records (attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// Whether the log cleaner stored a delete horizon in the base timestamp
    /// (attribute bit 6).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_FLAG != 0
    }
}

/// Writes `bytes` at `at`, failing instead of panicking if `buf` is too short.
fn write_at(buf: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), BatchError> {
    let available = buf.len();
    let end = at.saturating_add(bytes.len());
    buf.get_mut(at..end)
        .ok_or(BatchError::Truncated {
            needed: end,
            available,
        })?
        .copy_from_slice(bytes);
    Ok(())
}

/// Rewrites the base offset of the batch at the start of `buf` in place.
///
/// The base offset is outside the CRC, so the batch stays valid. Fails with
/// [`BatchError::Truncated`] if `buf` is shorter than the header.
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    check_header_room(buf)?;
    write_at(buf, BASE_OFFSET, &base_offset.to_be_bytes())
}

/// Rewrites the partition leader epoch of the batch at the start of `buf` in place.
///
/// The epoch is outside the CRC, so the batch stays valid. Fails with
/// [`BatchError::Truncated`] if `buf` is shorter than the header.
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    check_header_room(buf)?;
    write_at(buf, PARTITION_LEADER_EPOCH, &epoch.to_be_bytes())
}

/// Both setters demand a whole header so that a caller who hands in the
/// wrong slice learns about it instead of silently patching a fragment.
fn check_header_room(buf: &[u8]) -> Result<(), BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: HEADER_LEN,
            available: buf.len(),
        });
    }
    Ok(())
}
