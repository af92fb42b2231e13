//! The read path: from the run index to verified record batches.
//!
//! The index lookup happens under the partition's read lock; the disk reads
//! happen after it is released, on file handles cloned under the lock, so a
//! journal file deleted meanwhile is still readable through its handle.
//! Every frame read is checked (frame CRC-32C, then each batch's own CRC)
//! before a byte of it is returned: corruption is reported with its place,
//! never served.
//!
//! Runs whose frames are still in the partition's tail cache (the bytes the
//! committer wrote, see `LogConfig::tail_cache_bytes`) are served from
//! memory instead, with the same batch selection; a read needing only such
//! runs does no I/O, so `Partition::read` serves it without a blocking thread.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader};
use crate::error::{LogError, Result};
use crate::frame::{self, BATCHES_PAYLOAD_START, CutSegment, Frame};
use crate::journal::{Files, PartitionShared};
use crate::metrics;
use crate::state::{Run, SegmentInfo};

/// Record batches read from a partition.
#[derive(Debug, Clone, Default)]
pub struct ReadBatches {
    /// Whole record batches in offset order, as stored (Kafka RecordBatch v2
    /// bytes); each chunk holds one or more consecutive batches.
    pub chunks: Vec<Bytes>,
    /// The offset to read next: one past the last batch returned, or the
    /// requested offset when nothing was returned.
    pub next_offset: u64,
    /// The partition's end offset when the read was served.
    pub end_offset: u64,
    /// The partition's log start offset when the read was served.
    pub log_start: u64,
}

impl ReadBatches {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Total bytes of the returned batches.
    pub fn len_bytes(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// The batches one by one.
    pub fn batches(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.chunks.iter().flat_map(|chunk| {
            batch::batches(chunk)
                .filter_map(|b| b.ok())
                .map(move |(_, range)| chunk.slice(range))
        })
    }
}

/// One run to read, with the file handle that holds it.
struct Planned {
    run: Run,
    file: Arc<File>,
}

fn plan(files: &Files, runs: impl Iterator<Item = Run>) -> Result<Vec<Planned>> {
    runs.map(|run| {
        Ok(Planned {
            run,
            file: file_of(files, &run)?,
        })
    })
    .collect()
}

/// The open journal file holding `run`.
fn file_of(files: &Files, run: &Run) -> Result<Arc<File>> {
    files.get(run.file).ok_or_else(|| {
        LogError::corrupt(
            files.path(run.file),
            run.position,
            "journal file is missing",
        )
    })
}

/// Reads and verifies one run's frame; returns its batches payload.
fn read_run(files: &Files, partition_id: u64, p: &Planned) -> Result<Bytes> {
    read_run_from(files, partition_id, &p.run, &p.file)
}

fn read_run_from(files: &Files, partition_id: u64, run: &Run, file: &File) -> Result<Bytes> {
    let corrupt = |reason: String| LogError::corrupt(files.path(run.file), run.position, reason);
    let mut buf = BytesMut::zeroed(run.frame_len as usize);
    file.read_exact_at(&mut buf, run.position)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                corrupt("journal file is shorter than its index says".into())
            }
            _ => LogError::io(files.path(run.file), e),
        })?;
    let buf = buf.freeze();
    match frame::decode_frame(&buf) {
        Ok((Frame::Batches { partition, .. }, len))
            if partition == partition_id && len == buf.len() => {}
        Ok((Frame::Batches { partition, .. }, _)) if partition != partition_id => {
            return Err(corrupt(format!(
                "frame belongs to partition id {partition}, not {partition_id}"
            )));
        }
        Ok(_) => {
            return Err(corrupt(
                "index points at a frame that is not this run".into(),
            ));
        }
        Err(e) => return Err(corrupt(format!("{e:?}"))),
    }
    Ok(buf.slice(BATCHES_PAYLOAD_START..))
}

/// Walks the batches of a run's payload, verifying each.
fn verified_batches<'a>(
    files: &'a Files,
    run: &'a Run,
    payload: &'a Bytes,
) -> impl Iterator<Item = Result<(BatchHeader, std::ops::Range<usize>)>> + 'a {
    walk_batches(files, run, payload, true)
}

/// Walks the batches of a run's payload; with `verify`, checks each batch's
/// CRC (bytes read from disk). Frames from the tail cache are the bytes the
/// committer wrote, checked on append, so only their headers are walked.
fn walk_batches<'a>(
    files: &'a Files,
    run: &'a Run,
    payload: &'a Bytes,
    verify: bool,
) -> impl Iterator<Item = Result<(BatchHeader, std::ops::Range<usize>)>> + 'a {
    batch::batches(payload).map(move |item| {
        let position = run.position + BATCHES_PAYLOAD_START as u64;
        let (h, range) =
            item.map_err(|e| LogError::corrupt(files.path(run.file), position, e.to_string()))?;
        if verify {
            let bytes = payload.get(range.clone()).unwrap_or_default();
            batch::verify_batch_crc(bytes).map_err(|e| {
                LogError::corrupt(
                    files.path(run.file),
                    position + range.start as u64,
                    e.to_string(),
                )
            })?;
        }
        Ok((h, range))
    })
}

/// Where a planned run's frame comes from.
pub(crate) enum Source {
    /// The partition's tail cache: the frame as written.
    Memory(Bytes),
    /// The journal file, through a handle cloned under the partition lock.
    Disk(Arc<File>),
}

/// A read's runs and bounds, chosen under the partition's read lock; see [`plan_read`].
pub(crate) struct ReadPlan {
    offset: u64,
    max_bytes: usize,
    max_offset: Option<u64>,
    end_offset: u64,
    log_start: u64,
    runs: Vec<(Run, Source)>,
}

impl ReadPlan {
    /// Whether [`execute_read`] can serve it without touching the disk.
    pub fn in_memory(&self) -> bool {
        self.runs
            .iter()
            .all(|(_, s)| matches!(s, Source::Memory(_)))
    }
}

/// Chooses the runs a read of `offset` needs: those from the one holding it
/// until `max_bytes` (at least one run) or the bound; each from the tail
/// cache when there, otherwise from disk.
pub(crate) fn plan_read(
    files: &Files,
    partition: &PartitionShared,
    offset: u64,
    max_bytes: usize,
    max_offset: Option<u64>,
) -> Result<ReadPlan> {
    partition.check_live()?;
    let state = partition.state.read();
    let m = &state.meta;
    let upper = max_offset.map_or(m.next_offset, |o| o.min(m.next_offset));
    if offset < m.local_start || offset > m.next_offset {
        return Err(LogError::OffsetOutOfRange {
            offset,
            start: m.local_start,
            end: m.next_offset,
        });
    }
    let mut runs = Vec::new();
    if offset < upper
        && let Some(first) = state.run_index_for(offset)
    {
        let mut total = 0usize;
        let selected = state.runs.range(first..).take_while(|r| {
            let take = total == 0 || (total < max_bytes && r.base_offset < upper);
            total += r.frame_len as usize;
            take
        });
        for run in selected {
            let source = match state.cached_frame(run) {
                Some(frame) => Source::Memory(frame),
                None => Source::Disk(file_of(files, run)?),
            };
            runs.push((*run, source));
        }
    }
    Ok(ReadPlan {
        offset,
        max_bytes,
        max_offset,
        end_offset: m.next_offset,
        log_start: m.log_start,
        runs,
    })
}

/// Serves a planned read: whole batches from the one holding the offset, up
/// to `max_bytes` (at least one), below the bound. Reads from disk for runs
/// not in memory, so call it from a blocking thread unless the plan is
/// [`ReadPlan::in_memory`].
pub(crate) fn execute_read(
    files: &Files,
    partition: &PartitionShared,
    plan: ReadPlan,
) -> Result<ReadBatches> {
    let offset = plan.offset;
    let max_bytes = plan.max_bytes;
    let upper = plan
        .max_offset
        .map_or(plan.end_offset, |o| o.min(plan.end_offset));
    let mut out = ReadBatches {
        chunks: Vec::new(),
        next_offset: offset,
        end_offset: plan.end_offset,
        log_start: plan.log_start,
    };
    let in_memory = plan.in_memory();
    let mut total = 0usize;
    'runs: for (run, source) in &plan.runs {
        let (payload, from_disk) = match source {
            Source::Memory(frame) => (frame.slice(BATCHES_PAYLOAD_START..), false),
            Source::Disk(file) => {
                #[cfg(test)]
                partition
                    .disk_run_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (read_run_from(files, partition.id, run, file)?, true)
            }
        };
        let mut chunk: Option<std::ops::Range<usize>> = None;
        for item in walk_batches(files, run, &payload, from_disk) {
            let (h, range) = item?;
            let (first, next) = (h.base_offset as u64, h.next_offset() as u64);
            if next <= offset {
                continue;
            }
            // Only whole batches below the bound (the end offset or a high watermark) are served.
            let past_bound = first >= run.next_offset || next > upper;
            if past_bound || (total > 0 && total + range.len() > max_bytes) {
                if let Some(c) = chunk.take() {
                    out.chunks.push(payload.slice(c));
                }
                break 'runs;
            }
            total += range.len();
            out.next_offset = next;
            chunk = Some(chunk.map_or(range.clone(), |c| c.start..range.end));
        }
        if let Some(c) = chunk.take() {
            out.chunks.push(payload.slice(c));
        }
    }
    metrics::READ_BYTES.inc_by(total as u64);
    if in_memory && !plan.runs.is_empty() {
        metrics::TAIL_CACHE_READS.inc();
    }
    Ok(out)
}

pub(crate) fn read(
    files: &Files,
    partition: &PartitionShared,
    offset: u64,
    max_bytes: usize,
    max_offset: Option<u64>,
) -> Result<ReadBatches> {
    let plan = plan_read(files, partition, offset, max_bytes, max_offset)?;
    execute_read(files, partition, plan)
}

/// The offset of the first record whose timestamp is at or after `ts`.
pub(crate) fn offset_for_timestamp(
    files: &Files,
    partition: &PartitionShared,
    ts: i64,
    max_uncompressed: usize,
) -> Result<Option<u64>> {
    partition.check_live()?;
    let (planned, start) = {
        let state = partition.state.read();
        let Some(first) = state.run_index_for_timestamp(ts) else {
            return Ok(None);
        };
        let start = state.meta.local_start.max(state.meta.log_start);
        (plan(files, state.runs.range(first..).copied())?, start)
    };
    for p in &planned {
        let payload = read_run(files, partition.id, p)?;
        for item in verified_batches(files, &p.run, &payload) {
            let (h, range) = item?;
            if h.max_timestamp < ts || (h.next_offset() as u64) <= start {
                continue;
            }
            if h.base_offset as u64 >= p.run.next_offset {
                break;
            }
            let records =
                batch::decode_records(&payload[range], max_uncompressed).map_err(|e| {
                    LogError::corrupt(files.path(p.run.file), p.run.position, e.to_string())
                })?;
            if let Some(r) = records.iter().find(|r| {
                r.timestamp >= ts
                    && r.offset as u64 >= start
                    && (r.offset as u64) < p.run.next_offset
            }) {
                return Ok(Some(r.offset as u64));
            }
        }
    }
    Ok(None)
}

/// Reads a sealed segment's batches run by run: the byte stream tiering uploads.
pub struct SegmentReader {
    files: Arc<crate::journal::Shared>,
    partition_id: u64,
    info: SegmentInfo,
    runs: std::vec::IntoIter<Planned>,
}

impl SegmentReader {
    pub(crate) fn new(
        shared: Arc<crate::journal::Shared>,
        partition: &PartitionShared,
        base_offset: u64,
    ) -> Result<Self> {
        partition.check_live()?;
        let state = partition.state.read();
        let info = state
            .meta
            .segments
            .iter()
            .find(|s| s.base_offset == base_offset && s.sealed)
            .cloned()
            .ok_or_else(|| {
                LogError::InvalidOperation(format!(
                    "no sealed local segment starts at offset {base_offset}"
                ))
            })?;
        let runs = state
            .runs
            .iter()
            .filter(|r| r.base_offset >= info.base_offset && r.base_offset < info.end_offset)
            .copied();
        let planned = plan(&shared.files, runs)?;
        drop(state);
        Ok(SegmentReader {
            files: shared,
            partition_id: partition.id,
            info,
            runs: planned.into_iter(),
        })
    }

    /// The segment: offset range, time range, size.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// The next chunk of whole batches, or `None` at the end. Blocking: call
    /// it from a blocking thread.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        for p in self.runs.by_ref() {
            let files = &self.files.files;
            let payload = read_run(files, self.partition_id, &p)?;
            let mut keep: Option<std::ops::Range<usize>> = None;
            for item in verified_batches(files, &p.run, &payload) {
                let (h, range) = item?;
                let first = h.base_offset as u64;
                if first < self.info.base_offset
                    || first >= self.info.end_offset.min(p.run.next_offset)
                {
                    continue;
                }
                keep = Some(keep.map_or(range.clone(), |k| k.start..range.end));
            }
            if let Some(k) = keep {
                return Ok(Some(payload.slice(k)));
            }
        }
        Ok(None)
    }
}

/// Plans a truncation to `offset`: checks it is a batch boundary and works
/// out what remains of the segment it cuts (batch bytes, largest timestamp).
/// Reads the segment's local runs; truncation is rare (a leader change), and
/// a segment is at most about `segment_bytes`.
pub(crate) fn plan_truncation(
    files: &Files,
    partition: &PartitionShared,
    offset: u64,
) -> Result<Option<CutSegment>> {
    let (segment, runs, local_start) = {
        let state = partition.state.read();
        let Some(segment) = state.segment_cut_by(offset).cloned() else {
            return Ok(None);
        };
        let local_start = state.meta.local_start;
        let runs: Vec<Run> = state
            .runs
            .iter()
            .filter(|r| r.base_offset < segment.end_offset && r.next_offset > segment.base_offset)
            .copied()
            .collect();
        (segment, runs, local_start)
    };
    let mut removed = 0u64;
    let mut max_timestamp = -1i64;
    let mut boundary = false;
    for run in &runs {
        // Every run is read: a run cut by an earlier truncation still holds
        // the batches past its end, so its frame length and maximum
        // timestamp are not those of what it serves.
        let planned = plan(files, std::iter::once(*run))?;
        let payload = read_run(files, partition.id, &planned[0])?;
        for item in verified_batches(files, run, &payload) {
            let (h, range) = item?;
            let first = h.base_offset as u64;
            if first >= run.next_offset {
                break;
            }
            if first >= offset {
                boundary |= first == offset;
                removed += range.len() as u64;
            } else if (h.next_offset() as u64) > offset {
                return Err(LogError::InvalidOperation(format!(
                    "cannot truncate to {offset}: it is inside the batch [{first}, {})",
                    h.next_offset()
                )));
            } else {
                max_timestamp = max_timestamp.max(h.max_timestamp);
            }
        }
    }
    if !boundary {
        return Err(LogError::InvalidOperation(format!(
            "cannot truncate to {offset}: not the first offset of a local batch"
        )));
    }
    // Records of the segment below the local start are gone (retention or
    // release); their timestamps are unknown, so the segment keeps its
    // previous maximum as an upper bound rather than guess low.
    if segment.base_offset < local_start {
        max_timestamp = max_timestamp.max(segment.max_timestamp);
    }
    Ok(Some(CutSegment {
        bytes: segment.bytes.saturating_sub(removed),
        max_timestamp,
    }))
}
