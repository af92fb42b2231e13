//! The resilience layer every call to the object store goes through:
//! [`Resilient`] wraps the plain store ([`crate::store::open`] always adds it).
//!
//! # What is retried, and how
//!
//! Every call gets a timeout, and transient failures are retried with
//! exponential backoff and jitter (see [`ResilienceConfig`]: 6 attempts,
//! waits from 100 ms doubling to at most 5 s, each drawn from [half, all]).
//!
//! * Transient ([`is_transient`]): our own timeouts; HTTP 5xx, 429 and 408;
//!   S3's `InternalError`/`SlowDown` error bodies; transport failures
//!   (connect, request, timeout, interrupted); I/O errors such as connection
//!   refused/reset/aborted, broken pipe, timed out, unexpected EOF.
//! * Permanent, never retried: not found, already exists, precondition, not
//!   modified, permission denied, unauthenticated, invalid path, not
//!   supported/implemented, any other status (400, 403, ...), response decode
//!   errors, and [`StoreError::Aborted`].
//! * Timeouts: `timeout` (default 30 s) for metadata and small calls; calls
//!   that carry data (put, put part, bounded-range get, `get_ranges`) get
//!   `timeout + bytes / min_throughput` (default 1 MiB/s: a 64 MiB put may
//!   take 94 s). A get of a whole object or an open-ended range times the
//!   response headers only; its body stream then fails if no chunk arrives
//!   within `timeout` (idle timeout), and is not retried once it has started.
//!   Bounded-range gets up to 64 MiB are read whole inside the attempt, so
//!   `get_range` is retried end to end.
//! * Lists: the call is restarted if it fails before yielding its first item;
//!   after that an error ends the stream (list order is not guaranteed by
//!   every store, so resuming could skip or repeat objects). Each item must
//!   arrive within `timeout`.
//! * Multipart: creating the upload, each part (retried under the same part
//!   number, so a retry replaces the part), completing and aborting are each
//!   retried, when the inner store is also given as a `MultipartStore`
//!   ([`Resilient::with_multipart`]: S3, memory). Otherwise (a local
//!   directory) parts and completion get a timeout but no retry.
//! * `delete_stream` deletes each location with its own retried call (10 at a
//!   time) instead of the inner store's bulk delete.
//! * A retried conditional write (`PutMode::Create`/`Update`, copy-if-not-exists)
//!   whose first attempt succeeded without the reply arriving fails with
//!   `AlreadyExists`/`Precondition`; Strata's keys carry a unique upload id,
//!   so its plain puts are safe to repeat.
//! * A call that gives up on a transient failure returns
//!   [`StoreError::Exhausted`] (inside `object_store::Error::Generic`), which
//!   [`is_transient`] still calls transient: a caller may try again later.
//!
//! Dropping a call's future cancels it: no task is spawned.
//! [`Resilient::abort_all`] makes every in-flight and later call fail at once
//! with [`StoreError::Aborted`] (for shutdown).
//!
//! Metrics, in the default prometheus registry:
//! `strata_tier_store_requests_total{op,outcome}` (one per call, after its
//! retries; outcome `ok`, `not_found`, `error`, `transient` or `aborted`),
//! `strata_tier_store_retries_total{op}` (attempts after the first) and
//! `strata_tier_store_request_seconds{op}` (a call's whole duration, retries
//! and backoff included).

mod classify;
mod metrics;
mod upload;

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::StoreError;
pub use classify::is_transient;
use metrics::{RETRIES, record};
use upload::{RetriedUpload, TimedUpload, UploadState};

/// Bounded-range gets up to this size are read whole inside the retried attempt.
const BUFFERED_RANGE_MAX: u64 = 64 << 20;
/// Deletes in flight at once in `delete_stream`.
const DELETE_CONCURRENCY: usize = 10;

/// Timeouts and retries of [`Resilient`].
#[derive(Clone, Debug)]
pub struct ResilienceConfig {
    /// Timeout of one attempt of a metadata or small call, and the idle
    /// timeout of streams (default 30 s).
    pub timeout: Duration,
    /// Calls carrying data get `timeout + bytes / min_throughput` (bytes per
    /// second, default 1 MiB/s).
    pub min_throughput: u64,
    /// Attempts of one call, the first included (default 6; at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry (default 100 ms), doubled for each
    /// further retry up to `backoff_cap` (default 5 s); each wait is drawn
    /// uniformly from [half, all] of that.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            timeout: Duration::from_secs(30),
            min_throughput: 1 << 20,
            max_attempts: 6,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
        }
    }
}

impl ResilienceConfig {
    /// The timeout of one attempt of a call carrying `bytes` bytes.
    pub fn timeout_for(&self, bytes: u64) -> Duration {
        self.timeout + Duration::from_secs_f64(bytes as f64 / self.min_throughput.max(1) as f64)
    }

    /// The wait before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubled = 2u32.saturating_pow(retry.saturating_sub(1));
        let full = self
            .backoff_base
            .saturating_mul(doubled)
            .min(self.backoff_cap);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(retry);
        let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
        full / 2 + (full / 2).mul_f64(fraction)
    }
}

/// The state shared by a [`Resilient`] and the uploads and streams it returns.
pub(crate) struct Shared {
    config: ResilienceConfig,
    abort: watch::Sender<bool>,
}

impl Shared {
    /// Runs `fut` unless or until `abort_all` is called (`None` then).
    async fn abortable<F: Future>(&self, fut: F) -> Option<F::Output> {
        abortable(self.abort.subscribe(), fut).await
    }

    /// One call: attempts of `attempt()`, each with `timeout`, retried with
    /// backoff while the error is transient and attempts remain.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        location: Option<&Path>,
        timeout: Duration,
        attempt: F,
    ) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let max_attempts = self.config.max_attempts;
        self.call_n(op, location, timeout, max_attempts, attempt)
            .await
    }

    /// [`Shared::call`] with at most `max_attempts` attempts.
    async fn call_n<T, F, Fut>(
        &self,
        op: &'static str,
        location: Option<&Path>,
        timeout: Duration,
        max_attempts: u32,
        mut attempt: F,
    ) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let started = Instant::now();
        let location = location.map(|l| format!("of `{l}` ")).unwrap_or_default();
        let max_attempts = max_attempts.max(1);
        let mut attempts = 0;
        let aborted = |location: String| StoreError::Aborted { op, location }.into_object_store();
        let result = loop {
            attempts += 1;
            let error = match self
                .abortable(tokio::time::timeout(timeout, attempt()))
                .await
            {
                None => break Err(aborted(location)),
                Some(Ok(Ok(value))) => break Ok(value),
                Some(Ok(Err(e))) => e,
                Some(Err(_)) => StoreError::Timeout {
                    op,
                    location: location.clone(),
                    timeout,
                }
                .into_object_store(),
            };
            if !is_transient(&error) {
                break Err(error);
            }
            if attempts >= max_attempts {
                tracing::warn!(op, %location, attempts, %error, "object store call failed, giving up");
                break Err(StoreError::Exhausted {
                    op,
                    location,
                    attempts,
                    elapsed: started.elapsed(),
                    last: Box::new(error),
                }
                .into_object_store());
            }
            let wait = self.config.backoff(attempts);
            tracing::debug!(op, %location, attempts, ?wait, %error, "object store call failed, retrying");
            RETRIES.with_label_values(&[op]).inc();
            if self.abortable(tokio::time::sleep(wait)).await.is_none() {
                break Err(aborted(location));
            }
        };
        record(op, &result, started);
        result
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

async fn abortable<F: Future>(mut abort: watch::Receiver<bool>, fut: F) -> Option<F::Output> {
    let aborted = async move {
        if abort.wait_for(|aborted| *aborted).await.is_err() {
            // The store is gone without abort_all: never abort.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        () = aborted => None,
        out = fut => Some(out),
    }
}

/// Makes the stream of a list call again, for a restart.
type Restart<T> = Arc<dyn Fn() -> BoxStream<'static, object_store::Result<T>> + Send + Sync>;

/// Guards a stream: each item must arrive within the idle timeout, and
/// `abort_all` ends it. With `restart`, a transient failure before the first
/// item restarts the stream (with backoff, within `max_attempts`); the call
/// is then counted in the metrics under `op` when the stream ends.
fn guard_stream<T: Send + 'static>(
    shared: Arc<Shared>,
    op: &'static str,
    first: BoxStream<'static, object_store::Result<T>>,
    restart: Option<Restart<T>>,
) -> BoxStream<'static, object_store::Result<T>> {
    struct State<T> {
        stream: Option<BoxStream<'static, object_store::Result<T>>>,
        yielded: bool,
        attempts: u32,
        started: Instant,
    }
    let state = State {
        stream: Some(first),
        yielded: false,
        attempts: 1,
        started: Instant::now(),
    };
    futures::stream::unfold(state, move |mut state| {
        let shared = shared.clone();
        let restart = restart.clone();
        async move {
            let mut stream = state.stream.take()?;
            let counted = restart.is_some();
            loop {
                let timeout = shared.config.timeout;
                let error = match shared
                    .abortable(tokio::time::timeout(timeout, stream.next()))
                    .await
                {
                    Some(Ok(Some(Ok(item)))) => {
                        state.yielded = true;
                        state.stream = Some(stream);
                        return Some((Ok(item), state));
                    }
                    Some(Ok(None)) => {
                        if counted {
                            record::<()>(op, &Ok(()), state.started);
                        }
                        return None;
                    }
                    Some(Ok(Some(Err(e)))) => e,
                    Some(Err(_)) => StoreError::Timeout {
                        op,
                        location: String::new(),
                        timeout,
                    }
                    .into_object_store(),
                    None => StoreError::Aborted {
                        op,
                        location: String::new(),
                    }
                    .into_object_store(),
                };
                let transient = is_transient(&error);
                let error = match &restart {
                    Some(restart) if transient && !state.yielded => {
                        if state.attempts < shared.config.max_attempts.max(1) {
                            let wait = shared.config.backoff(state.attempts);
                            state.attempts += 1;
                            tracing::debug!(op, ?wait, %error, "object store list failed, restarting");
                            RETRIES.with_label_values(&[op]).inc();
                            if shared.abortable(tokio::time::sleep(wait)).await.is_some() {
                                stream = restart();
                                continue;
                            }
                            StoreError::Aborted {
                                op,
                                location: String::new(),
                            }
                            .into_object_store()
                        } else {
                            StoreError::Exhausted {
                                op,
                                location: String::new(),
                                attempts: state.attempts,
                                elapsed: state.started.elapsed(),
                                last: Box::new(error),
                            }
                            .into_object_store()
                        }
                    }
                    _ => error,
                };
                let result = Err(error);
                if counted {
                    record(op, &result, state.started);
                }
                // `state.stream` stays `None`: the stream ends after the error.
                return Some((result, state));
            }
        }
    })
    .boxed()
}

/// An [`ObjectStore`] that gives every call of the inner store a timeout and
/// retries transient failures: see the module documentation.
pub struct Resilient {
    inner: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    shared: Arc<Shared>,
}

impl Resilient {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, config: ResilienceConfig) -> Resilient {
        Resilient {
            inner,
            multipart: None,
            shared: Arc::new(Shared {
                config,
                abort: watch::Sender::new(false),
            }),
        }
    }

    /// Uploads parts through `multipart` (the same store as the inner one),
    /// so each part, not the whole upload, is retried.
    pub fn with_multipart(mut self, multipart: Arc<dyn MultipartStore>) -> Resilient {
        self.multipart = Some(multipart);
        self
    }

    pub fn config(&self) -> &ResilienceConfig {
        &self.shared.config
    }

    /// Fails every in-flight call, stream and upload of this store, and every
    /// later one, with [`StoreError::Aborted`]. For shutdown; not undone.
    pub fn abort_all(&self) {
        self.shared.abort.send_replace(true);
    }
}

impl fmt::Debug for Resilient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resilient")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Resilient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resilient({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Resilient {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let timeout = self
            .shared
            .config
            .timeout_for(payload.content_length() as u64);
        self.shared
            .call("put", Some(location), timeout, || {
                self.inner.put_opts(location, payload.clone(), opts.clone())
            })
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let timeout = self.shared.config.timeout;
        let shared = self.shared.clone();
        let Some(multipart) = &self.multipart else {
            let upload = shared
                .call("create_multipart", Some(location), timeout, || {
                    self.inner.put_multipart_opts(location, opts.clone())
                })
                .await?;
            return Ok(Box::new(TimedUpload { upload, shared }));
        };
        let id = shared
            .call("create_multipart", Some(location), timeout, || {
                multipart.create_multipart_opts(location, opts.clone())
            })
            .await?;
        Ok(Box::new(RetriedUpload {
            state: Arc::new(UploadState {
                shared,
                multipart: multipart.clone(),
                location: location.clone(),
                id,
                parts: Default::default(),
            }),
            next_part: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let config = &self.shared.config;
        let buffered = match &options.range {
            Some(GetRange::Bounded(r)) if !options.head => {
                Some(r.end.saturating_sub(r.start)).filter(|len| *len <= BUFFERED_RANGE_MAX)
            }
            _ => None,
        };
        if let Some(len) = buffered {
            let inner = &self.inner;
            return self
                .shared
                .call("get", Some(location), config.timeout_for(len), || async {
                    let result = inner.get_opts(location, options.clone()).await?;
                    let (meta, range, attributes, extensions) = (
                        result.meta.clone(),
                        result.range.clone(),
                        result.attributes.clone(),
                        result.extensions.clone(),
                    );
                    let bytes = result.bytes().await?;
                    Ok(GetResult {
                        payload: GetResultPayload::Stream(
                            futures::stream::once(async move { Ok(bytes) }).boxed(),
                        ),
                        meta,
                        range,
                        attributes,
                        extensions,
                    })
                })
                .await;
        }
        let op = if options.head { "head" } else { "get" };
        let mut result = self
            .shared
            .call(op, Some(location), config.timeout, || {
                self.inner.get_opts(location, options.clone())
            })
            .await?;
        if let GetResultPayload::Stream(body) = result.payload {
            let body = guard_stream(self.shared.clone(), "get_body", body, None);
            result.payload = GetResultPayload::Stream(body);
        }
        Ok(result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let len = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        let timeout = self.shared.config.timeout_for(len);
        self.shared
            .call("get_ranges", Some(location), timeout, || {
                self.inner.get_ranges(location, ranges)
            })
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.clone();
        let shared = self.shared.clone();
        locations
            .map(move |location| {
                let (inner, shared) = (inner.clone(), shared.clone());
                async move {
                    let location = location?;
                    let timeout = shared.config.timeout;
                    shared
                        .call("delete", Some(&location), timeout, || {
                            inner.delete(&location)
                        })
                        .await?;
                    Ok(location)
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        let restart: Restart<ObjectMeta> = Arc::new(move || inner.list(prefix.as_ref()));
        guard_stream(self.shared.clone(), "list", restart(), Some(restart))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let (prefix, offset) = (prefix.cloned(), offset.clone());
        let restart: Restart<ObjectMeta> =
            Arc::new(move || inner.list_with_offset(prefix.as_ref(), &offset));
        guard_stream(self.shared.clone(), "list", restart(), Some(restart))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let timeout = self.shared.config.timeout;
        self.shared
            .call("list_with_delimiter", prefix, timeout, || {
                self.inner.list_with_delimiter(prefix)
            })
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let timeout = self.shared.config.timeout;
        self.shared
            .call("copy", Some(from), timeout, || {
                self.inner.copy_opts(from, to, options.clone())
            })
            .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let timeout = self.shared.config.timeout;
        self.shared
            .call("rename", Some(from), timeout, || {
                self.inner.rename_opts(from, to, options.clone())
            })
            .await
    }
}

#[cfg(test)]
mod tests;
