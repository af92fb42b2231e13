//! The records inside a v2 batch, as Kafka's `DefaultRecord` defines them:
//!
//! ```text
//! length          varint   bytes after this field
//! attributes      i8       unused, written as 0
//! timestampDelta  varlong  relative to the batch base timestamp
//! offsetDelta     varint   relative to the batch base offset
//! keyLength       varint   -1 = null key
//! key             bytes
//! valueLength     varint   -1 = null value
//! value           bytes
//! headerCount     varint
//!   headerKeyLength   varint (>= 0)
//!   headerKey         bytes (UTF-8 by convention; not enforced, as in Java)
//!   headerValueLength varint   -1 = null value
//!   headerValue       bytes
//! ```
//!
//! One walker ([`walk_records`]) does all the structural checks; verification
//! runs it with a sink that keeps nothing (so it allocates nothing per
//! record), decoding runs it with a sink that builds [`Record`]s.

use std::ops::Range;

use bytes::Bytes;

use super::BatchError;
use super::header::{BatchHeader, TimestampType};
use super::varint::{decode_varint, decode_varlong};
use super::verify::{check_envelope, records_payload};

/// One decoded record, with absolute offset and timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset: batch base offset + offset delta.
    pub offset: i64,
    /// Absolute timestamp: base timestamp + delta, or the batch max
    /// timestamp for log-append-time batches.
    pub timestamp: i64,
    /// Key, `None` when null (length -1).
    pub key: Option<Bytes>,
    /// Value, `None` when null (a tombstone for compacted topics).
    pub value: Option<Bytes>,
    /// Headers in wire order; duplicate keys are kept.
    pub headers: Vec<RecordHeader>,
}

/// One record header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header key; Kafka clients treat it as UTF-8 but the format does not check.
    pub key: Bytes,
    /// Header value, `None` when null.
    pub value: Option<Bytes>,
}

/// Decodes every record of one whole batch.
///
/// The batch is fully verified first (the same checks as
/// [`super::verify_batch`], sharing the single decompression), so a batch
/// that decodes is one that verifies. Offsets and timestamps are made
/// absolute; for log-append-time batches every record's timestamp is the
/// batch max timestamp, as Kafka defines. Control batches decode like any
/// other; it is up to the caller to interpret them.
///
/// Keys, values and headers are slices of one buffer holding the
/// (decompressed) records section, so decoding allocates once for the data.
pub fn decode_records(batch: &[u8], max_uncompressed: usize) -> Result<Vec<Record>, BatchError> {
    let header = check_envelope(batch)?;
    let data = match records_payload(batch, &header, max_uncompressed)? {
        std::borrow::Cow::Borrowed(section) => Bytes::copy_from_slice(section),
        std::borrow::Cow::Owned(decompressed) => Bytes::from(decompressed),
    };
    let mut sink = DecodeSink {
        data: &data,
        header: &header,
        headers: Vec::new(),
        records: Vec::new(),
    };
    walk_records(&data, &header, &mut sink)?;
    Ok(sink.records)
}

/// Position of one record's fields within the records section.
pub(super) struct RecordView {
    pub(super) timestamp_delta: i64,
    pub(super) offset_delta: i32,
    pub(super) key: Option<Range<usize>>,
    pub(super) value: Option<Range<usize>>,
}

/// Receives what [`walk_records`] finds: a record's headers first, then the record.
pub(super) trait RecordSink {
    fn header(&mut self, key: Range<usize>, value: Option<Range<usize>>) -> Result<(), BatchError>;
    fn record(&mut self, view: RecordView) -> Result<(), BatchError>;
}

/// Verification keeps nothing.
impl RecordSink for () {
    fn header(&mut self, _: Range<usize>, _: Option<Range<usize>>) -> Result<(), BatchError> {
        Ok(())
    }
    fn record(&mut self, _: RecordView) -> Result<(), BatchError> {
        Ok(())
    }
}

struct DecodeSink<'a> {
    data: &'a Bytes,
    header: &'a BatchHeader,
    headers: Vec<RecordHeader>,
    records: Vec<Record>,
}

impl DecodeSink<'_> {
    /// Bytes::slice panics on a bad range; ranges come from the walker and are
    /// in bounds, but check anyway rather than trust that at a distance.
    fn slice(&self, range: Range<usize>) -> Result<Bytes, BatchError> {
        if range.start > range.end || range.end > self.data.len() {
            return Err(BatchError::MalformedRecord(
                "field outside the records section",
            ));
        }
        Ok(self.data.slice(range))
    }
}

impl RecordSink for DecodeSink<'_> {
    fn header(&mut self, key: Range<usize>, value: Option<Range<usize>>) -> Result<(), BatchError> {
        let key = self.slice(key)?;
        let value = value.map(|v| self.slice(v)).transpose()?;
        self.headers.push(RecordHeader { key, value });
        Ok(())
    }

    fn record(&mut self, view: RecordView) -> Result<(), BatchError> {
        let timestamp = match self.header.timestamp_type() {
            TimestampType::LogAppendTime => self.header.max_timestamp,
            // Kafka adds with Java long arithmetic, i.e. wrapping.
            TimestampType::CreateTime => self
                .header
                .base_timestamp
                .wrapping_add(view.timestamp_delta),
        };
        let record = Record {
            offset: self
                .header
                .base_offset
                .wrapping_add(i64::from(view.offset_delta)),
            timestamp,
            key: view.key.map(|k| self.slice(k)).transpose()?,
            value: view.value.map(|v| self.slice(v)).transpose()?,
            headers: std::mem::take(&mut self.headers),
        };
        self.records.push(record);
        Ok(())
    }
}

/// A reader confined to one record's body, so no field can spill into the
/// next record.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

const OVERRUN: BatchError = BatchError::MalformedRecord("record field overruns the record length");

impl Cursor<'_> {
    fn rest(&self) -> &[u8] {
        self.data.get(self.pos..self.end).unwrap_or_default()
    }

    fn byte(&mut self) -> Result<u8, BatchError> {
        let b = *self.rest().first().ok_or(OVERRUN)?;
        self.pos = self.pos.saturating_add(1);
        Ok(b)
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let (v, n) = decode_varint(self.rest()).map_err(|_| OVERRUN_OR_BAD_VARINT)?;
        self.pos = self.pos.saturating_add(n);
        Ok(v)
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        let (v, n) = decode_varlong(self.rest()).map_err(|_| OVERRUN_OR_BAD_VARINT)?;
        self.pos = self.pos.saturating_add(n);
        Ok(v)
    }

    /// Takes `len` bytes, returning their range in the records section.
    fn take(&mut self, len: usize) -> Result<Range<usize>, BatchError> {
        if len > self.end.saturating_sub(self.pos) {
            return Err(OVERRUN);
        }
        let range = self.pos..self.pos.saturating_add(len);
        self.pos = range.end;
        Ok(range)
    }

    /// A length-prefixed field where -1 means null and other negatives are invalid.
    fn nullable(&mut self, what: &'static str) -> Result<Option<Range<usize>>, BatchError> {
        match self.varint()? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len).map_err(|_| BatchError::MalformedRecord(what))?;
                self.take(len).map(Some)
            }
        }
    }
}

const OVERRUN_OR_BAD_VARINT: BatchError =
    BatchError::MalformedRecord("truncated or overlong varint in record");

/// Walks the (decompressed) records section `data` of the batch `header`,
/// checking that exactly `records_count` well-formed records fill it:
/// every record's length matches its fields, offset deltas are
/// non-negative, strictly increasing and at most the last offset delta,
/// and every length is either -1 (null, where allowed) or fits.
///
/// Work is bounded by `data.len()`: every record consumes at least 7 bytes
/// and every header at least 2, whatever counts the bytes claim.
pub(super) fn walk_records(
    data: &[u8],
    header: &BatchHeader,
    sink: &mut impl RecordSink,
) -> Result<(), BatchError> {
    let mut pos = 0usize;
    let mut count = 0usize;
    let mut previous: Option<i32> = None;
    while pos < data.len() {
        let rest = data.get(pos..).unwrap_or_default();
        let (length, n) = decode_varint(rest)?;
        let length = usize::try_from(length)
            .map_err(|_| BatchError::MalformedRecord("negative record length"))?;
        let body_start = pos.saturating_add(n);
        let body_end = body_start
            .checked_add(length)
            .filter(|&end| end <= data.len())
            .ok_or(BatchError::MalformedRecord(
                "record length runs past the end of the batch",
            ))?;
        let mut c = Cursor {
            data,
            pos: body_start,
            end: body_end,
        };

        let _attributes = c.byte()?;
        let timestamp_delta = c.varlong()?;
        let offset_delta = c.varint()?;
        let in_order = offset_delta >= 0
            && offset_delta <= header.last_offset_delta
            && previous.is_none_or(|p| offset_delta > p);
        if !in_order {
            return Err(BatchError::BadOffsetDelta {
                delta: offset_delta,
                previous,
                last_offset_delta: header.last_offset_delta,
            });
        }
        previous = Some(offset_delta);

        let key = c.nullable("negative key length other than -1")?;
        let value = c.nullable("negative value length other than -1")?;

        let header_count = usize::try_from(c.varint()?)
            .map_err(|_| BatchError::MalformedRecord("negative header count"))?;
        if header_count > c.rest().len() {
            return Err(BatchError::MalformedRecord(
                "header count exceeds the record's remaining bytes",
            ));
        }
        for _ in 0..header_count {
            let key_len = usize::try_from(c.varint()?)
                .map_err(|_| BatchError::MalformedRecord("negative header key length"))?;
            let key = c.take(key_len)?;
            let value = c.nullable("negative header value length other than -1")?;
            sink.header(key, value)?;
        }

        if c.pos != body_end {
            return Err(BatchError::MalformedRecord(
                "record length does not match its fields",
            ));
        }
        sink.record(RecordView {
            timestamp_delta,
            offset_delta,
            key,
            value,
        })?;
        count = count.saturating_add(1);
        pos = body_end;
    }
    if usize::try_from(header.records_count) != Ok(count) {
        return Err(BatchError::RecordCountMismatch {
            header: header.records_count,
            actual: count,
        });
    }
    Ok(())
}
