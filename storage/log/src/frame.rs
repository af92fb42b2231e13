//! The journal's on-disk framing, as pure functions over byte slices (no I/O).
//!
//! A journal file is a 16-byte file header followed by frames:
//!
//! ```text
//! file header  magic "STRATAJ1" (8) | file sequence u64
//! frame        body_len u32 | crc32c(body) u32 | body
//! body         kind u8 | partition id u64 | payload
//! ```
//!
//! The first frame of every file is a `Snapshot` of all partitions' metadata,
//! so recovery replays only the newest file. A file that is closed gets a
//! `Footer` frame (the run index of everything in the file) and a 16-byte
//! trailer `footer position u64 | "STRATAFT"`, so reopening reads the index of
//! older files without scanning them. All integers are big-endian.

use serde::{Deserialize, Serialize};

use crate::config::SegmentConfig;
use crate::state::PartitionMeta;

pub(crate) const FILE_MAGIC: &[u8; 8] = b"STRATAJ1";
pub(crate) const TRAILER_MAGIC: &[u8; 8] = b"STRATAFT";
pub(crate) const FILE_HEADER_LEN: usize = 16;
pub(crate) const TRAILER_LEN: usize = 16;
/// body_len + crc.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// kind + partition id.
pub(crate) const BODY_PREFIX_LEN: usize = 9;
/// Offset of the record batches inside a `Batches` frame: header, prefix, append time.
pub(crate) const BATCHES_PAYLOAD_START: usize = FRAME_HEADER_LEN + BODY_PREFIX_LEN + 8;
/// No frame is larger than this; a length beyond it is garbage, not a reason to allocate.
pub(crate) const MAX_FRAME_BODY: usize = 1 << 30;
/// Bytes of one footer entry.
const FOOTER_ENTRY_LEN: usize = 44;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FrameKind {
    Batches = 1,
    Control = 2,
    Snapshot = 3,
    Footer = 4,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => FrameKind::Batches,
            2 => FrameKind::Control,
            3 => FrameKind::Snapshot,
            4 => FrameKind::Footer,
            _ => return None,
        })
    }
}

/// A change to a partition's metadata, journaled in order with its batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ControlOp {
    Create {
        key: String,
        config: SegmentConfig,
        /// The partition's first local offset: 0, or where its history in
        /// object storage ends when the local log is rebuilt without it.
        #[serde(default)]
        start_offset: u64,
        /// The partition's first offset in any tier (at most `start_offset`).
        #[serde(default)]
        log_start: u64,
    },
    Delete,
    /// Drop everything at and after this offset (a batch boundary). The
    /// committer reads the cut and records what remains of the segment it
    /// falls in, so replay needs no read.
    Truncate {
        offset: u64,
        #[serde(default)]
        cut_segment: Option<CutSegment>,
    },
    /// Advance the log start offset (retention, DeleteRecords).
    AdvanceStart {
        offset: u64,
    },
    /// Seal the active segment at this offset (its end).
    Seal {
        offset: u64,
    },
    /// The sealed segment starting here is in object storage.
    Offloaded {
        base_offset: u64,
    },
    /// Local copies below this offset (all offloaded) may go.
    ReleaseLocal {
        offset: u64,
    },
    SetConfig {
        config: SegmentConfig,
    },
    /// A new leader epoch starts at the partition's end, before any batch of
    /// it: what a replica records once its log holds everything the epoch's
    /// leader had when it was elected (see `Partition::begin_epoch`).
    BeginEpoch {
        epoch: i32,
        offset: u64,
    },
}

/// What remains of the segment a truncation cuts: its batch bytes and largest timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CutSegment {
    pub bytes: u64,
    pub max_timestamp: i64,
}

/// Metadata of every partition as of the start of a journal file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub next_partition_id: u64,
    pub partitions: Vec<PartitionMeta>,
}

/// One contiguous run of a partition's batches: one `Batches` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FooterRun {
    pub partition: u64,
    pub base_offset: u64,
    pub next_offset: u64,
    pub max_timestamp: i64,
    pub position: u64,
    pub frame_len: u32,
}

#[derive(Debug)]
pub(crate) enum Frame<'a> {
    Batches {
        partition: u64,
        append_ms: i64,
        batches: &'a [u8],
    },
    Control {
        partition: u64,
        op: ControlOp,
    },
    Snapshot(Snapshot),
    Footer(Vec<FooterRun>),
}

/// Why bytes at a position are not a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes than the frame claims: a torn write at the tail.
    Incomplete,
    /// The bytes are there but wrong.
    Invalid(String),
}

/// A growable buffer frames are encoded into: a `Vec<u8>`, or the
/// committer's `BytesMut` (whose commits are frozen and shared with readers).
pub(crate) trait FrameBuf: std::ops::DerefMut<Target = [u8]> {
    fn put_bytes(&mut self, bytes: &[u8]);
}

impl FrameBuf for Vec<u8> {
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl FrameBuf for bytes::BytesMut {
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Starts a frame at the end of `buf`; finish it with [`finish_frame`].
pub(crate) fn begin_frame(buf: &mut impl FrameBuf, kind: FrameKind, partition: u64) -> usize {
    let start = buf.len();
    buf.put_bytes(&[0u8; FRAME_HEADER_LEN]);
    buf.put_bytes(&[kind as u8]);
    buf.put_bytes(&partition.to_be_bytes());
    start
}

/// Fills in the length and checksum of the frame begun at `start`.
pub(crate) fn finish_frame(buf: &mut [u8], start: usize) {
    let body_start = start + FRAME_HEADER_LEN;
    let body_len = (buf.len() - body_start) as u32;
    let crc = crc32c::crc32c(&buf[body_start..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

pub(crate) fn encode_file_header(buf: &mut Vec<u8>, seq: u64) {
    buf.extend_from_slice(FILE_MAGIC);
    buf.extend_from_slice(&seq.to_be_bytes());
}

pub(crate) fn decode_file_header(buf: &[u8]) -> Result<u64, FrameError> {
    let header = buf.get(..FILE_HEADER_LEN).ok_or(FrameError::Incomplete)?;
    if &header[..8] != FILE_MAGIC {
        return Err(FrameError::Invalid("bad journal file magic".into()));
    }
    Ok(be_u64(&header[8..]))
}

pub(crate) fn encode_control(buf: &mut impl FrameBuf, partition: u64, op: &ControlOp) {
    let start = begin_frame(buf, FrameKind::Control, partition);
    // Serializing a plain enum of integers and strings cannot fail.
    let json = serde_json::to_vec(op).unwrap_or_default();
    buf.put_bytes(&json);
    finish_frame(buf, start);
}

pub(crate) fn encode_snapshot(buf: &mut Vec<u8>, snapshot: &Snapshot) {
    let start = begin_frame(buf, FrameKind::Snapshot, 0);
    let json = serde_json::to_vec(snapshot).unwrap_or_default();
    buf.extend_from_slice(&json);
    finish_frame(buf, start);
}

/// Writes the footer frame and the trailer that points at it.
pub(crate) fn encode_footer(buf: &mut Vec<u8>, footer_position: u64, runs: &[FooterRun]) {
    let start = begin_frame(buf, FrameKind::Footer, 0);
    buf.extend_from_slice(&(runs.len() as u64).to_be_bytes());
    for run in runs {
        buf.extend_from_slice(&run.partition.to_be_bytes());
        buf.extend_from_slice(&run.base_offset.to_be_bytes());
        buf.extend_from_slice(&run.next_offset.to_be_bytes());
        buf.extend_from_slice(&run.max_timestamp.to_be_bytes());
        buf.extend_from_slice(&run.position.to_be_bytes());
        buf.extend_from_slice(&run.frame_len.to_be_bytes());
    }
    finish_frame(buf, start);
    buf.extend_from_slice(&footer_position.to_be_bytes());
    buf.extend_from_slice(TRAILER_MAGIC);
}

/// The footer position named by a file's trailer, if the file ends with one.
pub(crate) fn decode_trailer(file: &[u8]) -> Option<u64> {
    let tail = file.get(file.len().checked_sub(TRAILER_LEN)?..)?;
    if &tail[8..] != TRAILER_MAGIC {
        return None;
    }
    Some(be_u64(&tail[..8]))
}

/// Decodes the frame at the start of `buf`, returning it and its total length.
pub(crate) fn decode_frame(buf: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    let header = buf.get(..FRAME_HEADER_LEN).ok_or(FrameError::Incomplete)?;
    let body_len = be_u32(&header[..4]) as usize;
    let crc = be_u32(&header[4..8]);
    if !(BODY_PREFIX_LEN..=MAX_FRAME_BODY).contains(&body_len) {
        return Err(FrameError::Invalid(format!(
            "frame length {body_len} out of range"
        )));
    }
    let total = FRAME_HEADER_LEN + body_len;
    let body = buf
        .get(FRAME_HEADER_LEN..total)
        .ok_or(FrameError::Incomplete)?;
    let actual = crc32c::crc32c(body);
    if actual != crc {
        return Err(FrameError::Invalid(format!(
            "frame checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
        )));
    }
    let kind = FrameKind::from_u8(body[0])
        .ok_or_else(|| FrameError::Invalid(format!("unknown frame kind {}", body[0])))?;
    let partition = be_u64(&body[1..9]);
    let payload = &body[BODY_PREFIX_LEN..];
    let frame = match kind {
        FrameKind::Batches => {
            let append_ms =
                payload.get(..8).map(be_u64).ok_or_else(|| {
                    FrameError::Invalid("batches frame without append time".into())
                })? as i64;
            Frame::Batches {
                partition,
                append_ms,
                batches: &payload[8..],
            }
        }
        FrameKind::Control => {
            let op = serde_json::from_slice(payload)
                .map_err(|e| FrameError::Invalid(format!("bad control frame: {e}")))?;
            Frame::Control { partition, op }
        }
        FrameKind::Snapshot => Frame::Snapshot(
            serde_json::from_slice(payload)
                .map_err(|e| FrameError::Invalid(format!("bad snapshot frame: {e}")))?,
        ),
        FrameKind::Footer => Frame::Footer(decode_footer_runs(payload)?),
    };
    Ok((frame, total))
}

fn decode_footer_runs(payload: &[u8]) -> Result<Vec<FooterRun>, FrameError> {
    let count = payload.get(..8).map(be_u64).ok_or(FrameError::Incomplete)? as usize;
    let entries = &payload[8..];
    if count.checked_mul(FOOTER_ENTRY_LEN) != Some(entries.len()) {
        return Err(FrameError::Invalid(
            "footer length does not match its count".into(),
        ));
    }
    Ok(entries
        .chunks_exact(FOOTER_ENTRY_LEN)
        .map(|e| FooterRun {
            partition: be_u64(&e[0..8]),
            base_offset: be_u64(&e[8..16]),
            next_offset: be_u64(&e[16..24]),
            max_timestamp: be_u64(&e[24..32]) as i64,
            position: be_u64(&e[32..40]),
            frame_len: be_u32(&e[40..44]),
        })
        .collect())
}

/// Reads a big-endian u64 from the first 8 bytes; callers pass slices of at least 8.
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frame_round_trips() {
        let mut buf = Vec::new();
        let op = ControlOp::Truncate {
            offset: 42,
            cut_segment: Some(CutSegment {
                bytes: 7,
                max_timestamp: 9,
            }),
        };
        encode_control(&mut buf, 7, &op);
        let (frame, len) = decode_frame(&buf).unwrap();
        assert_eq!(len, buf.len());
        match frame {
            Frame::Control { partition, op: got } => {
                assert_eq!(partition, 7);
                assert_eq!(got, op);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }

    #[test]
    fn footer_round_trips_and_trailer_points_at_it() {
        let runs = vec![
            FooterRun {
                partition: 1,
                base_offset: 0,
                next_offset: 10,
                max_timestamp: 5,
                position: 16,
                frame_len: 100,
            },
            FooterRun {
                partition: 2,
                base_offset: 3,
                next_offset: 4,
                max_timestamp: -1,
                position: 116,
                frame_len: 90,
            },
        ];
        let mut buf = vec![0u8; 50];
        encode_footer(&mut buf, 50, &runs);
        assert_eq!(decode_trailer(&buf), Some(50));
        let (frame, _) = decode_frame(&buf[50..]).unwrap();
        match frame {
            Frame::Footer(got) => assert_eq!(got, runs),
            other => panic!("unexpected frame {other:?}"),
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected_without_panic() {
        let mut buf = Vec::new();
        encode_control(&mut buf, 3, &ControlOp::Seal { offset: 9 });
        for cut in 0..buf.len() {
            assert!(decode_frame(&buf[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode_frame(&bad).is_err(), "flip at {i}");
        }
    }
}
