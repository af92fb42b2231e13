//! Reads below a partition's local copy, served from segment objects.

use std::sync::Arc;

use bytes::Bytes;
use strata_api::{ApiError, ErrorCode};
use strata_tier::remote::RemoteSegment;

use super::{OPEN_SEGMENTS, Tier};
use crate::metadata::RemoteSegmentRef;
use crate::metrics;

impl Tier {
    /// Whole batches from the segment object holding `offset`, up to
    /// `max_bytes` (at least one batch); with the offset to read next.
    pub async fn read(
        &self,
        manifest: &[RemoteSegmentRef],
        offset: u64,
        max_bytes: usize,
    ) -> Result<(Vec<Bytes>, u64), ApiError> {
        let Some(entry) = manifest
            .iter()
            .find(|m| m.base_offset <= offset && offset < m.end_offset)
        else {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!("offset {offset} is below the local log but in no segment object"),
            ));
        };
        let segment = self.open_segment(entry).await?;
        let (chunks, next) = segment
            .read_from(offset, max_bytes)
            .await
            .map_err(|e| tier_error(&entry.key, e))?;
        let bytes: usize = chunks.iter().map(Bytes::len).sum();
        metrics::REMOTE_READ_BYTES.inc_by(bytes as u64);
        Ok((chunks, next))
    }

    async fn open_segment(&self, entry: &RemoteSegmentRef) -> Result<Arc<RemoteSegment>, ApiError> {
        if let Some(s) = self.open.lock().get(&entry.key) {
            return Ok(s.clone());
        }
        let path = object_store::path::Path::from(entry.key.as_str());
        let segment = RemoteSegment::open(self.handle.store().clone(), path, entry.size)
            .await
            .map_err(|e| tier_error(&entry.key, e))?;
        let segment = Arc::new(segment);
        let mut open = self.open.lock();
        if open.len() >= OPEN_SEGMENTS {
            // Crude but bounded: start over rather than track recency.
            open.clear();
        }
        open.insert(entry.key.clone(), segment.clone());
        Ok(segment)
    }
}

/// A bucket failure as clients see it: retryable when the store is
/// unreachable, internal (and loud) when an object is corrupt.
fn tier_error(key: &str, e: strata_tier::error::TierError) -> ApiError {
    if e.retryable() {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("object storage is unavailable reading {key}: {e}"),
        )
    } else {
        tracing::error!(key, error = %e, "cannot serve a segment object");
        metrics::REMOTE_READ_ERRORS.inc();
        ApiError::new(ErrorCode::Internal, format!("cannot read {key}: {e}"))
    }
}
