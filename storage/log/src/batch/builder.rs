//! Writing v2 batches the way Kafka's Java producer (`MemoryRecordsBuilder`) does.
//!
//! The broker mostly stores batches producers wrote, but it still has to
//! write some itself (tests, internal topics, transaction markers later), and
//! those must be indistinguishable from a Java producer's: base offset 0 and
//! leader epoch -1 (the broker assigns both on append, outside the CRC),
//! offset deltas `0..n`, base timestamp = the *first* record's timestamp,
//! max timestamp = the largest, create-time timestamps, and the records
//! section compressed as one stream.

use bytes::Bytes;

use super::BatchError;
use super::compression::Compression;
use super::header::{ATTRIBUTES, CRC, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, TRANSACTIONAL_FLAG};
use super::record::RecordHeader;
use super::varint::{
    MAX_VARINT_LEN, MAX_VARLONG_LEN, encode_varint, encode_varlong, varint_len, varlong_len,
};

/// Kafka's "no producer id / epoch / sequence".
const NO_PRODUCER: (i64, i16, i32) = (-1, -1, -1);

/// Every Kafka length is an i32.
const I32_LIMIT: BatchError = BatchError::TooLarge {
    limit: i32::MAX as usize,
};

#[derive(Clone, Debug)]
struct PendingRecord {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<RecordHeader>,
    timestamp: i64,
}

/// Builds one v2 record batch from records.
///
/// ```
/// use bytes::Bytes;
/// use strata_log::batch::{BatchBuilder, Compression, decode_records, verify_batch};
///
/// let mut builder = BatchBuilder::new(Compression::Zstd).producer(7, 0, 0);
/// builder.push(Some(Bytes::from("key")), Some(Bytes::from("value")), vec![], 1_700_000_000_000);
/// let batch: Bytes = builder.build()?;
/// assert_eq!(verify_batch(&batch, 1 << 20)?.producer_id, 7);
/// assert_eq!(decode_records(&batch, 1 << 20)?[0].value, Some(Bytes::from("value")));
/// # Ok::<(), strata_log::batch::BatchError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    records: Vec<PendingRecord>,
}

impl BatchBuilder {
    /// An empty builder for a batch compressed with `compression`, with no
    /// producer id (-1, -1, -1) and not transactional.
    pub fn new(compression: Compression) -> Self {
        let (producer_id, producer_epoch, base_sequence) = NO_PRODUCER;
        BatchBuilder {
            compression,
            producer_id,
            producer_epoch,
            base_sequence,
            transactional: false,
            records: Vec::new(),
        }
    }

    /// Sets the idempotent producer's id, epoch and first sequence number.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as part of a transaction (attribute bit 4).
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Appends a record; it gets the next offset delta. Oversized fields are
    /// reported by [`BatchBuilder::build`].
    pub fn push(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<RecordHeader>,
        timestamp_ms: i64,
    ) -> &mut Self {
        self.records.push(PendingRecord {
            key,
            value,
            headers,
            timestamp: timestamp_ms,
        });
        self
    }

    /// Number of records pushed.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Roughly the bytes of the records uncompressed: keys, values and
    /// headers plus a few bytes of lengths and deltas each.
    fn payload_estimate(&self) -> usize {
        let field = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        self.records
            .iter()
            .map(|r| {
                let headers: usize = r
                    .headers
                    .iter()
                    .map(|h| h.key.len() + field(&h.value) + 2 * MAX_VARINT_LEN)
                    .sum();
                field(&r.key) + field(&r.value) + headers + 4 * MAX_VARINT_LEN + MAX_VARLONG_LEN
            })
            .sum()
    }

    /// Encodes the batch: base offset 0, leader epoch -1, create-time
    /// timestamps, CRC-32C filled in.
    ///
    /// Fails with [`BatchError::EmptyBatch`] if no record was pushed (Kafka
    /// producers never send empty batches), and with [`BatchError::TooLarge`]
    /// if any length would not fit Kafka's i32 fields.
    pub fn build(&self) -> Result<Bytes, BatchError> {
        let first = self.records.first().ok_or(BatchError::EmptyBatch)?;
        let base_timestamp = first.timestamp;
        let max_timestamp = self
            .records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(base_timestamp);
        let count = i32::try_from(self.records.len()).map_err(|_| I32_LIMIT)?;

        // The header is written last, once the length is known.
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload_estimate());
        out.resize(HEADER_LEN, 0);
        if self.compression == Compression::None {
            // Straight into the batch: each record's length is computed
            // first, so the payload is copied once, not via a records
            // section and its compressed copy.
            for (delta, record) in (0..count).zip(&self.records) {
                let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
                let len = body_len(delta, timestamp_delta, record)?;
                encode_varint(len_i32(len)?, &mut out);
                let before = out.len();
                encode_body(&mut out, delta, timestamp_delta, record)?;
                debug_assert_eq!(out.len() - before, len);
            }
        } else {
            let mut section = Vec::new();
            let mut body = Vec::new();
            for (delta, record) in (0..count).zip(&self.records) {
                body.clear();
                // Java's long subtraction wraps; decoding adds back with wrapping too.
                encode_body(
                    &mut body,
                    delta,
                    record.timestamp.wrapping_sub(base_timestamp),
                    record,
                )?;
                encode_varint(len_i32(body.len())?, &mut section);
                section.extend_from_slice(&body);
            }
            out.extend_from_slice(&self.compression.compress(&section)?);
        }

        let batch_length = len_i32(out.len().saturating_sub(LOG_OVERHEAD))?;
        let mut attributes = self.compression.attribute_bits();
        if self.transactional {
            attributes |= TRANSACTIONAL_FLAG;
        }
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&0i64.to_be_bytes()); // base offset
        header.extend_from_slice(&batch_length.to_be_bytes());
        header.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        header.push(MAGIC_V2 as u8);
        header.extend_from_slice(&0u32.to_be_bytes()); // CRC, filled in below
        header.extend_from_slice(&attributes.to_be_bytes());
        header.extend_from_slice(&count.saturating_sub(1).to_be_bytes()); // last offset delta
        header.extend_from_slice(&base_timestamp.to_be_bytes());
        header.extend_from_slice(&max_timestamp.to_be_bytes());
        header.extend_from_slice(&self.producer_id.to_be_bytes());
        header.extend_from_slice(&self.producer_epoch.to_be_bytes());
        header.extend_from_slice(&self.base_sequence.to_be_bytes());
        header.extend_from_slice(&count.to_be_bytes());
        debug_assert_eq!(header.len(), HEADER_LEN);
        if let Some(slot) = out.get_mut(..HEADER_LEN) {
            slot.copy_from_slice(&header);
        }

        let crc = crc32c::crc32c(out.get(ATTRIBUTES..).unwrap_or_default());
        if let Some(slot) = out.get_mut(CRC..CRC + 4) {
            slot.copy_from_slice(&crc.to_be_bytes());
        }
        Ok(Bytes::from(out))
    }
}

/// The bytes [`encode_body`] writes for `record`.
fn body_len(
    offset_delta: i32,
    timestamp_delta: i64,
    record: &PendingRecord,
) -> Result<usize, BatchError> {
    let nullable = |field: Option<&Bytes>| -> Result<usize, BatchError> {
        Ok(match field {
            None => varint_len(-1),
            Some(bytes) => varint_len(len_i32(bytes.len())?) + bytes.len(),
        })
    };
    let mut len = 1 // attributes
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + nullable(record.key.as_ref())?
        + nullable(record.value.as_ref())?
        + varint_len(len_i32(record.headers.len())?);
    for header in &record.headers {
        len += varint_len(len_i32(header.key.len())?) + header.key.len();
        len += nullable(header.value.as_ref())?;
    }
    Ok(len)
}

fn len_i32(len: usize) -> Result<i32, BatchError> {
    i32::try_from(len).map_err(|_| I32_LIMIT)
}

/// Writes a length-prefixed field, -1 for null.
fn encode_nullable(out: &mut Vec<u8>, field: Option<&Bytes>) -> Result<(), BatchError> {
    match field {
        None => encode_varint(-1, out),
        Some(bytes) => {
            encode_varint(len_i32(bytes.len())?, out);
            out.extend_from_slice(bytes);
        }
    }
    Ok(())
}

/// Writes one record without its length prefix.
fn encode_body(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    record: &PendingRecord,
) -> Result<(), BatchError> {
    out.push(0); // attributes: unused in v2
    encode_varlong(timestamp_delta, out);
    encode_varint(offset_delta, out);
    encode_nullable(out, record.key.as_ref())?;
    encode_nullable(out, record.value.as_ref())?;
    encode_varint(len_i32(record.headers.len())?, out);
    for header in &record.headers {
        encode_varint(len_i32(header.key.len())?, out);
        out.extend_from_slice(&header.key);
        encode_nullable(out, header.value.as_ref())?;
    }
    Ok(())
}
