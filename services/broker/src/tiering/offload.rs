//! The offload pass: upload sealed segments, commit them to the manifest,
//! mark them offloaded in the log, release local copies by local retention.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_api::{ApiError, ErrorCode};
use strata_log::{Log, OffloadOp, Partition, SegmentInfo};
use strata_tier::keys;
use strata_tier::segment::{EpochStart, SegmentBuilder, SegmentFields};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Tier;
use super::policy::release_point;
use crate::broker::{now_ms, partition_key};
use crate::errors::from_log;
use crate::metadata::{MetadataStore, RemoteSegmentRef, TopicMeta};
use crate::metrics;

/// Offload bookkeeping operations gathered before they are applied.
const BOOKKEEPING_BATCH: usize = 64;

/// Objects larger than this are uploaded in parts of this size.
const MULTIPART_PART_BYTES: usize = 8 * 1024 * 1024;

/// Test hook: with this variable set, the process aborts right after an
/// upload and before its manifest commit, as a crash there would (the
/// tiering tests use it; never set in production).
const CRASH_AFTER_UPLOAD: &str = "STRATA_FAULT_CRASH_AFTER_UPLOAD";

fn error(code: ErrorCode, what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(code, format!("{what}: {e}"))
}

/// The offload backlog: bytes on local disk not yet in the bucket (what
/// the local disk budget limits) and the age of the oldest sealed segment
/// waiting. Measured apart from the uploads, so a pass stuck on an
/// unreachable bucket does not hide a growing backlog.
pub(crate) fn account(log: &Log) -> (u64, i64) {
    let now = now_ms();
    let mut pending: u64 = 0;
    let mut lag_ms: i64 = 0;
    for key in log.partition_keys() {
        let Ok(p) = log.partition(&key) else { continue };
        let (segments, local_start) = (p.segments(), p.offsets().local_start);
        pending += segments
            .iter()
            .filter(|s| !s.offloaded && s.end_offset > local_start)
            .map(|s| s.bytes)
            .sum::<u64>();
        if let Some(oldest) = segments
            .iter()
            .find(|s| s.sealed && !s.offloaded)
            .and_then(|s| s.last_append_ms)
        {
            lag_ms = lag_ms.max(now.saturating_sub(oldest));
        }
    }
    (pending, lag_ms)
}

/// One pass over every partition; ends early once `stop` turns true.
pub(crate) async fn offload_pass(
    log: &Arc<Log>,
    meta: &dyn MetadataStore,
    tier: &Tier,
    stop: &watch::Receiver<bool>,
) {
    let mut topics = Vec::new();
    match meta.tenants().await {
        Ok(tenants) => {
            for tenant in tenants {
                match meta.topics(&tenant).await {
                    Ok(t) => topics.extend(t),
                    Err(e) => warn!(tenant, error = %e, "offload: cannot list topics"),
                }
            }
        }
        Err(e) => {
            warn!(error = %e, "offload: cannot list tenants");
            return;
        }
    }
    let now = now_ms();
    let mut work: Vec<(TopicMeta, String, Partition)> = Vec::new();
    for topic in &topics {
        for partition in 0..topic.partitions {
            let key = partition_key(topic, partition);
            let Ok(p) = log.partition(&key) else { continue };
            let (segments, local_start) = (p.segments(), p.offsets().local_start);
            if segments.iter().any(|s| s.sealed && !s.offloaded)
                || release_point(&segments, local_start, &topic.config, now).is_some()
            {
                work.push((topic.clone(), key, p));
            }
        }
    }

    // The log bookkeeping of every partition (segments marked offloaded,
    // local copies released) is applied in batches: one journal write and
    // fdatasync per batch instead of two per segment, so producers do not
    // queue behind the committer once per uploaded segment.
    let pending: parking_lot::Mutex<Vec<(Partition, OffloadOp)>> =
        parking_lot::Mutex::new(Vec::new());
    futures::stream::iter(work)
        .for_each_concurrent(tier.config.offload_concurrency.max(1), |(topic, key, p)| {
            let pending = &pending;
            async move {
                if *stop.borrow() {
                    return;
                }
                let (ops, result) = offload_partition(meta, tier, &topic, &key, &p).await;
                if let Err(e) = result {
                    warn!(partition = key, error = %e, "offload failed; retrying next pass");
                }
                let batch = {
                    let mut pending = pending.lock();
                    pending.extend(ops.into_iter().map(|op| (p.clone(), op)));
                    (pending.len() >= BOOKKEEPING_BATCH).then(|| std::mem::take(&mut *pending))
                };
                if let Some(batch) = batch {
                    apply_bookkeeping(log, batch).await;
                }
            }
        })
        .await;
    let rest = std::mem::take(&mut *pending.lock());
    apply_bookkeeping(log, rest).await;
}

/// Applies a batch of offload bookkeeping to the log; a failure is retried
/// by the next pass (the manifest says what is already uploaded).
async fn apply_bookkeeping(log: &Log, batch: Vec<(Partition, OffloadOp)>) {
    match log.apply_offload_ops(&batch).await {
        Ok(results) => {
            for ((p, op), result) in batch.iter().zip(results) {
                if let Err(e) = result {
                    warn!(partition = p.key(), ?op, error = %e, "offload bookkeeping failed");
                }
            }
        }
        Err(e) => warn!(error = %e, "offload bookkeeping failed; retrying next pass"),
    }
}

/// Uploads and commits every sealed segment of one partition, oldest first;
/// returns the log bookkeeping that follows (marks for the segments now in
/// the manifest, the release local retention allows), even when a later
/// upload failed.
async fn offload_partition(
    meta: &dyn MetadataStore,
    tier: &Tier,
    topic: &TopicMeta,
    key: &str,
    p: &Partition,
) -> (Vec<OffloadOp>, Result<(), ApiError>) {
    let mut ops = Vec::new();
    let result = upload_and_commit(meta, tier, topic, key, p, &mut ops).await;
    // Release as if the marks were applied: they are, before the release,
    // in the same batch.
    let marked: Vec<u64> = ops
        .iter()
        .filter_map(|op| match op {
            OffloadOp::Offloaded { base_offset } => Some(*base_offset),
            OffloadOp::ReleaseLocal { .. } => None,
        })
        .collect();
    let mut segments = p.segments();
    for s in &mut segments {
        s.offloaded |= marked.contains(&s.base_offset);
    }
    if let Some(up_to) = release_point(&segments, p.offsets().local_start, &topic.config, now_ms())
    {
        ops.push(OffloadOp::ReleaseLocal { up_to });
    }
    (ops, result)
}

/// Uploads the partition's sealed segments not yet in the bucket, then
/// commits them to the manifest in one metadata write (also when a later
/// upload failed: what is uploaded is committed); pushes a mark for every
/// segment the manifest then holds.
async fn upload_and_commit(
    meta: &dyn MetadataStore,
    tier: &Tier,
    topic: &TopicMeta,
    key: &str,
    p: &Partition,
    ops: &mut Vec<OffloadOp>,
) -> Result<(), ApiError> {
    let manifest = meta.manifest(key).await?;
    let manifest_end = manifest.last().map(|m| m.end_offset);
    let mut uploaded: Vec<(SegmentInfo, RemoteSegmentRef, Instant)> = Vec::new();
    let mut failure = None;
    for segment in p.segments() {
        if !segment.sealed || segment.offloaded {
            continue;
        }
        // Replicas seal segments each on their own, so a segment the
        // manifest covers may have other bounds than the object that holds it.
        if manifest_end.is_some_and(|end| segment.end_offset <= end) {
            ops.push(OffloadOp::Offloaded {
                base_offset: segment.base_offset,
            });
            continue;
        }
        // Only the leader uploads, and only what a majority of replicas hold
        // (what can never be truncated away by a new leader).
        if p.is_follower() || segment.end_offset > p.high_watermark() {
            break;
        }
        let from = manifest_end.map_or(segment.base_offset, |end| end.max(segment.base_offset));
        let started = Instant::now();
        match upload(tier, topic, p, &segment, from).await {
            Ok(reference) => uploaded.push((segment, reference, started)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if !uploaded.is_empty() {
        if std::env::var_os(CRASH_AFTER_UPLOAD).is_some() {
            warn!("{CRASH_AFTER_UPLOAD} is set: aborting before the manifest commit");
            std::process::abort();
        }
        let references = uploaded.iter().map(|(_, r, _)| r.clone()).collect();
        meta.commit_segments(key, references).await?;
        for (segment, reference, started) in uploaded {
            metrics::OFFLOADED_BYTES.inc_by(reference.size);
            metrics::OFFLOADED_SEGMENTS.inc();
            metrics::UPLOAD_SECONDS.observe(started.elapsed().as_secs_f64());
            info!(
                partition = key,
                base = segment.base_offset,
                end = segment.end_offset,
                bytes = reference.size,
                "segment offloaded"
            );
            ops.push(OffloadOp::Offloaded {
                base_offset: segment.base_offset,
            });
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Builds the object of the segment's batches from offset `from` on (its
/// base, unless the manifest already holds the start of it, as after a
/// leader change) and puts it under a key of its own.
async fn upload(
    tier: &Tier,
    topic: &TopicMeta,
    p: &Partition,
    segment: &SegmentInfo,
    from: u64,
) -> Result<RemoteSegmentRef, ApiError> {
    let epoch = p.epoch_at(from).unwrap_or(0);
    let fields = SegmentFields {
        tenant: topic.tenant.clone(),
        topic: topic.name.clone(),
        topic_id: topic.id,
        partition: partition_number(p.key()),
        epochs: vec![EpochStart {
            epoch,
            start_offset: from,
        }],
    };
    let mut reader = p.segment_reader(segment.base_offset).map_err(from_log)?;
    let (base, block_bytes) = (from, tier.config.block_bytes);
    let skip_below = from > segment.base_offset;
    // Reading the local segment and building the object are blocking work.
    let object = tokio::task::spawn_blocking(move || {
        let building =
            |e: &dyn std::fmt::Display| error(ErrorCode::Internal, "building a segment object", e);
        let mut builder = SegmentBuilder::with_block_size(base, block_bytes);
        while let Some(chunk) = reader.next_chunk().map_err(from_log)? {
            if !skip_below {
                builder.push_bytes(chunk).map_err(|e| building(&e))?;
                continue;
            }
            // Batches are the same on every replica: the manifest ends on
            // a batch boundary of this segment too.
            for item in strata_log::batch::batches(&chunk) {
                let (header, range) = item.map_err(|e| building(&e))?;
                if u64::try_from(header.base_offset).is_ok_and(|b| b >= base) {
                    builder
                        .push_bytes(chunk.slice(range))
                        .map_err(|e| building(&e))?;
                }
            }
        }
        builder.finish(fields).map_err(|e| building(&e))
    })
    .await
    .map_err(|e| error(ErrorCode::Internal, "segment build task failed", e))??;
    let meta = object.meta.clone();
    let bytes = object.to_bytes();
    let upload_id = keys::new_upload_id();
    let path = keys::segment_key(
        tier.handle.prefix(),
        &topic.tenant,
        &topic.name,
        topic.id,
        meta.partition,
        meta.base_offset,
        meta.end_offset,
        epoch,
        &upload_id,
    );
    put(tier.handle.store().as_ref(), &path, bytes.clone()).await?;
    Ok(RemoteSegmentRef {
        base_offset: meta.base_offset,
        end_offset: meta.end_offset,
        key: path.to_string(),
        size: bytes.len() as u64,
        batch_bytes: segment.bytes,
        record_count: meta.record_count,
        first_timestamp: meta.first_timestamp,
        max_timestamp: meta.max_timestamp,
        last_append_ms: segment.last_append_ms,
        committed_ms: now_ms(),
    })
}

/// One PUT, or a multipart upload for a large object.
async fn put(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    bytes: bytes::Bytes,
) -> Result<(), ApiError> {
    let failed = |e: object_store::Error| {
        metrics::UPLOAD_ERRORS.inc();
        error(ErrorCode::Unavailable, &format!("cannot upload {path}"), e)
    };
    if bytes.len() <= MULTIPART_PART_BYTES {
        store
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map_err(failed)?;
        return Ok(());
    }
    let mut upload = store.put_multipart(path).await.map_err(failed)?;
    let mut offset = 0;
    while offset < bytes.len() {
        let end = (offset + MULTIPART_PART_BYTES).min(bytes.len());
        if let Err(e) = upload
            .put_part(PutPayload::from_bytes(bytes.slice(offset..end)))
            .await
        {
            let _ = upload.abort().await;
            return Err(failed(e));
        }
        offset = end;
    }
    if let Err(e) = upload.complete().await {
        let _ = upload.abort().await;
        return Err(failed(e));
    }
    Ok(())
}

/// The partition number at the end of a log partition key (`tenant/topic/id/N`).
fn partition_number(key: &str) -> u32 {
    key.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
