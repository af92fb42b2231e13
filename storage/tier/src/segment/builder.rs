//! Building a segment object from a sealed segment's batches.

use bytes::{BufMut, Bytes};
use strata_log::batch;

use super::*;

/// The block being filled.
#[derive(Debug, Clone, Copy)]
struct OpenBlock {
    first_offset: u64,
    position: u64,
    len: u64,
    max_timestamp: i64,
    crc: u32,
}

/// Builds a segment object from its batches; see the module docs.
///
/// `first_timestamp` is the first non-empty batch's base timestamp (its max
/// timestamp for log-append-time batches or when the base timestamp holds a
/// delete horizon); `max_timestamp` the largest max timestamp of non-empty
/// batches; both -1 when the segment holds no records.
#[derive(Debug)]
pub struct SegmentBuilder {
    base_offset: u64,
    next_offset: u64,
    block_size: u64,
    chunks: Vec<Bytes>,
    batches_len: u64,
    index: Vec<IndexEntry>,
    block: Option<OpenBlock>,
    record_count: u64,
    first_timestamp: Option<i64>,
    max_timestamp: i64,
}

impl SegmentBuilder {
    /// A builder for a segment starting at `base_offset`, with blocks of
    /// about [`DEFAULT_BLOCK_SIZE`].
    pub fn new(base_offset: u64) -> Self {
        Self::with_block_size(base_offset, DEFAULT_BLOCK_SIZE)
    }

    /// A builder cutting blocks of about `block_size` bytes (at least 1).
    pub fn with_block_size(base_offset: u64, block_size: usize) -> Self {
        SegmentBuilder {
            base_offset,
            next_offset: base_offset,
            block_size: (block_size as u64).clamp(1, u64::from(u32::MAX / 2)),
            chunks: Vec::new(),
            batches_len: 0,
            index: Vec::new(),
            block: None,
            record_count: 0,
            first_timestamp: None,
            max_timestamp: -1,
        }
    }

    /// The offset the next batch must start at.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Bytes of batches pushed so far.
    pub fn batches_len(&self) -> u64 {
        self.batches_len
    }

    /// Appends a chunk of whole batches (copied); see [`Self::push_bytes`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.push_bytes(Bytes::copy_from_slice(chunk))
    }

    /// Appends a chunk of whole batches, kept without copying. Each batch's
    /// CRC is checked and its offsets must continue from
    /// [`Self::next_offset`]; on error nothing of the chunk is taken.
    pub fn push_bytes(&mut self, chunk: Bytes) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let region = Region::Batches;
        let mut batches = Vec::new();
        let mut expected = self.next_offset;
        let mut iter = batch::batches(&chunk);
        while let Some(item) = iter.next() {
            let position = self.batches_len.saturating_add(iter.position() as u64);
            let (_, range) = item.map_err(|source| FormatError::InvalidBatch {
                region,
                position,
                source,
            })?;
            let position = self.batches_len.saturating_add(range.start as u64);
            let bytes = chunk.get(range.clone()).unwrap_or_default();
            let h = batch::verify_batch_crc(bytes).map_err(|source| FormatError::InvalidBatch {
                region,
                position,
                source,
            })?;
            let info = batch_info(&h, region, position, expected)?;
            expected = info.next;
            batches.push((info, range));
        }
        for (info, range) in batches {
            self.add_batch(&info, chunk.get(range).unwrap_or_default());
        }
        self.next_offset = expected;
        self.chunks.push(chunk);
        Ok(())
    }

    fn add_batch(&mut self, info: &BatchInfo, bytes: &[u8]) {
        let len = bytes.len() as u64;
        if self
            .block
            .is_some_and(|b| b.len > 0 && b.len + len > self.block_size)
        {
            self.close_block();
        }
        let block = self.block.get_or_insert(OpenBlock {
            first_offset: info.first,
            position: self.batches_len,
            len: 0,
            max_timestamp: -1,
            crc: 0,
        });
        block.len += len;
        block.crc = crc32c::crc32c_append(block.crc, bytes);
        if let Some((first, max)) = info.timestamps {
            block.max_timestamp = block.max_timestamp.max(max);
            self.first_timestamp.get_or_insert(first);
            self.max_timestamp = self.max_timestamp.max(max);
        }
        let full = block.len >= self.block_size;
        self.batches_len += len;
        self.record_count += info.records;
        if full {
            self.close_block();
        }
    }

    fn close_block(&mut self) {
        if let Some(b) = self.block.take() {
            self.index.push(IndexEntry {
                first_offset: b.first_offset,
                position: b.position,
                // Blocks are at most max(block size, one batch) <= u32::MAX.
                len: u32::try_from(b.len).unwrap_or(u32::MAX),
                max_timestamp: b.max_timestamp,
                crc: b.crc,
            });
        }
    }

    /// Completes the object: header, batches, index, trailer.
    pub fn finish(mut self, fields: SegmentFields) -> Result<SegmentObject> {
        self.close_block();
        let meta = SegmentMeta {
            tenant: fields.tenant,
            topic: fields.topic,
            topic_id: fields.topic_id,
            partition: fields.partition,
            base_offset: self.base_offset,
            end_offset: self.next_offset,
            first_timestamp: self.first_timestamp.unwrap_or(-1),
            max_timestamp: self.max_timestamp,
            record_count: self.record_count,
            epochs: fields.epochs,
        };
        let header = encode_header(&meta)?;
        let entries = u32::try_from(self.index.len())
            .map_err(|_| inconsistent(Region::Index, "too many index entries"))?;
        let trailer = Trailer {
            batches_position: header.len() as u64,
            index_position: header.len() as u64 + self.batches_len,
            index_entries: entries,
        };
        let mut tail = Vec::with_capacity(self.index.len() * INDEX_ENTRY_LEN + 4 + TRAILER_LEN);
        for e in &self.index {
            e.encode(&mut tail);
        }
        tail.put_u32_le(crc32c::crc32c(&tail));
        tail.put_slice(&trailer.encode());
        let len = trailer.object_len().unwrap_or(u64::MAX);
        let mut parts = Vec::with_capacity(self.chunks.len() + 2);
        parts.push(Bytes::from(header));
        parts.append(&mut self.chunks);
        parts.push(Bytes::from(tail));
        Ok(SegmentObject {
            meta,
            index: self.index,
            trailer,
            parts,
            len,
        })
    }
}

/// A finished segment object, as parts to upload in order.
#[derive(Debug, Clone)]
pub struct SegmentObject {
    pub meta: SegmentMeta,
    pub index: Vec<IndexEntry>,
    pub trailer: Trailer,
    /// Header, the batch chunks as pushed, then index and trailer.
    pub parts: Vec<Bytes>,
    /// Total bytes.
    pub len: u64,
}

impl SegmentObject {
    /// The object in one buffer (copies; for small objects and tests).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for p in &self.parts {
            out.put_slice(p);
        }
        Bytes::from(out)
    }
}
