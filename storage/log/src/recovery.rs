//! Opening the log: rebuilding every partition's state and run index.
//!
//! 1. The newest journal file whose first frame is a valid snapshot is the
//!    current file. A newer file with a torn snapshot is the remains of a
//!    crash during a roll (nothing else was ever written to it) and is removed.
//! 2. Older files contribute their run index from their footer (read with two
//!    small reads; a file without a valid footer is scanned instead).
//! 3. The snapshot's partitions take those runs (a later run at a lower
//!    offset replaces what a truncation cut), trimmed to each partition's
//!    `[local_start, next_offset)`.
//! 4. The frames after the snapshot in the current file are replayed through
//!    the same state functions the committer uses. The first frame that does
//!    not verify ends the log: a torn tail is cut off. If valid frames start
//!    further past that point than one commit can span, the damage is not a
//!    torn tail but corruption in acknowledged data, and opening fails with
//!    its location.
//!
//! Only the current file is read in full, so recovery time is bounded by
//! `journal_file_bytes`, not by the size of the journal.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::batch;
use crate::config::{Durability, LogConfig};
use crate::error::{LogError, Result};
use crate::frame::{
    self, BATCHES_PAYLOAD_START, FILE_HEADER_LEN, FooterRun, Frame, Snapshot, TRAILER_LEN,
};
use crate::journal::{PartitionShared, journal_path, parse_journal_name};
use crate::state::{AppendedRun, EpochStart, PartitionMeta, PartitionState, Run};

pub(crate) struct Recovered {
    pub current: Arc<File>,
    pub seq: u64,
    pub written: u64,
    pub footer: Vec<FooterRun>,
    pub older: Vec<(u64, Arc<File>)>,
    pub partitions: HashMap<u64, Arc<PartitionShared>>,
    pub next_partition_id: u64,
}

/// Creates journal file `seq` holding its header and `snapshot`, durably.
pub(crate) fn create_journal_file(
    dir: &Path,
    seq: u64,
    snapshot: &Snapshot,
) -> Result<(File, u64)> {
    let path = journal_path(dir, seq);
    let mut head = Vec::new();
    frame::encode_file_header(&mut head, seq);
    frame::encode_snapshot(&mut head, snapshot);
    let created = (|| -> std::io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all_at(&head, 0)?;
        file.sync_data()?;
        File::open(dir)?.sync_all()?;
        Ok(file)
    })();
    match created {
        Ok(f) => Ok((f, head.len() as u64)),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(LogError::io(path, e))
        }
    }
}

pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered> {
    let mut seqs = list_journal_files(dir)?;
    let (seq, bytes, snapshot, replay_from) = loop {
        let Some(&seq) = seqs.last() else {
            if let Some(missing) = seqs.first() {
                return Err(LogError::corrupt(
                    journal_path(dir, *missing),
                    0,
                    "no journal file has a snapshot",
                ));
            }
            let (file, written) = create_journal_file(dir, 1, &Snapshot::default())?;
            return Ok(Recovered {
                current: Arc::new(file),
                seq: 1,
                written,
                footer: Vec::new(),
                older: Vec::new(),
                partitions: HashMap::new(),
                next_partition_id: 1,
            });
        };
        let path = journal_path(dir, seq);
        let bytes = std::fs::read(&path).map_err(|e| LogError::io(&path, e))?;
        match read_head(&bytes, seq) {
            Ok((snapshot, end)) => break (seq, bytes, snapshot, end),
            Err(reason) if is_torn_head(&bytes) && seqs.len() > 1 => {
                warn!(file = %path.display(), %reason, "removing a journal file whose creation was cut short");
                std::fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
                seqs.pop();
            }
            Err(reason) => return Err(LogError::corrupt(path, 0, reason)),
        }
    };

    let mut states: HashMap<u64, PartitionState> = snapshot
        .partitions
        .into_iter()
        .map(|m| (m.id, PartitionState::new(m)))
        .collect();
    let mut next_partition_id = snapshot.next_partition_id;
    let mut older = Vec::new();
    for &old in &seqs[..seqs.len() - 1] {
        let path = journal_path(dir, old);
        let file = File::open(&path).map_err(|e| LogError::io(&path, e))?;
        let runs = match read_footer(&file) {
            Some(runs) => runs,
            None => {
                warn!(file = %path.display(), "journal file has no valid footer; scanning it");
                scan_runs(&path)?
            }
        };
        for r in runs {
            if let Some(state) = states.get_mut(&r.partition) {
                attach_run(state, old, &r);
            }
        }
        older.push((old, Arc::new(file)));
    }
    for state in states.values_mut() {
        trim_to_bounds(state);
    }

    let path = journal_path(dir, seq);
    let mut footer = Vec::new();
    let mut pos = replay_from;
    let mut closed = false;
    loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            break;
        }
        let (frame, len) = match frame::decode_frame(rest) {
            Ok(ok) => ok,
            Err(e) => {
                let bound = torn_tail_bound(config);
                if let Some(valid) = valid_frame_beyond(&bytes, pos, next_partition_id, bound) {
                    return Err(LogError::corrupt(
                        &path,
                        pos as u64,
                        format!("{e:?}, yet acknowledged frames follow at byte {valid}"),
                    ));
                }
                warn!(file = %path.display(), position = pos, dropped = rest.len(), reason = ?e, "cutting off a torn journal tail");
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| LogError::io(&path, e))?;
                file.set_len(pos as u64)
                    .map_err(|e| LogError::io(&path, e))?;
                file.sync_all().map_err(|e| LogError::io(&path, e))?;
                break;
            }
        };
        let at = pos as u64;
        let corrupt = |reason: String| LogError::corrupt(&path, at, reason);
        match frame {
            Frame::Batches {
                partition,
                append_ms,
                batches,
            } => {
                let state = states.get_mut(&partition).ok_or_else(|| {
                    corrupt(format!("batches for unknown partition id {partition}"))
                })?;
                let appended = run_from_batches(
                    batches,
                    append_ms,
                    seq,
                    at,
                    len as u32,
                    state.meta.last_epoch(),
                )
                .map_err(&corrupt)?;
                footer.push(FooterRun {
                    partition,
                    base_offset: appended.run.base_offset,
                    next_offset: appended.run.next_offset,
                    max_timestamp: appended.run.max_timestamp,
                    position: at,
                    frame_len: len as u32,
                });
                state.apply_run(appended).map_err(&corrupt)?;
            }
            Frame::Control { partition, op } => match op {
                frame::ControlOp::Create {
                    key,
                    config,
                    start_offset,
                    log_start,
                } => {
                    states.insert(
                        partition,
                        PartitionState::new(PartitionMeta::starting_at(
                            partition,
                            key,
                            config,
                            log_start,
                            start_offset,
                        )),
                    );
                    next_partition_id = next_partition_id.max(partition + 1);
                }
                frame::ControlOp::Delete => {
                    states.remove(&partition);
                }
                op => {
                    let state = states.get_mut(&partition).ok_or_else(|| {
                        corrupt(format!("change to unknown partition id {partition}"))
                    })?;
                    state.apply_control(&op).map_err(&corrupt)?;
                }
            },
            Frame::Footer(_) => {
                closed = true;
                break;
            }
            Frame::Snapshot(_) => {
                return Err(corrupt("a second snapshot inside a journal file".into()));
            }
        }
        pos += len;
    }

    for state in states.values() {
        state.check_contiguous().map_err(|e| {
            LogError::corrupt(&path, 0, format!("partition {:?}: {e}", state.meta.key))
        })?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io(&path, e))?;
    let mut recovered = Recovered {
        current: Arc::new(file),
        seq,
        written: pos as u64,
        footer,
        older,
        partitions: HashMap::new(),
        next_partition_id,
    };
    if closed {
        // The file was closed but its successor never made it: start that now.
        let mut metas: Vec<PartitionMeta> = states.values().map(|s| s.meta.clone()).collect();
        metas.sort_by_key(|m| m.id);
        let snapshot = Snapshot {
            next_partition_id,
            partitions: metas,
        };
        let (file, written) = create_journal_file(dir, seq + 1, &snapshot)?;
        let previous = std::mem::replace(&mut recovered.current, Arc::new(file));
        recovered.older.push((seq, previous));
        recovered.seq = seq + 1;
        recovered.written = written;
        recovered.footer.clear();
    }
    recovered.partitions = states
        .into_iter()
        .map(|(id, s)| (id, PartitionShared::new(s)))
        .collect();
    info!(
        file = recovered.seq,
        partitions = recovered.partitions.len(),
        journal_files = recovered.older.len() + 1,
        "journal recovered"
    );
    Ok(recovered)
}

fn list_journal_files(dir: &Path) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_journal_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Checks the file header and decodes the snapshot; returns where frames start.
fn read_head(bytes: &[u8], seq: u64) -> Result<(Snapshot, usize), String> {
    let found = frame::decode_file_header(bytes).map_err(|e| format!("file header: {e:?}"))?;
    if found != seq {
        return Err(format!("file header names sequence {found}"));
    }
    match frame::decode_frame(&bytes[FILE_HEADER_LEN..]) {
        Ok((Frame::Snapshot(s), len)) => Ok((s, FILE_HEADER_LEN + len)),
        Ok(_) => Err("first frame is not a snapshot".into()),
        Err(e) => Err(format!("snapshot: {e:?}")),
    }
}

/// A head that a crash during file creation could have left: the head is
/// made durable before any frame is written, so such a file holds no valid
/// frame at all. Its lengths cannot be trusted, so look at every position.
fn is_torn_head(bytes: &[u8]) -> bool {
    frame::decode_frame(bytes.get(FILE_HEADER_LEN..).unwrap_or_default()).is_err()
        && valid_frame_beyond(bytes, FILE_HEADER_LEN, u64::MAX, 0).is_none()
}

/// The runs listed in a closed file's footer, or `None` if it has none that verifies.
fn read_footer(file: &File) -> Option<Vec<FooterRun>> {
    let len = file.metadata().ok()?.len();
    let mut trailer = [0u8; TRAILER_LEN];
    file.read_exact_at(&mut trailer, len.checked_sub(TRAILER_LEN as u64)?)
        .ok()?;
    let footer_pos = frame::decode_trailer(&trailer)?;
    let footer_len = usize::try_from(
        len.checked_sub(TRAILER_LEN as u64)?
            .checked_sub(footer_pos)?,
    )
    .ok()?;
    if footer_len > frame::MAX_FRAME_BODY {
        return None;
    }
    let mut buf = vec![0u8; footer_len];
    file.read_exact_at(&mut buf, footer_pos).ok()?;
    match frame::decode_frame(&buf) {
        Ok((Frame::Footer(runs), n)) if n == footer_len => Some(runs),
        _ => None,
    }
}

/// Rebuilds the runs of a closed file that lost its footer, by reading every frame.
fn scan_runs(path: &Path) -> Result<Vec<FooterRun>> {
    let bytes = std::fs::read(path).map_err(|e| LogError::io(path, e))?;
    let seq = parse_journal_name(
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default(),
    )
    .unwrap_or(0);
    let (_, mut pos) = read_head(&bytes, seq).map_err(|e| LogError::corrupt(path, 0, e))?;
    let mut runs = Vec::new();
    while pos < bytes.len() {
        let (frame, len) = match frame::decode_frame(&bytes[pos..]) {
            Ok(ok) => ok,
            // Only the footer can follow the last data frame of a closed file; a
            // footer torn by a crash or a full disk is just a lost index.
            Err(_) if valid_frame_beyond(&bytes, pos, u64::MAX, 0).is_none() => break,
            Err(e) => return Err(LogError::corrupt(path, pos as u64, format!("{e:?}"))),
        };
        match frame {
            Frame::Batches {
                partition,
                append_ms,
                batches,
            } => {
                let a = run_from_batches(batches, append_ms, seq, pos as u64, len as u32, None)
                    .map_err(|e| LogError::corrupt(path, pos as u64, e))?;
                runs.push(FooterRun {
                    partition,
                    base_offset: a.run.base_offset,
                    next_offset: a.run.next_offset,
                    max_timestamp: a.run.max_timestamp,
                    position: pos as u64,
                    frame_len: len as u32,
                });
            }
            Frame::Footer(_) => break,
            _ => {}
        }
        pos += len;
    }
    Ok(runs)
}

/// Describes a batches frame as the run it adds.
pub(crate) fn run_from_batches(
    batches: &[u8],
    append_ms: i64,
    file: u64,
    position: u64,
    frame_len: u32,
    mut last_epoch: Option<i32>,
) -> Result<AppendedRun, String> {
    let mut base = None;
    let mut next = 0u64;
    let mut max_timestamp = -1i64;
    let mut epoch_changes = Vec::new();
    for item in batch::batches(batches) {
        let (h, _) = item.map_err(|e| format!("batch in frame: {e}"))?;
        let first =
            u64::try_from(h.base_offset).map_err(|_| "negative batch offset".to_string())?;
        if base.is_some() && first != next {
            return Err(format!(
                "batch at offset {first} does not follow offset {next}"
            ));
        }
        base.get_or_insert(first);
        next = u64::try_from(h.next_offset()).map_err(|_| "batch offset overflow".to_string())?;
        max_timestamp = max_timestamp.max(h.max_timestamp);
        if last_epoch != Some(h.partition_leader_epoch) {
            epoch_changes.push(EpochStart {
                epoch: h.partition_leader_epoch,
                start_offset: first,
            });
            last_epoch = Some(h.partition_leader_epoch);
        }
    }
    let base_offset = base.ok_or_else(|| "batches frame without batches".to_string())?;
    Ok(AppendedRun {
        run: Run {
            base_offset,
            next_offset: next,
            max_timestamp,
            cum_max_timestamp: max_timestamp,
            file,
            position,
            frame_len,
        },
        append_ms,
        batch_bytes: (frame_len as usize).saturating_sub(BATCHES_PAYLOAD_START) as u64,
        epoch_changes,
        // Recovered runs are read from disk (and verified) when needed.
        frame: None,
    })
}

/// Adds a run from an older file; a run starting at or below runs already
/// there means the partition was truncated and rewritten from that offset.
fn attach_run(state: &mut PartitionState, file: u64, r: &FooterRun) {
    while state
        .runs
        .back()
        .is_some_and(|b| b.base_offset >= r.base_offset)
    {
        state.runs.pop_back();
    }
    if let Some(back) = state.runs.back_mut() {
        back.next_offset = back.next_offset.min(r.base_offset);
    }
    state.runs.push_back(Run {
        base_offset: r.base_offset,
        next_offset: r.next_offset,
        max_timestamp: r.max_timestamp,
        cum_max_timestamp: r.max_timestamp,
        file,
        position: r.position,
        frame_len: r.frame_len,
    });
}

/// Keeps only runs inside `[local_start, next_offset)` as of the snapshot, and
/// recomputes the running maximum timestamps.
fn trim_to_bounds(state: &mut PartitionState) {
    let (start, end) = (state.meta.local_start, state.meta.next_offset);
    while state.runs.front().is_some_and(|r| r.next_offset <= start) {
        state.runs.pop_front();
    }
    while state.runs.back().is_some_and(|r| r.base_offset >= end) {
        state.runs.pop_back();
    }
    if let Some(back) = state.runs.back_mut() {
        back.next_offset = back.next_offset.min(end);
    }
    let mut cum = i64::MIN;
    for r in state.runs.iter_mut() {
        cum = cum.max(r.max_timestamp);
        r.cum_max_timestamp = cum;
    }
}

/// How far past a bad frame a torn commit can reach: one commit is at most
/// `max_commit_bytes` plus one append. In write mode any unflushed amount can
/// be torn, so every bad frame in the current file is taken as its end.
fn torn_tail_bound(config: &LogConfig) -> usize {
    match config.durability {
        Durability::Fsync => config.max_commit_bytes + 2 * config.max_batch_bytes + 64 * 1024,
        Durability::Write => usize::MAX,
    }
}

/// Looks for a valid frame after the bad one at `bad`, following frames
/// until one starts `bound` bytes or more past `bad`. Returns its position.
fn valid_frame_beyond(
    bytes: &[u8],
    bad: usize,
    next_partition_id: u64,
    bound: usize,
) -> Option<usize> {
    let limit = bad.checked_add(bound)?;
    let mut pos = bad + 1;
    while pos + frame::FRAME_HEADER_LEN + frame::BODY_PREFIX_LEN <= bytes.len() {
        if plausible_frame(&bytes[pos..], next_partition_id)
            && let Ok((_, len)) = frame::decode_frame(&bytes[pos..])
        {
            // Aligned again: walk frame by frame.
            let mut at = pos;
            let mut step = len;
            loop {
                if at >= limit {
                    return Some(at);
                }
                at += step;
                match bytes.get(at..).map(frame::decode_frame) {
                    Some(Ok((_, n))) => step = n,
                    _ => break,
                }
            }
            pos = at + 1;
            continue;
        }
        pos += 1;
    }
    None
}

/// Cheap filter before a checksum: a known kind, a length that fits, a known
/// partition id (any id when `next_partition_id` is `u64::MAX`).
fn plausible_frame(b: &[u8], next_partition_id: u64) -> bool {
    let body = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let kind = b[8];
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[9..17]);
    (1..=4).contains(&kind)
        && body >= frame::BODY_PREFIX_LEN
        && body + frame::FRAME_HEADER_LEN <= b.len()
        && (next_partition_id == u64::MAX || u64::from_be_bytes(id) < next_partition_id.max(1))
}
