//! Multipart uploads through the resilience layer.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, MultipartUpload, PutPayload, PutResult, UploadPart};
use parking_lot::Mutex;

use super::Shared;
use crate::store::STORE;

/// A multipart upload through the inner store's [`MultipartStore`]: every
/// request retried, parts under their own part numbers.
#[derive(Debug)]
pub(super) struct RetriedUpload {
    pub(super) state: Arc<UploadState>,
    pub(super) next_part: usize,
}

pub(super) struct UploadState {
    pub(super) shared: Arc<Shared>,
    pub(super) multipart: Arc<dyn MultipartStore>,
    pub(super) location: Path,
    pub(super) id: MultipartId,
    /// The uploaded parts, by part number.
    pub(super) parts: Mutex<Vec<Option<PartId>>>,
}

impl fmt::Debug for UploadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadState")
            .field("location", &self.location)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for RetriedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let state = self.state.clone();
        let index = self.next_part;
        self.next_part += 1;
        Box::pin(async move {
            let s = &state;
            let timeout = s.shared.config.timeout_for(data.content_length() as u64);
            let part = s
                .shared
                .call("put_part", Some(&s.location), timeout, || {
                    s.multipart
                        .put_part(&s.location, &s.id, index, data.clone())
                })
                .await?;
            let mut parts = s.parts.lock();
            if parts.len() <= index {
                parts.resize(index + 1, None);
            }
            parts[index] = Some(part);
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let s = &self.state;
        let parts = {
            let parts = s.parts.lock();
            let done: Option<Vec<PartId>> = parts.iter().cloned().collect();
            match done {
                Some(done) if done.len() == self.next_part => done,
                _ => {
                    return Err(object_store::Error::Generic {
                        store: STORE,
                        source: format!(
                            "multipart upload of `{}` completed before all its {} parts were uploaded",
                            s.location, self.next_part
                        )
                        .into(),
                    });
                }
            }
        };
        let timeout = s.shared.config.timeout;
        s.shared
            .call("complete_multipart", Some(&s.location), timeout, || {
                s.multipart
                    .complete_multipart(&s.location, &s.id, parts.clone())
            })
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let s = &self.state;
        let timeout = s.shared.config.timeout;
        s.shared
            .call("abort_multipart", Some(&s.location), timeout, || {
                s.multipart.abort_multipart(&s.location, &s.id)
            })
            .await
    }
}

/// The inner store's own multipart upload, each request with a timeout but
/// not retried (used when the inner store is no [`MultipartStore`]).
#[derive(Debug)]
pub(super) struct TimedUpload {
    pub(super) upload: Box<dyn MultipartUpload>,
    pub(super) shared: Arc<Shared>,
}

/// `fut` as a call of one attempt.
async fn once<T>(
    shared: &Shared,
    op: &'static str,
    timeout: Duration,
    fut: impl Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    let mut fut = Some(fut);
    let attempt = || fut.take().expect("one attempt only");
    shared.call_n(op, None, timeout, 1, attempt).await
}

#[async_trait]
impl MultipartUpload for TimedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let timeout = self.shared.config.timeout_for(data.content_length() as u64);
        let part = self.upload.put_part(data);
        let shared = self.shared.clone();
        Box::pin(async move { once(&shared, "put_part", timeout, part).await })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let timeout = self.shared.config.timeout;
        once(
            &self.shared,
            "complete_multipart",
            timeout,
            self.upload.complete(),
        )
        .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let timeout = self.shared.config.timeout;
        once(
            &self.shared,
            "abort_multipart",
            timeout,
            self.upload.abort(),
        )
        .await
    }
}
