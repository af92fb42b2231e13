//! Deciding whether bytes are a trustworthy batch.
//!
//! Two levels, because they run at different moments:
//!
//! * [`verify_batch`] runs once, when a batch arrives from a producer: it
//!   checks everything Kafka's broker checks about the format (header, CRC,
//!   counts, every record's structure, after decompression), so that whatever
//!   Strata stores is something every consumer can read.
//! * [`verify_batch_crc`] runs on every read from disk: the header, the length
//!   and the CRC catch torn writes and bit rot without walking the records.
//!
//! [`batches`] splits a buffer of concatenated batches (a segment, a fetch
//! response, a produce request's record set) at header level.

use std::borrow::Cow;
use std::iter::FusedIterator;
use std::ops::Range;

use super::BatchError;
use super::compression::Compression;
use super::header::{ATTRIBUTES, BatchHeader, HEADER_LEN};
use super::record::walk_records;

/// Fully verifies one whole batch: `buf` must be exactly the batch.
///
/// Checks the header, that `buf` is exactly `12 + batch_length` bytes, the
/// CRC-32C, that the record count is non-negative and fits the last offset
/// delta, and that the records section (decompressed, at most
/// `max_uncompressed` bytes, else [`BatchError::TooLarge`]) holds exactly
/// `records_count` well-formed records with strictly increasing offset deltas
/// no greater than the last offset delta.
///
/// Uncompressed batches are checked in place, with no allocation.
pub fn verify_batch(buf: &[u8], max_uncompressed: usize) -> Result<BatchHeader, BatchError> {
    let header = check_envelope(buf)?;
    let payload = records_payload(buf, &header, max_uncompressed)?;
    walk_records(&payload, &header, &mut ())?;
    Ok(header)
}

/// The cheap check for bytes read back from disk: header, exact length and
/// CRC-32C only; the records are not walked or decompressed.
pub fn verify_batch_crc(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    if buf.len() > total {
        return Err(BatchError::LengthMismatch {
            declared: total,
            actual: buf.len(),
        });
    }
    let computed = crc32c::crc32c(buf.get(ATTRIBUTES..).unwrap_or_default());
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Header, length and CRC, plus the header-level invariants that need no
/// look at the records: a known codec, a non-negative record count, and a
/// last offset delta that can hold that many records.
///
/// A non-negative last offset delta is required even for an empty batch
/// (the log cleaner keeps empty batches only to carry their last offset),
/// since a negative one would make the log's next offset go backwards.
pub(super) fn check_envelope(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = verify_batch_crc(buf)?;
    header.compression()?;
    if header.records_count < 0 {
        return Err(BatchError::BadRecordCount(header.records_count));
    }
    // records_count - 1 cannot overflow: records_count >= 0 here.
    let needs = header.records_count.saturating_sub(1);
    if header.last_offset_delta < 0 || header.last_offset_delta < needs {
        return Err(BatchError::BadLastOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
        });
    }
    Ok(header)
}

/// The records section of a checked batch, decompressed if need be and
/// never longer than `max_uncompressed`.
///
/// An empty section is taken as empty whatever the codec: Kafka writes
/// record-less batches (after compaction) with no records section at all.
pub(super) fn records_payload<'a>(
    buf: &'a [u8],
    header: &BatchHeader,
    max_uncompressed: usize,
) -> Result<Cow<'a, [u8]>, BatchError> {
    let section = buf.get(HEADER_LEN..).unwrap_or_default();
    if section.is_empty() {
        return Ok(Cow::Borrowed(section));
    }
    match header.compression()? {
        Compression::None if section.len() > max_uncompressed => Err(BatchError::TooLarge {
            limit: max_uncompressed,
        }),
        Compression::None => Ok(Cow::Borrowed(section)),
        codec => codec.decompress(section, max_uncompressed).map(Cow::Owned),
    }
}

/// Iterates over the whole batches concatenated in `buf`.
///
/// Each item is a batch header with the batch's byte range in `buf`. Only
/// headers are parsed (no CRC): pair with [`verify_batch_crc`] or
/// [`verify_batch`] on each range as needed. A truncated or garbled batch
/// yields one error and ends the iteration; every successful step consumes
/// at least a header's worth of bytes, so iteration always terminates.
pub fn batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Iterator returned by [`batches`].
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl BatchIter<'_> {
    /// Bytes of `buf` covered by the batches yielded so far: after an error,
    /// the length of the well-framed prefix (where a torn log tail begins).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        let step = BatchHeader::parse(rest).and_then(|header| {
            let total = header.total_len();
            if total > rest.len() {
                return Err(BatchError::Truncated {
                    needed: total,
                    available: rest.len(),
                });
            }
            Ok((header, total))
        });
        match step {
            Ok((header, total)) => {
                let start = self.pos;
                self.pos = start.saturating_add(total);
                Some(Ok((header, start..self.pos)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for BatchIter<'_> {}
