//! The segment object format: pure encoding and decoding, no I/O.
//!
//! One object per sealed partition segment (see `docs/tiered-storage.md`,
//! "Segment objects", which this module implements byte for byte):
//!
//! ```text
//! header | record batches | index | trailer (32 bytes)
//! ```
//!
//! * [`SegmentBuilder`] takes a segment's batches in offset order, checks
//!   each batch's CRC and that offsets are contiguous from the base offset,
//!   cuts index blocks of about [`DEFAULT_BLOCK_SIZE`] at batch boundaries,
//!   and [`SegmentBuilder::finish`] returns a [`SegmentObject`]: the object
//!   as a list of parts (header, the batch chunks exactly as pushed, index
//!   and trailer). Chunks pushed with [`SegmentBuilder::push_bytes`] are kept
//!   without copying, so a segment is held in memory once and its parts can
//!   be handed to a single `put` (`PutPayload` is a list of `Bytes`) or to a
//!   multipart upload without ever being concatenated.
//! * [`Trailer::decode`], [`decode_header`], [`decode_index`],
//!   [`check_index`] and [`verify_block`] decode and check what a reader
//!   fetches; [`block_for_offset`] and [`block_for_timestamp`] pick blocks.
//!
//! Every decoder treats its input as untrusted: lengths are checked before
//! use, nothing indexes out of bounds, arithmetic is checked, and no
//! allocation is sized from a length field beyond the input's own length.

use std::ops::Range;

use bytes::BufMut;
use serde::{Deserialize, Serialize};
use strata_log::batch::{self, BatchError, BatchHeader, TimestampType};

pub use strata_log::EpochStart;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// First 8 bytes of every segment object.
pub const HEADER_MAGIC: [u8; 8] = *b"STRATSEG";
/// Last 8 bytes of every segment object.
pub const TRAILER_MAGIC: [u8; 8] = *b"STRATEND";
/// Size of the trailer at the end of the object.
pub const TRAILER_LEN: usize = 32;
/// Size of one index entry.
pub const INDEX_ENTRY_LEN: usize = 32;
/// Target size of an index block.
/// 1 MiB: a block is the unit of a ranged GET and of the cache, so it is
/// sized for an object store's round trip (tens of ms and up), not a disk's.
pub const DEFAULT_BLOCK_SIZE: usize = 1024 * 1024;
/// Longest tenant or topic name the header can hold (u16 length).
pub const MAX_NAME_LEN: usize = u16::MAX as usize;
/// Magic, version and header length: the same in every format version.
const HEADER_PREFIX_LEN: usize = 14;
/// The smallest possible header: empty names, no epochs.
pub const MIN_HEADER_LEN: usize = HEADER_PREFIX_LEN + 2 + 2 + 8 + 4 + 8 + 8 + 8 + 8 + 8 + 4 + 4;
/// Bytes of one leader-epoch range in the header.
const EPOCH_LEN: usize = 12;

pub use crate::error::{FormatError, Region};

type Result<T, E = FormatError> = std::result::Result<T, E>;

fn inconsistent(region: Region, detail: impl Into<String>) -> FormatError {
    FormatError::inconsistent(region, detail)
}

/// What a segment object's header says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub tenant: String,
    pub topic: String,
    pub topic_id: u64,
    pub partition: u32,
    /// Offset of the first batch.
    pub base_offset: u64,
    /// One past the last offset.
    pub end_offset: u64,
    /// Timestamp of the first record (see [`SegmentBuilder`]), -1 if none.
    pub first_timestamp: i64,
    /// Largest record timestamp, -1 if none.
    pub max_timestamp: i64,
    /// Records in the segment's batches.
    pub record_count: u64,
    /// Leader-epoch ranges: epochs strictly increasing, start offsets
    /// non-decreasing.
    pub epochs: Vec<EpochStart>,
}

impl SegmentMeta {
    /// Checks the invariants every header must satisfy.
    pub fn validate(&self) -> Result<()> {
        let (base, end, records) = (self.base_offset, self.end_offset, self.record_count);
        let bad_epochs = self
            .epochs
            .windows(2)
            .find(|w| matches!(w, [a, b] if b.epoch <= a.epoch || b.start_offset < a.start_offset));
        let detail = if end < base {
            format!("end offset {end} is below base offset {base}")
        } else if records > end - base {
            format!("{records} records cannot fit offsets [{base}, {end})")
        } else if let Some([a, b]) = bad_epochs {
            let (ae, ao, be, bo) = (a.epoch, a.start_offset, b.epoch, b.start_offset);
            format!("epoch {be} at {bo} follows epoch {ae} at {ao}: epochs must increase")
        } else {
            return Ok(());
        };
        Err(inconsistent(Region::Header, detail))
    }
}

/// What the builder cannot compute from the batches: the segment's owner
/// and its leader-epoch ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFields {
    pub tenant: String,
    pub topic: String,
    pub topic_id: u64,
    pub partition: u32,
    pub epochs: Vec<EpochStart>,
}

/// One index entry: a block of whole batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Base offset of the block's first batch.
    pub first_offset: u64,
    /// Byte position from the start of the batches area.
    pub position: u64,
    /// Bytes in the block.
    pub len: u32,
    /// Largest max timestamp of the block's non-empty batches, -1 if none.
    pub max_timestamp: i64,
    /// CRC-32C of the block's bytes.
    pub crc: u32,
}

impl IndexEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64_le(self.first_offset);
        out.put_u64_le(self.position);
        out.put_u32_le(self.len);
        out.put_i64_le(self.max_timestamp);
        out.put_u32_le(self.crc);
    }

    /// Where the block is, for errors.
    pub fn region(&self) -> Region {
        Region::Block {
            first_offset: self.first_offset,
            position: self.position,
        }
    }

    /// The block's byte range within the batches area.
    pub fn range(&self) -> Range<u64> {
        self.position..self.position.saturating_add(u64::from(self.len))
    }
}

/// The last 32 bytes of a segment object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Where the batches start (= the header length).
    pub batches_position: u64,
    /// Where the index starts (= where the batches end).
    pub index_position: u64,
    /// Number of index entries.
    pub index_entries: u32,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = Vec::with_capacity(TRAILER_LEN);
        out.put_u64_le(self.batches_position);
        out.put_u64_le(self.index_position);
        out.put_u32_le(self.index_entries);
        out.put_u32_le(crc32c::crc32c(&out));
        out.put_slice(&TRAILER_MAGIC);
        let mut buf = [0u8; TRAILER_LEN];
        buf.copy_from_slice(&out);
        buf
    }

    /// Decodes and checks a trailer: magic, CRC, and positions in order.
    pub fn decode(buf: &[u8; TRAILER_LEN]) -> Result<Trailer> {
        let mut r = Reader::new(buf, Region::Trailer);
        let batches_position = r.u64()?;
        let index_position = r.u64()?;
        let index_entries = r.u32()?;
        let stored = r.u32()?;
        let magic = r.array::<8>()?;
        if magic != TRAILER_MAGIC {
            return Err(FormatError::BadMagic {
                region: Region::Trailer,
                found: magic,
            });
        }
        FormatError::check_crc(Region::Trailer, buf.get(..20).unwrap_or_default(), stored)?;
        let t = Trailer {
            batches_position,
            index_position,
            index_entries,
        };
        if batches_position < MIN_HEADER_LEN as u64 || index_position < batches_position {
            let detail = format!("batches at {batches_position}, index at {index_position}");
            return Err(inconsistent(Region::Trailer, detail));
        }
        t.object_len()
            .ok_or_else(|| inconsistent(Region::Trailer, "positions overflow the object size"))?;
        Ok(t)
    }

    /// Bytes of the index: the entries and the index CRC.
    pub fn index_len(&self) -> u64 {
        u64::from(self.index_entries) * INDEX_ENTRY_LEN as u64 + 4
    }

    /// The object size this trailer implies, `None` on overflow.
    pub fn object_len(&self) -> Option<u64> {
        self.index_position
            .checked_add(self.index_len())?
            .checked_add(TRAILER_LEN as u64)
    }

    /// Checks the trailer against the object's actual size.
    pub fn check_object_len(&self, size: u64) -> Result<()> {
        match self.object_len() {
            Some(len) if len == size => Ok(()),
            len => Err(inconsistent(
                Region::Trailer,
                format!("positions imply a {len:?}-byte object, but it is {size} bytes"),
            )),
        }
    }

    /// Byte range of the header in the object.
    pub fn header_range(&self) -> Range<u64> {
        0..self.batches_position
    }

    /// Byte range of the batches in the object.
    pub fn batches_range(&self) -> Range<u64> {
        self.batches_position..self.index_position
    }

    /// Byte range of the index in the object.
    pub fn index_range(&self) -> Range<u64> {
        self.index_position..self.index_position.saturating_add(self.index_len())
    }
}

/// Little-endian cursor over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    region: Region,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], region: Region) -> Self {
        Reader {
            buf,
            pos: 0,
            region,
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(FormatError::Truncated {
                region: self.region,
                needed: (self.pos as u64).saturating_add(n as u64),
                available: self.buf.len() as u64,
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn name(&mut self, field: &'static str) -> Result<String> {
        let len = usize::from(self.u16()?);
        let raw = self.bytes(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| FormatError::InvalidUtf8 { field })
    }

    /// The epoch ranges, which must end the buffer exactly.
    fn epochs(&mut self) -> Result<Vec<EpochStart>> {
        let count = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        let (needed, remaining) = (count.saturating_mul(EPOCH_LEN), self.buf.len() - self.pos);
        if needed != remaining {
            let detail = format!("{count} epochs need {needed} bytes, {remaining} remain");
            return Err(inconsistent(self.region, detail));
        }
        // `count` is bounded by the input length checked above.
        let mut epochs = Vec::with_capacity(count);
        for _ in 0..count {
            let epoch = self.i32()?;
            let start_offset = self.u64()?;
            epochs.push(EpochStart {
                epoch,
                start_offset,
            });
        }
        Ok(epochs)
    }
}

/// Encodes a header (magic through header CRC).
pub fn encode_header(meta: &SegmentMeta) -> Result<Vec<u8>> {
    meta.validate()?;
    let names = [("tenant", &meta.tenant), ("topic", &meta.topic)];
    let mut out = Vec::with_capacity(MIN_HEADER_LEN + meta.tenant.len() + meta.topic.len());
    out.put_slice(&HEADER_MAGIC);
    out.put_u16_le(FORMAT_VERSION);
    out.put_u32_le(0); // header length, patched below
    for (field, name) in names {
        let len = u16::try_from(name.len()).map_err(|_| FormatError::NameTooLong {
            field,
            len: name.len(),
        })?;
        out.put_u16_le(len);
        out.put_slice(name.as_bytes());
    }
    out.put_u64_le(meta.topic_id);
    out.put_u32_le(meta.partition);
    out.put_u64_le(meta.base_offset);
    out.put_u64_le(meta.end_offset);
    out.put_i64_le(meta.first_timestamp);
    out.put_i64_le(meta.max_timestamp);
    out.put_u64_le(meta.record_count);
    let too_many = || inconsistent(Region::Header, "too many epochs for one header");
    out.put_u32_le(u32::try_from(meta.epochs.len()).map_err(|_| too_many())?);
    for e in &meta.epochs {
        out.put_i32_le(e.epoch);
        out.put_u64_le(e.start_offset);
    }
    let len = u32::try_from(out.len() + 4).map_err(|_| too_many())?;
    if let Some(slot) = out.get_mut(10..14) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
    out.put_u32_le(crc32c::crc32c(&out));
    Ok(out)
}

/// Decodes and checks a header: `buf` must be exactly the header (the
/// object's bytes before [`Trailer::batches_position`]). Checks magic,
/// length, CRC, then version and fields.
pub fn decode_header(buf: &[u8]) -> Result<SegmentMeta> {
    let region = Region::Header;
    let mut r = Reader::new(buf, region);
    let found = r.array::<8>()?;
    if found != HEADER_MAGIC {
        return Err(FormatError::BadMagic { region, found });
    }
    let version = r.u16()?;
    let len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
    if len < MIN_HEADER_LEN {
        let detail = format!("header length {len} is below the minimum {MIN_HEADER_LEN}");
        return Err(inconsistent(region, detail));
    }
    FormatError::check_len(region, len as u64, buf.len() as u64)?;
    // The CRC is checked before the version so that a damaged version
    // field reads as corruption, not as a version from the future.
    let (body, stored) = buf.split_at(len - 4);
    let stored = u32::from_le_bytes(stored.try_into().unwrap_or_default());
    FormatError::check_crc(region, body, stored)?;
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let mut r = Reader::new(body, region);
    r.bytes(HEADER_PREFIX_LEN)?;
    let meta = SegmentMeta {
        tenant: r.name("tenant")?,
        topic: r.name("topic")?,
        topic_id: r.u64()?,
        partition: r.u32()?,
        base_offset: r.u64()?,
        end_offset: r.u64()?,
        first_timestamp: r.i64()?,
        max_timestamp: r.i64()?,
        record_count: r.u64()?,
        epochs: r.epochs()?,
    };
    meta.validate()?;
    Ok(meta)
}

/// Decodes and checks an index of `entries` entries: exact length, CRC,
/// blocks contiguous from position 0, non-empty, first offsets increasing.
pub fn decode_index(buf: &[u8], entries: u32) -> Result<Vec<IndexEntry>> {
    let expected = u64::from(entries) * INDEX_ENTRY_LEN as u64 + 4;
    FormatError::check_len(Region::Index, expected, buf.len() as u64)?;
    let (body, stored) = buf.split_at(buf.len() - 4);
    let stored = u32::from_le_bytes(stored.try_into().unwrap_or_default());
    FormatError::check_crc(Region::Index, body, stored)?;
    // `entries` is bounded by the input length checked above.
    let mut out: Vec<IndexEntry> = Vec::with_capacity(body.len() / INDEX_ENTRY_LEN);
    let mut r = Reader::new(body, Region::Index);
    let mut next_position = 0u64;
    for i in 0..entries {
        let e = IndexEntry {
            first_offset: r.u64()?,
            position: r.u64()?,
            len: r.u32()?,
            max_timestamp: r.i64()?,
            crc: r.u32()?,
        };
        let (len, position, first) = (e.len, e.position, e.first_offset);
        if position != next_position || len == 0 {
            let want = format!("expected a non-empty block at {next_position}");
            let detail = format!("entry {i} covers {len} bytes at {position}, {want}");
            return Err(inconsistent(Region::Index, detail));
        }
        if let Some(prev) = out.last().filter(|p| first <= p.first_offset) {
            let prev = prev.first_offset;
            let detail = format!("entry {i} starts at offset {first} after a block at {prev}");
            return Err(inconsistent(Region::Index, detail));
        }
        next_position = e.range().end;
        out.push(e);
    }
    Ok(out)
}

/// Checks an index against its header and the size of the batches area:
/// the blocks exactly cover the batches, the first starts at the base
/// offset, and every block starts below the end offset.
pub fn check_index(index: &[IndexEntry], meta: &SegmentMeta, batches_len: u64) -> Result<()> {
    let covered = index.last().map_or(0, |e| e.range().end);
    if covered != batches_len {
        return Err(inconsistent(
            Region::Index,
            format!("blocks cover {covered} bytes of a {batches_len}-byte batches area"),
        ));
    }
    let (base, end) = (meta.base_offset, meta.end_offset);
    let detail = match (index.first(), index.last()) {
        (Some(first), Some(last)) if first.first_offset != base || last.first_offset >= end => {
            format!(
                "blocks start at offsets {}..={} in a segment of offsets [{base}, {end})",
                first.first_offset, last.first_offset
            )
        }
        (None, _) if end != base => format!("no blocks for offsets [{base}, {end})"),
        _ => return Ok(()),
    };
    Err(inconsistent(Region::Index, detail))
}

/// Offsets and timestamps of a batch's header, as the format uses them.
struct BatchInfo {
    first: u64,
    next: u64,
    records: u64,
    /// (first record's timestamp, max timestamp) if it holds records.
    timestamps: Option<(i64, i64)>,
}

fn batch_info(h: &BatchHeader, region: Region, position: u64, expected: u64) -> Result<BatchInfo> {
    let bad = |source| FormatError::InvalidBatch {
        region,
        position,
        source,
    };
    // A negative base offset wraps to a huge one and fails the gap check.
    let first = h.base_offset as u64;
    if first != expected {
        return Err(FormatError::OffsetGap {
            region,
            position,
            expected,
            found: first,
        });
    }
    if h.records_count < 0 {
        return Err(bad(BatchError::BadRecordCount(h.records_count)));
    }
    if h.last_offset_delta < 0 || h.last_offset_delta < h.records_count.saturating_sub(1) {
        return Err(bad(BatchError::BadLastOffsetDelta {
            last_offset_delta: h.last_offset_delta,
            records_count: h.records_count,
        }));
    }
    let next = first
        .checked_add(h.last_offset_delta as u64 + 1)
        .filter(|n| *n <= i64::MAX as u64)
        .ok_or_else(|| {
            inconsistent(
                region,
                format!("batch at byte {position} overflows offsets"),
            )
        })?;
    let first_ts = match h.timestamp_type() {
        _ if h.has_delete_horizon() => h.max_timestamp,
        TimestampType::LogAppendTime => h.max_timestamp,
        TimestampType::CreateTime => h.base_timestamp,
    };
    Ok(BatchInfo {
        first,
        next,
        records: h.records_count as u64,
        timestamps: (h.records_count > 0).then_some((first_ts, h.max_timestamp)),
    })
}

/// Checks a block fetched for `entry`: length, CRC, then that it holds
/// whole batches with contiguous offsets from the entry's first offset and
/// the entry's max timestamp.
pub fn verify_block(block: &[u8], entry: &IndexEntry) -> Result<()> {
    let region = entry.region();
    FormatError::check_len(region, u64::from(entry.len), block.len() as u64)?;
    FormatError::check_crc(region, block, entry.crc)?;
    let mut expected = entry.first_offset;
    let mut max_ts = -1i64;
    let mut batches = batch::batches(block);
    while let Some(item) = batches.next() {
        let position = entry.position.saturating_add(batches.position() as u64);
        let (h, range) = item.map_err(|source| FormatError::InvalidBatch {
            region,
            position,
            source,
        })?;
        let position = entry.position.saturating_add(range.start as u64);
        let info = batch_info(&h, region, position, expected)?;
        expected = info.next;
        if let Some((_, max)) = info.timestamps {
            max_ts = max_ts.max(max);
        }
    }
    let indexed = entry.max_timestamp;
    if max_ts != indexed {
        let detail = format!("batches' max timestamp is {max_ts}, the index says {indexed}");
        return Err(inconsistent(region, detail));
    }
    Ok(())
}

/// The block holding `offset`: the last block starting at or before it.
/// `None` below the first block. The answer is only meaningful for an
/// offset below the segment's end offset (the index does not record where
/// the last block ends).
pub fn block_for_offset(index: &[IndexEntry], offset: u64) -> Option<usize> {
    index
        .partition_point(|e| e.first_offset <= offset)
        .checked_sub(1)
}

/// The first block that may hold a record with a timestamp at or after
/// `ts`: the first whose max timestamp is at least `ts`. Timestamps need not
/// increase with offsets, so later blocks may hold earlier timestamps.
pub fn block_for_timestamp(index: &[IndexEntry], ts: i64) -> Option<usize> {
    index.iter().position(|e| e.max_timestamp >= ts)
}

mod builder;

pub use builder::{SegmentBuilder, SegmentObject};

#[cfg(test)]
mod tests;
